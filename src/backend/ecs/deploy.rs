//! One service's image update, as both modes make it: the service of mode "service", the canary
//! service of mode "alb". A new revision of the task definition the service runs, with the new
//! image on one container; the service pointed at it; a wait until the service is steady on it.

use aws_sdk_ecs::types::{
    Deployment, DeploymentControllerType, DeploymentRolloutState, Service, TaskDefinition,
};
use serde::{Deserialize, Serialize};

use super::api::{Call, Described, NewRevision};
use super::{Context, EcsError};
use crate::plan::EcsImageUpdate;

/// What the run found before changing the service, and what it registered; journaled, so that
/// `rollout rollback` and `rollout resume` in another process undo or continue the same run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DeployState {
    /// The task definition the service ran at preflight: what rollback returns to.
    pub previous_task_definition: Option<String>,
    /// The revision this run registered with the new image, once registered.
    pub new_task_definition: Option<String>,
}

/// The task definition the service ran at preflight, read whole: the base of the new revision.
#[derive(Debug, Clone)]
struct Base {
    /// Its full ARN, however the plan or the journal named it.
    arn: String,
    described: Described,
}

pub struct ImageUpdate {
    cx: Context,
    update: EcsImageUpdate,
    pub state: DeployState,
    /// Read by `check`, which every run's preflight makes before any change.
    base: Option<Base>,
}

impl ImageUpdate {
    pub fn new(cx: Context, update: EcsImageUpdate) -> Self {
        ImageUpdate {
            cx,
            update,
            state: DeployState::default(),
            base: None,
        }
    }

    pub fn service(&self) -> &str {
        &self.update.service
    }

    /// The service exists, is active, is deployed by ECS itself, and its task definition has
    /// the container; that task definition is the one to return to.
    pub async fn check(&mut self) -> Result<(), EcsError> {
        let service = self.describe_service().await?;
        self.check_usable(&service)?;
        // Handed back from a journal, the task definition the run started from stays the base:
        // the service may run this run's revision by now.
        let arn = match (
            &self.state.previous_task_definition,
            service.task_definition(),
        ) {
            (Some(previous), _) => previous.clone(),
            (None, Some(current)) => current.to_string(),
            (None, None) => {
                return Err(EcsError::Unusable(format!(
                    "ECS service `{}` has no task definition",
                    self.service()
                )));
            }
        };
        let Some(described) = self.cx.api.describe_task_definition(&arn).await? else {
            return Err(self.cx.missing(format!("task definition {arn}")));
        };
        // The full ARN of what was described: the one to return to, however it was given.
        let arn = described
            .task_definition
            .task_definition_arn()
            .unwrap_or(&arn)
            .to_string();
        let base = Base { arn, described };
        // Fails here, before anything changes, when the container is not there.
        self.new_revision(&base)?;
        self.state.previous_task_definition = Some(base.arn.clone());
        self.base = Some(base);
        Ok(())
    }

    fn check_usable(&self, service: &Service) -> Result<(), EcsError> {
        let name = self.service();
        let status = service.status().unwrap_or("unknown");
        if status != "ACTIVE" {
            return Err(EcsError::Unusable(format!(
                "ECS service `{name}` in cluster `{}` is {status}, not ACTIVE",
                self.cx.cluster
            )));
        }
        if let Some(controller) = service.deployment_controller()
            && *controller.r#type() != DeploymentControllerType::Ecs
        {
            return Err(EcsError::Unusable(format!(
                "ECS service `{name}` is deployed by {}, not by ECS rolling updates, so rollout cannot update its task definition",
                controller.r#type().as_str()
            )));
        }
        Ok(())
    }

    /// Registers the new revision (once per run), points the service at it and waits until it
    /// is steady. Applied again (a resumed run, a repeated stage), it finds the service on that
    /// revision and only waits.
    pub async fn deploy(&mut self) -> Result<(), EcsError> {
        let Some(base) = self.base.clone() else {
            return Err(EcsError::NotChecked("deploy a new task definition"));
        };
        let running = self
            .describe_service()
            .await?
            .task_definition()
            .unwrap_or_default()
            .to_string();
        if self.state.new_task_definition.is_none()
            && !same_td(&running, &base.arn)
            && self.is_our_revision(&running, &base).await?
        {
            self.state.new_task_definition = Some(running.clone());
        }
        let ours = self.state.new_task_definition.clone();
        let already_ours = ours.as_deref().is_some_and(|n| same_td(&running, n));
        if !already_ours && !same_td(&running, &base.arn) {
            return Err(EcsError::Unusable(format!(
                "ECS service `{}` changed since the preflight check: it runs {running}, not {}; rollout leaves it alone",
                self.service(),
                base.arn
            )));
        }
        let new_td = match ours {
            Some(arn) => arn,
            None => self.register(&base).await?,
        };
        if !already_ours {
            self.point_service_at(&new_td).await?;
        }
        self.wait_steady(&new_td).await
    }

    /// Puts the service back on the task definition it ran at preflight and waits for it; a
    /// service that never left it (and is steady) needs nothing.
    pub async fn restore(&mut self) -> Result<(), EcsError> {
        let Some(previous) = self.state.previous_task_definition.clone() else {
            // Preflight never got as far as reading it, so nothing was changed.
            return Ok(());
        };
        let current = self.describe_service().await?;
        let running = current.task_definition().unwrap_or_default();
        if same_td(running, &previous) {
            if judge(current.deployments(), &previous) == Progress::Steady {
                return Ok(());
            }
            return self.wait_steady(&previous).await;
        }
        self.point_service_at(&previous).await?;
        self.wait_steady(&previous).await
    }

    async fn describe_service(&self) -> Result<Service, EcsError> {
        let (cluster, name) = (&self.cx.cluster, self.service());
        let services = self.cx.api.describe_services(cluster, name).await?;
        match services.into_iter().next() {
            Some(found) => Ok(found),
            None => Err(self
                .cx
                .missing(format!("ECS service `{name}` in cluster `{cluster}`"))),
        }
    }

    /// Whether `arn` is a revision this run registered: same content as the base with the new
    /// image. A resumed run learns it this way, since the journal is written before any
    /// revision is registered.
    async fn is_our_revision(&self, arn: &str, base: &Base) -> Result<bool, EcsError> {
        let expected = self.new_revision(base)?.definition;
        let found = self.cx.api.describe_task_definition(arn).await?;
        Ok(found.is_some_and(|found| same_content(&found.task_definition, &expected)))
    }

    fn new_revision(&self, base: &Base) -> Result<NewRevision, EcsError> {
        let EcsImageUpdate {
            container, image, ..
        } = &self.update;
        Ok(NewRevision {
            copy_of: base.arn.clone(),
            container: container.clone(),
            image: image.clone(),
            definition: with_image(&base.described.task_definition, container, image)?,
            tags: base.described.tags.clone(),
        })
    }

    async fn register(&mut self, base: &Base) -> Result<String, EcsError> {
        let revision = self.new_revision(base)?;
        let registered = self.cx.api.register_task_definition(&revision).await?;
        let Some(arn) = registered.task_definition_arn() else {
            let call = Call::RegisterTaskDefinition(&revision);
            return Err(EcsError::Api {
                service: call.service(),
                operation: call.operation(),
                code: None,
                message: "the answer holds no task definition ARN".into(),
            });
        };
        self.state.new_task_definition = Some(arn.to_string());
        Ok(arn.to_string())
    }

    async fn point_service_at(&self, task_definition: &str) -> Result<(), EcsError> {
        let (cluster, service) = (&self.cx.cluster, self.service());
        self.cx
            .api
            .update_service(cluster, service, task_definition)
            .await
    }

    async fn wait_steady(&self, td: &str) -> Result<(), EcsError> {
        let service = self.service();
        let timeout = self.cx.deploy_timeout;
        self.cx.exec.note(&format!(
            "wait until ECS service `{service}` is steady on {td}: its PRIMARY deployment COMPLETED with every desired task running (at most {}, deploy_timeout)",
            humantime::format_duration(timeout)
        ));
        let deadline = tokio::time::Instant::now() + timeout;
        let mut pause = self.cx.limits.poll_first;
        loop {
            let found = self.describe_service().await?;
            let last = match judge(found.deployments(), td) {
                Progress::Steady => return Ok(()),
                Progress::Failed(reason) => {
                    return Err(EcsError::DeploymentFailed {
                        service: service.to_string(),
                        task_definition: td.to_string(),
                        reason,
                    });
                }
                Progress::Replaced(why) => {
                    return Err(EcsError::Unusable(format!(
                        "the deployment of {td} to ECS service `{service}` did not finish: {why}"
                    )));
                }
                Progress::Waiting(last) => last,
            };
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Err(EcsError::DeploymentTimeout {
                    service: service.to_string(),
                    task_definition: td.to_string(),
                    after: timeout,
                    last,
                });
            }
            tokio::time::sleep(pause.min(deadline - now)).await;
            pause = (pause * 3 / 2).min(self.cx.limits.poll_max);
        }
    }
}

// ---- Pure parts ----

/// A copy of `td` with `image` on `container`; everything else is kept.
fn with_image(
    td: &TaskDefinition,
    container: &str,
    image: &str,
) -> Result<TaskDefinition, EcsError> {
    let mut revised = td.clone();
    let containers = revised.container_definitions.get_or_insert_with(Vec::new);
    match containers.iter_mut().find(|c| c.name() == Some(container)) {
        Some(found) => {
            found.image = Some(image.to_string());
            Ok(revised)
        }
        None => {
            let names: Vec<&str> = td
                .container_definitions()
                .iter()
                .filter_map(|c| c.name())
                .collect();
            Err(EcsError::Unusable(format!(
                "task definition {} has no container `{container}` (it has {})",
                td.task_definition_arn().unwrap_or("?"),
                if names.is_empty() {
                    "none".to_string()
                } else {
                    names
                        .iter()
                        .map(|n| format!("`{n}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            )))
        }
    }
}

/// `arn:aws:ecs:REGION:ACCOUNT:task-definition/FAMILY:REV` and `FAMILY:REV` name the same one.
pub(super) fn same_td(a: &str, b: &str) -> bool {
    fn short(s: &str) -> &str {
        s.rsplit_once("task-definition/")
            .map_or(s, |(_, rest)| rest)
    }
    short(a) == short(b)
}

/// Two task definitions alike but for what ECS sets itself at registration.
fn same_content(a: &TaskDefinition, b: &TaskDefinition) -> bool {
    fn registrable(td: &TaskDefinition) -> TaskDefinition {
        let mut td = td.clone();
        td.task_definition_arn = None;
        td.revision = 0;
        td.status = None;
        td.requires_attributes = None;
        td.compatibilities = None;
        td.registered_at = None;
        td.registered_by = None;
        td.deregistered_at = None;
        td
    }
    registrable(a) == registrable(b)
}

/// Where a service's rollout to a task definition stands, judged from its deployments.
#[derive(Debug, Clone, PartialEq)]
enum Progress {
    Steady,
    /// Not there yet; why, for the timeout message.
    Waiting(String),
    /// ECS failed the deployment (its circuit breaker): the new version did not become ready.
    Failed(String),
    /// Someone else's deployment took its place.
    Replaced(String),
}

fn judge(deployments: &[Deployment], td: &str) -> Progress {
    let of_td = |d: &&Deployment| d.task_definition().is_some_and(|t| same_td(t, td));
    // An older deployment of the same revision (one that failed before, say) may still be
    // listed; the PRIMARY one is the one that counts.
    let ours = deployments
        .iter()
        .filter(of_td)
        .find(|d| d.status() == Some("PRIMARY"))
        .or_else(|| deployments.iter().find(of_td));
    let Some(ours) = ours else {
        return Progress::Waiting(format!("no deployment of {td} is visible yet"));
    };
    // ECS ends its reasons with a period; the messages built on them add their own.
    let reason = || {
        ours.rollout_state_reason()
            .unwrap_or("no reason given")
            .trim_end_matches('.')
            .to_string()
    };
    if ours.rollout_state() == Some(&DeploymentRolloutState::Failed) {
        return Progress::Failed(format!("ECS marked it FAILED: {}", reason()));
    }
    if ours.status() != Some("PRIMARY") {
        let primary = deployments
            .iter()
            .find(|d| d.status() == Some("PRIMARY"))
            .and_then(|d| d.task_definition())
            .unwrap_or("another task definition");
        return Progress::Replaced(format!(
            "another deployment replaced it: the service now deploys {primary}"
        ));
    }
    let draining: i32 = deployments
        .iter()
        .filter(|d| !std::ptr::eq(*d, ours))
        .map(|d| d.running_count())
        .sum();
    let counts = format!(
        "{} of {} tasks running, {} pending, {} failed",
        ours.running_count(),
        ours.desired_count(),
        ours.pending_count(),
        ours.failed_tasks()
    );
    let completed = match ours.rollout_state() {
        Some(DeploymentRolloutState::Completed) => true,
        // Without a rollout state (no circuit breaker information), a lone deployment with
        // every task running is what "steady" means.
        None => deployments.len() == 1,
        Some(_) => false,
    };
    if completed && ours.running_count() == ours.desired_count() && draining == 0 {
        return Progress::Steady;
    }
    let state = ours
        .rollout_state()
        .map_or("no rollout state", |s| s.as_str());
    let mut last = format!("the deployment is {state} ({counts})");
    if draining > 0 {
        last.push_str(&format!(
            "; {draining} tasks of older deployments still running"
        ));
    }
    Progress::Waiting(last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::ecs::fake::{TD1, TD2, task_definition};

    fn deployment(status: &str, td: &str, state: Option<&str>, running: i32) -> Deployment {
        Deployment::builder()
            .status(status)
            .task_definition(td)
            .set_rollout_state(state.map(DeploymentRolloutState::from))
            .rollout_state_reason("because")
            .desired_count(2)
            .running_count(running)
            .build()
    }

    #[test]
    fn a_deployment_is_steady_when_primary_completed_and_alone() {
        let steady = [deployment("PRIMARY", TD2, Some("COMPLETED"), 2)];
        assert_eq!(judge(&steady, TD2), Progress::Steady);
        assert_eq!(judge(&steady, "web:2"), Progress::Steady);

        let in_progress = [
            deployment("PRIMARY", TD2, Some("IN_PROGRESS"), 1),
            deployment("ACTIVE", TD1, Some("COMPLETED"), 2),
        ];
        let Progress::Waiting(why) = judge(&in_progress, TD2) else {
            panic!("not waiting")
        };
        assert!(why.contains("IN_PROGRESS (1 of 2 tasks running"), "{why}");
        assert!(
            why.contains("2 tasks of older deployments still running"),
            "{why}"
        );

        // Completed but the old tasks are not gone yet.
        let draining = [
            deployment("PRIMARY", TD2, Some("COMPLETED"), 2),
            deployment("ACTIVE", TD1, Some("COMPLETED"), 1),
        ];
        assert!(matches!(judge(&draining, TD2), Progress::Waiting(_)));

        // Completed with fewer tasks running than desired.
        let short = [deployment("PRIMARY", TD2, Some("COMPLETED"), 1)];
        assert!(matches!(judge(&short, TD2), Progress::Waiting(_)));

        // Without a rollout state, a lone deployment with every task running.
        assert_eq!(
            judge(&[deployment("PRIMARY", TD2, None, 2)], TD2),
            Progress::Steady
        );
        assert!(matches!(
            judge(
                &[
                    deployment("PRIMARY", TD2, None, 2),
                    deployment("ACTIVE", TD1, None, 0)
                ],
                TD2
            ),
            Progress::Waiting(_)
        ));
        assert!(matches!(judge(&[], TD2), Progress::Waiting(_)));
    }

    #[test]
    fn a_failed_or_replaced_deployment_fails() {
        let failed = [
            deployment("PRIMARY", TD2, Some("FAILED"), 0),
            deployment("ACTIVE", TD1, Some("COMPLETED"), 2),
        ];
        assert_eq!(
            judge(&failed, TD2),
            Progress::Failed("ECS marked it FAILED: because".into())
        );
        // Rolling back to TD1 after that: the new PRIMARY deployment of TD1 counts, not the
        // older ACTIVE one nor the failed one.
        let back = [
            deployment("PRIMARY", TD1, Some("IN_PROGRESS"), 0),
            deployment("ACTIVE", TD2, Some("FAILED"), 0),
            deployment("ACTIVE", TD1, Some("COMPLETED"), 2),
        ];
        assert!(matches!(judge(&back, TD1), Progress::Waiting(_)));

        let replaced = [
            deployment(
                "PRIMARY",
                "arn:aws:ecs:us-east-1:1:task-definition/web:3",
                Some("IN_PROGRESS"),
                0,
            ),
            deployment("ACTIVE", TD2, Some("IN_PROGRESS"), 1),
        ];
        let Progress::Replaced(why) = judge(&replaced, TD2) else {
            panic!("not failed")
        };
        assert!(why.contains("web:3"), "{why}");
    }

    #[test]
    fn the_new_revision_changes_only_the_image() {
        let td = task_definition();
        let revised = with_image(&td, "app", "web:2").unwrap();
        let images: Vec<_> = revised
            .container_definitions()
            .iter()
            .map(|c| c.image().unwrap())
            .collect();
        assert_eq!(images, ["web:2", "envoy:1"]);
        let mut back = revised.clone();
        back.container_definitions.as_mut().unwrap()[0].image = Some("web:1".into());
        assert_eq!(back, td);

        let err = with_image(&td, "web", "web:2").unwrap_err().to_string();
        assert_eq!(
            err,
            format!("task definition {TD1} has no container `web` (it has `app`, `sidecar`)")
        );
    }

    #[test]
    fn a_registered_revision_is_recognised_by_its_content() {
        let td = task_definition();
        let mut registered = with_image(&td, "app", "web:2").unwrap();
        registered.task_definition_arn = Some(TD2.into());
        registered.revision = 2;
        let expected = with_image(&td, "app", "web:2").unwrap();
        assert!(same_content(&registered, &expected));
        assert!(!same_content(&td, &expected));
    }

    /// The journal of a run made before the modes were split reads the same.
    #[test]
    fn the_state_survives_a_journal() {
        let state = DeployState {
            previous_task_definition: Some(TD1.into()),
            new_task_definition: None,
        };
        let text = serde_json::to_string(&state).unwrap();
        assert_eq!(
            text,
            format!(r#"{{"previous_task_definition":"{TD1}","new_task_definition":null}}"#)
        );
        assert_eq!(serde_json::from_str::<DeployState>(&text).unwrap(), state);
        assert_eq!(
            serde_json::from_str::<DeployState>("{}").unwrap(),
            DeployState::default()
        );
    }

    #[test]
    fn task_definitions_compare_by_family_and_revision() {
        assert!(same_td(TD1, "web:1"));
        assert!(same_td("web:1", TD1));
        assert!(!same_td(TD1, TD2));
    }
}
