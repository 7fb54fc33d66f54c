//! `type = "ecs"`: Amazon ECS through the official AWS SDK, in two modes.
//!
//! `mode = "service"` replaces one service's task definition: a new revision of its current task
//! definition with `image` on `container` (every other field carried over), `UpdateService`, then
//! a wait until the service's deployments say the new revision is steady. Only 0% and 100% exist
//! here: at 0% nothing changes, at 100% the service runs the new revision.
//!
//! `mode = "alb"` sets the stage's split on the target-group weights of one ALB forward action (a
//! listener's default action or a listener rule's), keeping everything else on the action, and
//! reads it back. Optionally the canary service first gets the new image, like mode "service".
//!
//! What is confirmed: a weight is confirmed by reading the action back and finding exactly the
//! weights written; a deployment by the service's deployments (the PRIMARY one on the expected
//! task definition with `rolloutState` COMPLETED and as many running tasks as desired, and no
//! other deployment with tasks still running). A deployment the circuit breaker marks FAILED, or
//! one that is not steady within `deploy_timeout`, fails the stage.
//!
//! Nothing here talks to AWS before `preflight`, which loads the configuration (the standard
//! credential chain) and checks that credentials resolve and that every named resource exists.
//! In a dry run nothing talks to AWS at all: each call is reported with its parameters instead.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_ecs::error::ProvideErrorMetadata;
use aws_sdk_ecs::types::{
    Deployment, DeploymentControllerType, DeploymentRolloutState, Tag, TaskDefinition,
    TaskDefinitionField,
};
use aws_sdk_elasticloadbalancingv2::types::{Action, ActionTypeEnum, TargetGroupTuple};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use thiserror::Error;

use super::{Backend, BackendError, Executor, Recovery, WeightChange};
use crate::plan::{
    AlbListener, EcsAlbSpec, EcsBackend as Spec, EcsImageUpdate, EcsMode, EcsServiceSpec, Plan,
    Weight,
};

/// Time limits and retries for every AWS call.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub connect: Duration,
    /// One attempt of one call.
    pub attempt: Duration,
    /// One call, all its retries included.
    pub operation: Duration,
    /// Attempts per call: throttling, 5xx answers and transport errors are retried.
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// Resolving credentials (SSO, STS and instance roles are network calls too).
    pub credentials: Duration,
    /// The first pause between two looks at a deployment; it grows up to `poll_max`.
    pub poll_first: Duration,
    pub poll_max: Duration,
}

impl Limits {
    pub const STANDARD: Limits = Limits {
        connect: Duration::from_secs(5),
        attempt: Duration::from_secs(20),
        operation: Duration::from_secs(90),
        max_attempts: 5,
        initial_backoff: Duration::from_millis(500),
        max_backoff: Duration::from_secs(20),
        credentials: Duration::from_secs(30),
        poll_first: Duration::from_secs(1),
        poll_max: Duration::from_secs(10),
    };
}

/// What went wrong, in terms of the plan's resources. Messages never hold credentials.
#[derive(Debug, Error)]
pub enum EcsError {
    #[error(
        "no AWS credentials could be resolved ({0}); set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE (static keys, SSO, credential_process), or run where a web identity token, container role or instance role is available"
    )]
    NoCredentials(String),
    #[error(
        "the AWS credentials expired at {at} (now {now}); refresh them (for example `aws sso login`) and run again"
    )]
    CredentialsExpired { at: String, now: String },
    #[error(
        "loading the AWS configuration and credentials took longer than {}",
        humantime::format_duration(*.0)
    )]
    CredentialsTimeout(Duration),
    #[error("no AWS region: set `region` in the plan's [backend], or AWS_REGION")]
    NoRegion,
    #[error("{what} does not exist{}", region_note(.region))]
    Missing { what: String, region: String },
    /// The resource exists but cannot be used as the plan says.
    #[error("{0}")]
    Unusable(String),
    #[error("{service} {operation} failed: {message}{}", hint(.code.as_deref()))]
    Api {
        service: &'static str,
        operation: &'static str,
        code: Option<String>,
        message: String,
    },
    #[error("{service} {operation} got no answer within {}", humantime::format_duration(*.after))]
    Timeout {
        service: &'static str,
        operation: &'static str,
        after: Duration,
    },
    #[error("the deployment of {task_definition} to ECS service `{service}` failed: {reason}")]
    DeploymentFailed {
        service: String,
        task_definition: String,
        reason: String,
    },
    #[error(
        "ECS service `{service}` was not steady on {task_definition} within {} (deploy_timeout): {last}",
        humantime::format_duration(*.after)
    )]
    DeploymentTimeout {
        service: String,
        task_definition: String,
        after: Duration,
        last: String,
    },
}

fn region_note(region: &str) -> String {
    format!(" (region {region})")
}

/// Error codes that mean the credentials, not the request, are the problem.
fn hint(code: Option<&str>) -> &'static str {
    match code {
        Some("ExpiredToken" | "ExpiredTokenException" | "RequestExpired") => {
            "; the AWS credentials have expired: refresh them (for example `aws sso login`) and run again"
        }
        Some(
            "InvalidClientTokenId"
            | "UnrecognizedClientException"
            | "InvalidSignatureException"
            | "SignatureDoesNotMatch"
            | "IncompleteSignature"
            | "MissingAuthenticationToken",
        ) => {
            "; AWS did not accept the credentials: check which ones are in use (`aws sts get-caller-identity`)"
        }
        Some("AccessDenied" | "AccessDeniedException" | "UnauthorizedOperation") => {
            "; the credentials lack a permission this backend needs"
        }
        _ => "",
    }
}

/// What the run found before changing anything, kept so that it can be undone (and, later,
/// written to a journal).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EcsState {
    /// The task definition the service (mode "service") or the canary service (mode "alb" with
    /// an image) ran at preflight: what rollback returns to.
    pub previous_task_definition: Option<String>,
    /// The revision this run registered with the new image, once registered.
    pub new_task_definition: Option<String>,
    /// Mode "alb": the forward action's target groups and weights at preflight.
    pub original_weights: Option<Vec<TargetGroupWeight>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetGroupWeight {
    pub target_group_arn: String,
    pub weight: i32,
}

struct Clients {
    ecs: aws_sdk_ecs::Client,
    elb: aws_sdk_elasticloadbalancingv2::Client,
    region: String,
}

/// A service whose task definition this run changes: the service of mode "service", or the
/// canary service of mode "alb".
#[derive(Debug, Clone)]
struct Target {
    service: String,
    container: String,
    image: String,
}

pub struct Ecs {
    spec: Spec,
    exec: Arc<dyn Executor>,
    limits: Limits,
    clients: Option<Clients>,
    /// The task definition read at preflight, the base of the new revision, with its tags.
    base: Option<(TaskDefinition, Vec<Tag>)>,
    /// Mode "alb": the canary service runs the new image, steady.
    canary_ready: bool,
    pub state: EcsState,
}

impl Ecs {
    pub fn new(_plan: &Plan, spec: Spec, exec: Arc<dyn Executor>) -> Self {
        Ecs::with_limits(spec, exec, Limits::STANDARD)
    }

    pub fn with_limits(spec: Spec, exec: Arc<dyn Executor>, limits: Limits) -> Self {
        Ecs {
            spec,
            exec,
            limits,
            clients: None,
            base: None,
            canary_ready: false,
            state: EcsState::default(),
        }
    }

    fn target(&self) -> Option<Target> {
        match &self.spec.mode {
            EcsMode::Service(EcsServiceSpec {
                update:
                    EcsImageUpdate {
                        service,
                        container,
                        image,
                    },
            })
            | EcsMode::Alb(EcsAlbSpec {
                canary_update:
                    Some(EcsImageUpdate {
                        service,
                        container,
                        image,
                    }),
                ..
            }) => Some(Target {
                service: service.clone(),
                container: container.clone(),
                image: image.clone(),
            }),
            EcsMode::Alb(_) => None,
        }
    }

    fn region_text(&self) -> String {
        self.clients
            .as_ref()
            .map(|c| c.region.clone())
            .or_else(|| self.spec.aws.region.clone())
            .unwrap_or_else(|| "of the environment".into())
    }

    fn missing(&self, what: String) -> EcsError {
        EcsError::Missing {
            what,
            region: self.region_text(),
        }
    }

    /// Reports a call: always in a dry run, and in a real run the ones that change something.
    fn report(&self, mutating: bool, service: &str, operation: &str, params: Value) {
        if mutating || self.exec.is_dry_run() {
            self.exec.call(service, operation, params);
        }
    }

    async fn clients(&mut self) -> Result<&Clients, EcsError> {
        if self.clients.is_none() {
            self.clients = Some(connect(&self.spec, &self.limits).await?);
        }
        Ok(self.clients.as_ref().expect("just connected"))
    }

    /// Connects on first use, then bounds the call like every other (`send`). `service` is the
    /// name messages give the client `request` picks: "ecs" for `c.ecs`, "elbv2" for `c.elb`.
    async fn call<T, E, R, F>(
        &mut self,
        service: &'static str,
        operation: &'static str,
        request: impl FnOnce(&Clients) -> F,
    ) -> Result<T, EcsError>
    where
        F: Future<Output = Result<T, aws_sdk_ecs::error::SdkError<E, R>>>,
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug + Send + Sync + 'static,
    {
        let call = request(self.clients().await?);
        send(service, operation, &self.limits, call).await
    }

    // ---- ECS ----

    async fn check_cluster(&mut self) -> Result<(), EcsError> {
        let cluster = self.spec.aws.cluster.clone();
        self.report(
            false,
            "ecs",
            "DescribeClusters",
            json!({ "clusters": [cluster] }),
        );
        if self.exec.is_dry_run() {
            return Ok(());
        }
        let out = self
            .call("ecs", "DescribeClusters", |c| {
                c.ecs.describe_clusters().clusters(&cluster).send()
            })
            .await?;
        let found = out.clusters().iter().find(|c| {
            c.cluster_name() == Some(cluster.as_str()) || c.cluster_arn() == Some(cluster.as_str())
        });
        match found.and_then(|c| c.status()) {
            Some("ACTIVE") => Ok(()),
            Some(status) => Err(EcsError::Unusable(format!(
                "ECS cluster `{cluster}` is {status}, not ACTIVE"
            ))),
            None => Err(self.missing(format!("ECS cluster `{cluster}`"))),
        }
    }

    async fn describe_service(
        &mut self,
        service: &str,
    ) -> Result<aws_sdk_ecs::types::Service, EcsError> {
        let cluster = self.spec.aws.cluster.clone();
        let out = self
            .call("ecs", "DescribeServices", |c| {
                c.ecs
                    .describe_services()
                    .cluster(&cluster)
                    .services(service)
                    .send()
            })
            .await?;
        match out.services().first() {
            Some(found) => Ok(found.clone()),
            None => Err(self.missing(format!("ECS service `{service}` in cluster `{cluster}`"))),
        }
    }

    /// The service exists, is active, is deployed by ECS itself, and its task definition has
    /// the container; remembers that task definition as the one to return to.
    async fn check_target(&mut self, target: &Target) -> Result<(), EcsError> {
        let cluster = self.spec.aws.cluster.clone();
        self.report(
            false,
            "ecs",
            "DescribeServices",
            json!({ "cluster": cluster, "services": [target.service] }),
        );
        if self.exec.is_dry_run() {
            self.report(
                false,
                "ecs",
                "DescribeTaskDefinition",
                json!({
                    "taskDefinition": format!("<the task definition of service {}>", target.service),
                    "include": ["TAGS"],
                }),
            );
            return Ok(());
        }
        let service = self.describe_service(&target.service).await?;
        let status = service.status().unwrap_or("unknown");
        if status != "ACTIVE" {
            return Err(EcsError::Unusable(format!(
                "ECS service `{}` in cluster `{cluster}` is {status}, not ACTIVE",
                target.service
            )));
        }
        if let Some(controller) = service.deployment_controller()
            && *controller.r#type() != DeploymentControllerType::Ecs
        {
            return Err(EcsError::Unusable(format!(
                "ECS service `{}` is deployed by {}, not by ECS rolling updates, so rollout cannot update its task definition",
                target.service,
                controller.r#type().as_str()
            )));
        }
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
                    target.service
                )));
            }
        };
        let out = self
            .call("ecs", "DescribeTaskDefinition", |c| {
                c.ecs
                    .describe_task_definition()
                    .task_definition(&arn)
                    .include(TaskDefinitionField::Tags)
                    .send()
            })
            .await?;
        let Some(td) = out.task_definition().cloned() else {
            return Err(self.missing(format!("task definition {arn}")));
        };
        // Fails here, before anything changes, when the container is not there.
        with_image(&td, &target.container, &target.image)?;
        // The full ARN of what was described: the one to return to, however it was given.
        let arn = td.task_definition_arn().unwrap_or(&arn).to_string();
        self.state.previous_task_definition = Some(arn);
        self.base = Some((td, out.tags().to_vec()));
        Ok(())
    }

    /// Whether `arn` is a revision this run registered: same content as the base with the new
    /// image. A resumed run learns it this way, since the journal is written before any
    /// revision is registered.
    async fn is_our_revision(&mut self, arn: &str, target: &Target) -> Result<bool, EcsError> {
        let Some((base, _)) = self.base.clone() else {
            return Ok(false);
        };
        let out = self
            .call("ecs", "DescribeTaskDefinition", |c| {
                c.ecs.describe_task_definition().task_definition(arn).send()
            })
            .await?;
        let expected = with_image(&base, &target.container, &target.image)?;
        Ok(out
            .task_definition()
            .is_some_and(|found| same_content(found, &expected)))
    }

    /// Registers the new revision (once per run), points the service at it and waits until it
    /// is steady.
    async fn deploy(&mut self, target: &Target) -> Result<(), EcsError> {
        let cluster = self.spec.aws.cluster.clone();
        if self.exec.is_dry_run() {
            self.report(
                true,
                "ecs",
                "RegisterTaskDefinition",
                json!({
                    "copyOf": format!("<the task definition of service {}>", target.service),
                    "container": target.container,
                    "image": target.image,
                }),
            );
            self.report(
                true,
                "ecs",
                "UpdateService",
                json!({
                    "cluster": cluster,
                    "service": target.service,
                    "taskDefinition": "<the revision just registered>",
                }),
            );
            self.exec.note(&format!(
                "wait until ECS service `{}` is steady on the new revision: its PRIMARY deployment COMPLETED with every desired task running (at most {}, deploy_timeout)",
                target.service,
                humantime::format_duration(self.spec.aws.deploy_timeout)
            ));
            return Ok(());
        }
        let previous = self
            .state
            .previous_task_definition
            .clone()
            .expect("preflight found the task definition");
        let current = self.describe_service(&target.service).await?;
        let running = current.task_definition().unwrap_or_default().to_string();
        if self.state.new_task_definition.is_none()
            && !same_td(&running, &previous)
            && self.is_our_revision(&running, target).await?
        {
            self.state.new_task_definition = Some(running.clone());
        }
        let ours = self.state.new_task_definition.clone();
        let already_ours = ours.as_deref().is_some_and(|n| same_td(&running, n));
        if !already_ours && !same_td(&running, &previous) {
            return Err(EcsError::Unusable(format!(
                "ECS service `{}` changed since the preflight check: it runs {running}, not {previous}; rollout leaves it alone",
                target.service
            )));
        }
        let new_td = match ours {
            Some(arn) => arn,
            None => self.register(target, &previous).await?,
        };
        if !already_ours {
            self.update_service(&target.service, &new_td).await?;
        }
        self.wait_steady(&target.service, &new_td).await
    }

    async fn register(&mut self, target: &Target, previous: &str) -> Result<String, EcsError> {
        let (base, tags) = self
            .base
            .clone()
            .expect("preflight read the task definition");
        let revised = with_image(&base, &target.container, &target.image)?;
        self.report(
            true,
            "ecs",
            "RegisterTaskDefinition",
            json!({
                "copyOf": previous,
                "family": revised.family(),
                "container": target.container,
                "image": target.image,
            }),
        );
        let out = self
            .call("ecs", "RegisterTaskDefinition", |c| {
                register_request(&c.ecs, &revised, &tags).send()
            })
            .await?;
        let arn = out
            .task_definition()
            .and_then(|td| td.task_definition_arn())
            .ok_or_else(|| EcsError::Api {
                service: "ecs",
                operation: "RegisterTaskDefinition",
                code: None,
                message: "the answer holds no task definition ARN".into(),
            })?
            .to_string();
        self.state.new_task_definition = Some(arn.clone());
        Ok(arn)
    }

    async fn update_service(&mut self, service: &str, td: &str) -> Result<(), EcsError> {
        let cluster = self.spec.aws.cluster.clone();
        self.report(
            true,
            "ecs",
            "UpdateService",
            json!({ "cluster": cluster, "service": service, "taskDefinition": td }),
        );
        if self.exec.is_dry_run() {
            return Ok(());
        }
        self.call("ecs", "UpdateService", |c| {
            c.ecs
                .update_service()
                .cluster(&cluster)
                .service(service)
                .task_definition(td)
                .send()
        })
        .await?;
        Ok(())
    }

    async fn wait_steady(&mut self, service: &str, td: &str) -> Result<(), EcsError> {
        if self.exec.is_dry_run() {
            self.exec.note(&format!(
                "wait until ECS service `{service}` is steady on {td}: its PRIMARY deployment COMPLETED with every desired task running (at most {}, deploy_timeout)",
                humantime::format_duration(self.spec.aws.deploy_timeout)
            ));
            return Ok(());
        }
        let deadline = tokio::time::Instant::now() + self.spec.aws.deploy_timeout;
        let mut pause = self.limits.poll_first;
        loop {
            let found = self.describe_service(service).await?;
            match judge(found.deployments(), td) {
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
                Progress::Waiting(last) => {
                    let now = tokio::time::Instant::now();
                    if now >= deadline {
                        return Err(EcsError::DeploymentTimeout {
                            service: service.to_string(),
                            task_definition: td.to_string(),
                            after: self.spec.aws.deploy_timeout,
                            last,
                        });
                    }
                    tokio::time::sleep(pause.min(deadline - now)).await;
                    pause = (pause * 3 / 2).min(self.limits.poll_max);
                }
            }
        }
    }

    /// Puts the service back on the task definition it ran at preflight and waits for it; a
    /// service that never left it (and is steady) needs nothing.
    async fn restore(&mut self, service: &str) -> Result<(), EcsError> {
        if self.exec.is_dry_run() {
            let previous = format!("<the task definition service {service} ran before>");
            self.update_service(service, &previous).await?;
            return self.wait_steady(service, &previous).await;
        }
        let Some(previous) = self.state.previous_task_definition.clone() else {
            // Preflight never got as far as reading it, so nothing was changed.
            return Ok(());
        };
        let current = self.describe_service(service).await?;
        let running = current.task_definition().unwrap_or_default();
        if same_td(running, &previous) {
            if judge(current.deployments(), &previous) == Progress::Steady {
                return Ok(());
            }
            return self.wait_steady(service, &previous).await;
        }
        self.update_service(service, &previous).await?;
        self.wait_steady(service, &previous).await
    }

    // ---- ALB ----

    fn alb(&self) -> (&AlbListener, &str, &str) {
        match &self.spec.mode {
            EcsMode::Alb(EcsAlbSpec {
                listener,
                stable_target_group,
                canary_target_group,
                ..
            }) => (listener, stable_target_group, canary_target_group),
            EcsMode::Service(_) => unreachable!("only called in mode \"alb\""),
        }
    }

    async fn check_target_group(&mut self, arn: &str, role: &str) -> Result<(), EcsError> {
        self.report(
            false,
            "elbv2",
            "DescribeTargetGroups",
            json!({ "TargetGroupArns": [arn] }),
        );
        if self.exec.is_dry_run() {
            return Ok(());
        }
        let result = self
            .call("elbv2", "DescribeTargetGroups", |c| {
                c.elb.describe_target_groups().target_group_arns(arn).send()
            })
            .await;
        match result {
            Ok(out) if !out.target_groups().is_empty() => Ok(()),
            Ok(_) => Err(self.missing(format!("target group {arn} ({role})"))),
            Err(EcsError::Api { code: Some(c), .. }) if c == "TargetGroupNotFound" => {
                Err(self.missing(format!("target group {arn} ({role})")))
            }
            Err(e) => Err(e),
        }
    }

    /// The actions of the listener (its default actions) or of the rule.
    async fn read_actions(&mut self) -> Result<Vec<Action>, EcsError> {
        let (listener, _, _) = self.alb();
        let listener = listener.clone();
        match &listener {
            AlbListener::Listener(arn) => self.report(
                false,
                "elbv2",
                "DescribeListeners",
                json!({ "ListenerArns": [arn] }),
            ),
            AlbListener::Rule(arn) => self.report(
                false,
                "elbv2",
                "DescribeRules",
                json!({ "RuleArns": [arn] }),
            ),
        }
        if self.exec.is_dry_run() {
            return Ok(Vec::new());
        }
        let (result, not_found, what) = match &listener {
            AlbListener::Listener(arn) => (
                self.call("elbv2", "DescribeListeners", |c| {
                    c.elb.describe_listeners().listener_arns(arn).send()
                })
                .await
                .map(|out| {
                    out.listeners()
                        .first()
                        .map(|l| l.default_actions().to_vec())
                }),
                "ListenerNotFound",
                format!("ALB listener {arn}"),
            ),
            AlbListener::Rule(arn) => (
                self.call("elbv2", "DescribeRules", |c| {
                    c.elb.describe_rules().rule_arns(arn).send()
                })
                .await
                .map(|out| out.rules().first().map(|r| r.actions().to_vec())),
                "RuleNotFound",
                format!("ALB listener rule {arn}"),
            ),
        };
        match result {
            Ok(Some(actions)) => Ok(actions),
            Ok(None) => Err(self.missing(what)),
            Err(EcsError::Api { code: Some(c), .. }) if c == not_found => Err(self.missing(what)),
            Err(e) => Err(e),
        }
    }

    async fn write_actions(&mut self, actions: Vec<Action>) -> Result<(), EcsError> {
        let (listener, _, _) = self.alb();
        let listener = listener.clone();
        let shown: Vec<Value> = actions.iter().map(action_json).collect();
        match &listener {
            AlbListener::Listener(arn) => self.report(
                true,
                "elbv2",
                "ModifyListener",
                json!({ "ListenerArn": arn, "DefaultActions": shown }),
            ),
            AlbListener::Rule(arn) => self.report(
                true,
                "elbv2",
                "ModifyRule",
                json!({ "RuleArn": arn, "Actions": shown }),
            ),
        }
        if self.exec.is_dry_run() {
            return Ok(());
        }
        match &listener {
            AlbListener::Listener(arn) => {
                self.call("elbv2", "ModifyListener", |c| {
                    c.elb
                        .modify_listener()
                        .listener_arn(arn)
                        .set_default_actions(Some(actions))
                        .send()
                })
                .await?;
            }
            // Conditions are left out, so the rule keeps its own.
            AlbListener::Rule(arn) => {
                self.call("elbv2", "ModifyRule", |c| {
                    c.elb
                        .modify_rule()
                        .rule_arn(arn)
                        .set_actions(Some(actions))
                        .send()
                })
                .await?;
            }
        }
        Ok(())
    }

    async fn check_alb(&mut self) -> Result<(), EcsError> {
        let (_, stable, canary) = self.alb();
        let (stable, canary) = (stable.to_string(), canary.to_string());
        self.check_target_group(&stable, "stable_target_group")
            .await?;
        self.check_target_group(&canary, "canary_target_group")
            .await?;
        let actions = self.read_actions().await?;
        if self.exec.is_dry_run() {
            return Ok(());
        }
        let what = self.action_owner();
        let original =
            forward_weights(&actions).map_err(|e| EcsError::Unusable(format!("{what}: {e}")))?;
        // Proves now, before anything changes, that the action can be weighted.
        set_forward_weights(&actions, &stable, &canary, (100, 0))
            .map_err(|e| EcsError::Unusable(format!("{what}: {e}")))?;
        self.state.original_weights.get_or_insert(original);
        Ok(())
    }

    fn action_owner(&self) -> String {
        match self.alb().0 {
            AlbListener::Listener(arn) => format!("the default actions of ALB listener {arn}"),
            AlbListener::Rule(arn) => format!("ALB listener rule {arn}"),
        }
    }

    /// Writes the weights on the forward action and reads them back.
    async fn apply_weights(&mut self, weights: (i32, i32)) -> Result<(), BackendError> {
        let (_, stable, canary) = self.alb();
        let (stable, canary) = (stable.to_string(), canary.to_string());
        let what = self.action_owner();
        if self.exec.is_dry_run() {
            self.read_actions().await?;
            let forward = json!({
                "Type": "forward",
                "ForwardConfig": {"TargetGroups": [
                    {"TargetGroupArn": stable, "Weight": weights.0},
                    {"TargetGroupArn": canary, "Weight": weights.1},
                ]},
            });
            let (op, params) = match self.alb().0 {
                AlbListener::Listener(arn) => (
                    "ModifyListener",
                    json!({"ListenerArn": arn, "DefaultActions": [forward], "otherActions": "kept as read"}),
                ),
                AlbListener::Rule(arn) => (
                    "ModifyRule",
                    json!({"RuleArn": arn, "Actions": [forward], "otherActions": "kept as read"}),
                ),
            };
            self.report(true, "elbv2", op, params);
            self.exec.note(&format!(
                "read {what} back and confirm the weights {} (stable) / {} (canary)",
                weights.0, weights.1
            ));
            return Ok(());
        }
        let actions = self.read_actions().await?;
        let unusable = |e: String| EcsError::Unusable(format!("{what}: {e}"));
        if same_split(&actions, &stable, &canary, weights) {
            // Already so (a retried rollback, a repeated stage): that read is the confirmation.
            return Ok(());
        }
        let updated = set_forward_weights(&actions, &stable, &canary, weights).map_err(unusable)?;
        self.write_actions(updated).await?;
        let read_back = self.read_actions().await?;
        if has_weights(&read_back, &stable, &canary, weights) {
            Ok(())
        } else {
            let seen = forward_weights(&read_back)
                .map(|w| {
                    w.iter()
                        .map(|t| format!("{} = {}", t.target_group_arn, t.weight))
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_else(|e| e);
            Err(BackendError::NotConfirmed(format!(
                "{what} reads back {seen}, not {stable} = {}, {canary} = {}",
                weights.0, weights.1
            )))
        }
    }
}

#[async_trait]
impl Backend for Ecs {
    fn describe(&self) -> String {
        match &self.spec.mode {
            EcsMode::Service(s) => {
                format!(
                    "ECS service `{}` in cluster `{}`",
                    s.update.service, self.spec.aws.cluster
                )
            }
            EcsMode::Alb(EcsAlbSpec { listener, .. }) => {
                let on = match listener {
                    AlbListener::Listener(arn) => format!("ALB listener {arn}"),
                    AlbListener::Rule(arn) => format!("ALB listener rule {arn}"),
                };
                format!("{on} (ECS cluster `{}`)", self.spec.aws.cluster)
            }
        }
    }

    async fn preflight(&mut self) -> Result<(), BackendError> {
        if self.exec.is_dry_run() {
            self.exec.note(&format!(
                "resolve AWS credentials (the standard chain) for the region {}",
                self.region_text()
            ));
        } else {
            self.clients().await?;
        }
        self.check_cluster().await?;
        if let Some(target) = self.target() {
            self.check_target(&target).await?;
        }
        if matches!(self.spec.mode, EcsMode::Alb(_)) {
            self.check_alb().await?;
        }
        Ok(())
    }

    async fn set_weight(&mut self, change: WeightChange) -> Result<(), BackendError> {
        match self.spec.mode {
            EcsMode::Service(_) => {
                let target = self.target().expect("mode \"service\" has a target");
                if change.weight.is_zero() {
                    // Validation allows only 0 and 100 here: at 0 the service keeps running
                    // what it ran, which is the stable version.
                    if self.exec.is_dry_run() {
                        self.exec.note(&format!(
                            "leave ECS service `{}` on its current task definition (0% on the new version)",
                            target.service
                        ));
                    }
                    return Ok(());
                }
                self.deploy(&target).await.map_err(new_version_failed)
            }
            EcsMode::Alb(_) => {
                if let Some(target) = self.target()
                    && !self.canary_ready
                {
                    // The canary service gets the new image before it gets any traffic.
                    self.deploy(&target).await.map_err(new_version_failed)?;
                    self.canary_ready = true;
                }
                self.apply_weights(alb_weights(change.weight)).await
            }
        }
    }

    /// At 100% the new version already has every request; nothing is left to switch.
    async fn promote(&mut self) -> Result<(), BackendError> {
        Ok(())
    }

    /// Mode "service": the task definition to return to is only in the journal, or given as
    /// `--task-definition`. Mode "alb": the rollback sets the stable group back to 100, which
    /// needs nothing more than a preflight; the canary service keeps its task definition unless
    /// one is given.
    async fn recover(&mut self, recovery: &Recovery) -> Result<Vec<String>, BackendError> {
        let mut notes = Vec::new();
        match (&self.spec.mode, &recovery.task_definition) {
            (_, Some(td)) => self.state.previous_task_definition = Some(td.clone()),
            (EcsMode::Service(EcsServiceSpec { update }), None) => {
                let service = &update.service;
                return Err(BackendError::Precondition(format!(
                    "the task definition ECS service `{service}` ran before the rollout is only \
                     known to the journal; give it with `rollout rollback PLAN --task-definition \
                     FAMILY:REVISION` (`aws ecs describe-services` lists the service's deployments)"
                )));
            }
            (
                EcsMode::Alb(EcsAlbSpec {
                    canary_update: Some(canary),
                    ..
                }),
                None,
            ) => notes.push(format!(
                "no journal: ECS service `{}` keeps the task definition it runs now (the one before \
                 the rollout is only known to the journal; `--task-definition` returns it too)",
                canary.service
            )),
            (EcsMode::Alb(_), None) => {}
        }
        self.preflight().await?;
        Ok(notes)
    }

    fn saved_state(&self) -> Option<Value> {
        (self.state != EcsState::default())
            .then(|| serde_json::to_value(&self.state).expect("the state serializes"))
    }

    fn restore_state(&mut self, state: Value) -> Result<(), BackendError> {
        self.state = serde_json::from_value(state).map_err(|e| {
            EcsError::Unusable(format!(
                "the journal's record of the ECS state before the run cannot be read ({e})"
            ))
        })?;
        Ok(())
    }

    async fn rollback(&mut self) -> Result<(), BackendError> {
        match self.spec.mode {
            EcsMode::Service(_) => {
                let target = self.target().expect("mode \"service\" has a target");
                self.restore(&target.service).await?;
            }
            EcsMode::Alb(_) => {
                // Traffic first: the weights are what users feel. Both steps change nothing
                // where nothing was changed, so they are safe from any state.
                self.apply_weights((100, 0)).await?;
                if let Some(target) = self.target() {
                    self.restore(&target.service).await?;
                }
            }
        }
        Ok(())
    }
}

/// A deployment of the new revision that ECS failed, or that never became steady, is the new
/// version failing its stage; other errors are the tool's.
fn new_version_failed(e: EcsError) -> BackendError {
    match e {
        EcsError::DeploymentFailed { .. } | EcsError::DeploymentTimeout { .. } => {
            BackendError::NewVersionFailed(e.to_string())
        }
        e => e.into(),
    }
}

// ---- AWS configuration ----

/// The SDK's configuration: the standard chains for credentials and region, the plan's region
/// and endpoint when given, explicit retries and time limits, and an HTTPS client on rustls with
/// ring (the TLS stack reqwest already brings).
pub fn config_loader(spec: &Spec, limits: &Limits) -> aws_config::ConfigLoader {
    use aws_config::retry::RetryConfig;
    use aws_config::timeout::TimeoutConfig;
    use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};

    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .build_https();
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http)
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(limits.max_attempts)
                .with_initial_backoff(limits.initial_backoff)
                .with_max_backoff(limits.max_backoff),
        )
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(limits.connect)
                .operation_attempt_timeout(limits.attempt)
                .operation_timeout(limits.operation)
                .build(),
        );
    if let Some(region) = &spec.aws.region {
        loader = loader.region(Region::new(region.clone()));
    }
    if let Some(url) = &spec.aws.endpoint_url {
        loader = loader.endpoint_url(url.clone());
    }
    loader
}

async fn connect(spec: &Spec, limits: &Limits) -> Result<Clients, EcsError> {
    use aws_sdk_ecs::config::ProvideCredentials;

    // Loading reads profile files and may ask the region chain; bounded like any call.
    let config = tokio::time::timeout(limits.credentials, config_loader(spec, limits).load())
        .await
        .map_err(|_| EcsError::CredentialsTimeout(limits.credentials))?;
    let Some(region) = config.region().map(|r| r.to_string()) else {
        return Err(EcsError::NoRegion);
    };
    let Some(provider) = config.credentials_provider() else {
        return Err(EcsError::NoCredentials(
            "no credentials provider is configured".into(),
        ));
    };
    let credentials = tokio::time::timeout(limits.credentials, provider.provide_credentials())
        .await
        .map_err(|_| EcsError::CredentialsTimeout(limits.credentials))?
        .map_err(|e| EcsError::NoCredentials(error_chain(&e)))?;
    if let Some(at) = credentials.expiry() {
        check_not_expired(at, SystemTime::now())?;
    }
    Ok(clients(&config, region))
}

fn clients(config: &SdkConfig, region: String) -> Clients {
    Clients {
        ecs: aws_sdk_ecs::Client::new(config),
        elb: aws_sdk_elasticloadbalancingv2::Client::new(config),
        region,
    }
}

/// Credentials a provider hands out already expired (a stale `credential_process` cache, an
/// old exported session) would only fail later, with a less clear message from AWS.
fn check_not_expired(at: SystemTime, now: SystemTime) -> Result<(), EcsError> {
    if at <= now {
        return Err(EcsError::CredentialsExpired {
            at: humantime::format_rfc3339_seconds(at).to_string(),
            now: humantime::format_rfc3339_seconds(now).to_string(),
        });
    }
    Ok(())
}

/// Sends one call with a time limit of its own, on top of the SDK's: the SDK's operation
/// timeout bounds its retries, this one bounds everything else (credential refreshes included).
async fn send<T, E, R>(
    service: &'static str,
    operation: &'static str,
    limits: &Limits,
    call: impl Future<Output = Result<T, aws_sdk_ecs::error::SdkError<E, R>>>,
) -> Result<T, EcsError>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let limit = limits.operation + limits.credentials;
    match tokio::time::timeout(limit, call).await {
        Ok(Ok(out)) => Ok(out),
        Ok(Err(err)) => {
            let code = err.code().map(str::to_string);
            let message = match (err.code(), err.message()) {
                (Some(code), Some(message)) => format!("{code}: {message}"),
                (Some(code), None) => code.to_string(),
                _ => error_chain(&err),
            };
            Err(EcsError::Api {
                service,
                operation,
                code,
                message,
            })
        }
        Err(_) => Err(EcsError::Timeout {
            service,
            operation,
            after: limit,
        }),
    }
}

/// An error and its sources in one line, without the Debug dumps DisplayErrorContext adds.
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        let part = e.to_string();
        // Wrappers often repeat their source's message; say it once.
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = e.source();
    }
    text
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

/// A RegisterTaskDefinition request that carries over every registrable field of `td`.
/// (The fields left out are the ones ECS sets itself: ARN, revision, status, compatibilities,
/// requiresAttributes and the registration dates.)
fn register_request(
    ecs: &aws_sdk_ecs::Client,
    td: &TaskDefinition,
    tags: &[Tag],
) -> aws_sdk_ecs::operation::register_task_definition::builders::RegisterTaskDefinitionFluentBuilder
{
    ecs.register_task_definition()
        .set_family(td.family.clone())
        .set_task_role_arn(td.task_role_arn.clone())
        .set_execution_role_arn(td.execution_role_arn.clone())
        .set_network_mode(td.network_mode.clone())
        .set_container_definitions(td.container_definitions.clone())
        .set_volumes(td.volumes.clone())
        .set_placement_constraints(td.placement_constraints.clone())
        .set_requires_compatibilities(td.requires_compatibilities.clone())
        .set_cpu(td.cpu.clone())
        .set_memory(td.memory.clone())
        .set_tags((!tags.is_empty()).then(|| tags.to_vec()))
        .set_pid_mode(td.pid_mode.clone())
        .set_ipc_mode(td.ipc_mode.clone())
        .set_proxy_configuration(td.proxy_configuration.clone())
        .set_inference_accelerators(td.inference_accelerators.clone())
        .set_ephemeral_storage(td.ephemeral_storage.clone())
        .set_runtime_platform(td.runtime_platform.clone())
        .set_enable_fault_injection(td.enable_fault_injection)
}

/// `arn:aws:ecs:REGION:ACCOUNT:task-definition/FAMILY:REV` and `FAMILY:REV` name the same one.
fn same_td(a: &str, b: &str) -> bool {
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

/// ALB weights (stable, canary) for a stage weight. ALB takes integers 0..=999 per target
/// group: whole percents are written as such (75/25), tenths in thousandths (999/1), anything
/// finer as the closest ratio that fits. Both sides keep some traffic whenever the stage weight
/// is strictly between 0 and 100, so the finest split is 999 to 1 (about 0.1%).
pub fn alb_weights(weight: Weight) -> (i32, i32) {
    let p = weight.percent();
    if p.fract() == 0.0 {
        let c = p as i32;
        return (100 - c, c);
    }
    let tenths = p * 10.0;
    if (tenths - tenths.round()).abs() < 1e-9 {
        let c = tenths.round() as i32;
        return (1000 - c, c);
    }
    let share = p / 100.0;
    let mut best = (999, 1);
    let mut best_error = f64::INFINITY;
    for c in 1..=999 {
        let s = ((c as f64 * (1.0 - share) / share).round() as i32).clamp(1, 999);
        let error = (c as f64 / (c + s) as f64 - share).abs();
        if error < best_error - 1e-12 {
            best = (s, c);
            best_error = error;
        }
    }
    best
}

fn is_forward(action: &Action) -> bool {
    action.r#type() == Some(&ActionTypeEnum::Forward)
}

/// The forward action's target groups with their weights. A forward action naming a single
/// `TargetGroupArn` sends it everything.
fn forward_weights(actions: &[Action]) -> Result<Vec<TargetGroupWeight>, String> {
    let forward = actions
        .iter()
        .find(|a| is_forward(a))
        .ok_or("it has no forward action")?;
    let tuples = forward
        .forward_config()
        .map(|f| f.target_groups())
        .unwrap_or_default();
    if tuples.is_empty() {
        return forward
            .target_group_arn()
            .map(|arn| {
                vec![TargetGroupWeight {
                    target_group_arn: arn.to_string(),
                    weight: 1,
                }]
            })
            .ok_or_else(|| "its forward action names no target group".to_string());
    }
    Ok(tuples
        .iter()
        .map(|t| TargetGroupWeight {
            target_group_arn: t.target_group_arn().unwrap_or_default().to_string(),
            // ALB's default weight for a target group listed without one.
            weight: t.weight().unwrap_or(1),
        })
        .collect())
}

fn weight_of(weights: &[TargetGroupWeight], arn: &str) -> Option<i32> {
    weights
        .iter()
        .find(|w| w.target_group_arn == arn)
        .map(|w| w.weight)
}

fn has_weights(actions: &[Action], stable: &str, canary: &str, (s, c): (i32, i32)) -> bool {
    let Ok(weights) = forward_weights(actions) else {
        return false;
    };
    weight_of(&weights, stable) == Some(s) && weight_of(&weights, canary).unwrap_or(0) == c
}

/// Whether the forward action already splits traffic as `(stable, canary)` would, whatever the
/// numbers: a lone stable target group already is "100/0". Other target groups do not count;
/// `set_forward_weights` refuses them unless they are at 0.
fn same_split(actions: &[Action], stable: &str, canary: &str, (s, c): (i32, i32)) -> bool {
    let Ok(weights) = forward_weights(actions) else {
        return false;
    };
    let of = |arn: &str| weight_of(&weights, arn).map_or(0, i64::from);
    let (read_s, read_c) = (of(stable), of(canary));
    let others_idle = weights
        .iter()
        .all(|w| w.target_group_arn == stable || w.target_group_arn == canary || w.weight == 0);
    others_idle
        && read_s + read_c > 0
        && read_c * i64::from(s + c) == i64::from(c) * (read_s + read_c)
}

/// The actions with the forward action's weights set to `(stable, canary)`. Everything else is
/// kept: the other actions, the forward action's order and stickiness, and target groups other
/// than the two, which must carry no traffic (their share would be neither version's).
fn set_forward_weights(
    actions: &[Action],
    stable: &str,
    canary: &str,
    (s, c): (i32, i32),
) -> Result<Vec<Action>, String> {
    let current = forward_weights(actions)?;
    if !current.iter().any(|w| w.target_group_arn == stable) {
        return Err(format!(
            "its forward action does not send traffic to the stable target group {stable}"
        ));
    }
    if let Some(other) = current
        .iter()
        .find(|w| w.target_group_arn != stable && w.target_group_arn != canary && w.weight > 0)
    {
        return Err(format!(
            "its forward action also sends traffic to {} (weight {}), which is neither the stable nor the canary target group",
            other.target_group_arn, other.weight
        ));
    }
    let mut tuples: Vec<TargetGroupTuple> = current
        .iter()
        .map(|w| {
            let weight = if w.target_group_arn == stable {
                s
            } else if w.target_group_arn == canary {
                c
            } else {
                w.weight
            };
            TargetGroupTuple::builder()
                .target_group_arn(&w.target_group_arn)
                .weight(weight)
                .build()
        })
        .collect();
    if !current.iter().any(|w| w.target_group_arn == canary) {
        tuples.push(
            TargetGroupTuple::builder()
                .target_group_arn(canary)
                .weight(c)
                .build(),
        );
    }
    let mut updated = actions.to_vec();
    let forward = updated
        .iter_mut()
        .find(|a| is_forward(a))
        .expect("forward_weights found it");
    let stickiness = forward
        .forward_config()
        .and_then(|f| f.target_group_stickiness_config())
        .cloned();
    forward.forward_config = Some(
        aws_sdk_elasticloadbalancingv2::types::ForwardActionConfig::builder()
            .set_target_groups(Some(tuples))
            .set_target_group_stickiness_config(stickiness)
            .build(),
    );
    // ALB refuses a TargetGroupArn next to a ForwardConfig of several target groups.
    forward.target_group_arn = None;
    Ok(updated)
}

/// An action as the API spells it, for the log; non-forward settings are summarised.
fn action_json(action: &Action) -> Value {
    let mut out = serde_json::Map::new();
    if let Some(t) = action.r#type() {
        out.insert("Type".into(), json!(t.as_str()));
    }
    if let Some(order) = action.order() {
        out.insert("Order".into(), json!(order));
    }
    if let Some(arn) = action.target_group_arn() {
        out.insert("TargetGroupArn".into(), json!(arn));
    }
    if let Some(forward) = action.forward_config() {
        let groups: Vec<Value> = forward
            .target_groups()
            .iter()
            .map(|t| json!({"TargetGroupArn": t.target_group_arn(), "Weight": t.weight()}))
            .collect();
        let mut config = serde_json::Map::new();
        config.insert("TargetGroups".into(), Value::Array(groups));
        if let Some(sticky) = forward.target_group_stickiness_config() {
            config.insert(
                "TargetGroupStickinessConfig".into(),
                json!({"Enabled": sticky.enabled(), "DurationSeconds": sticky.duration_seconds()}),
            );
        }
        out.insert("ForwardConfig".into(), Value::Object(config));
    }
    for (present, name) in [
        (
            action.authenticate_oidc_config().is_some(),
            "AuthenticateOidcConfig",
        ),
        (
            action.authenticate_cognito_config().is_some(),
            "AuthenticateCognitoConfig",
        ),
        (action.redirect_config().is_some(), "RedirectConfig"),
        (
            action.fixed_response_config().is_some(),
            "FixedResponseConfig",
        ),
    ] {
        if present {
            out.insert(name.into(), json!("(kept as read)"));
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::EcsAws;
    use aws_sdk_ecs::types::ContainerDefinition;
    use aws_sdk_elasticloadbalancingv2::types::{
        FixedResponseActionConfig, ForwardActionConfig, TargetGroupStickinessConfig,
    };

    const STABLE: &str = "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/stable/1";
    const CANARY: &str = "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/canary/2";
    const OTHER: &str = "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/other/3";
    const TD1: &str = "arn:aws:ecs:us-east-1:1:task-definition/web:1";
    const TD2: &str = "arn:aws:ecs:us-east-1:1:task-definition/web:2";

    fn weight(p: f64) -> Weight {
        Weight::new(p).unwrap()
    }

    #[test]
    fn alb_weights_are_readable_and_in_range() {
        assert_eq!(alb_weights(weight(0.0)), (100, 0));
        assert_eq!(alb_weights(weight(25.0)), (75, 25));
        assert_eq!(alb_weights(weight(100.0)), (0, 100));
        assert_eq!(alb_weights(weight(0.1)), (999, 1));
        assert_eq!(alb_weights(weight(99.9)), (1, 999));
        assert_eq!(alb_weights(weight(12.5)), (875, 125));
        assert_eq!(alb_weights(weight(0.01)), (999, 1));
        assert_eq!(alb_weights(weight(99.99)), (1, 999));
        assert_eq!(alb_weights(weight(0.05)), (999, 1));
        for p in [0.01, 0.05, 0.123, 33.333, 66.6666, 99.95, 99.99] {
            let (s, c) = alb_weights(weight(p));
            assert!(
                (0..=999).contains(&s) && (0..=999).contains(&c),
                "{p}: {s}/{c}"
            );
            assert!(c > 0, "{p}% must send the canary something");
            assert!(s > 0, "{p}% must leave stable something");
            let share = 100.0 * c as f64 / (s + c) as f64;
            assert!((share - p).abs() < 0.1, "{p}% became {share}% ({s}/{c})");
        }
    }

    fn tuple(arn: &str, weight: Option<i32>) -> TargetGroupTuple {
        TargetGroupTuple::builder()
            .target_group_arn(arn)
            .set_weight(weight)
            .build()
    }

    fn forward(tuples: Vec<TargetGroupTuple>, sticky: bool) -> Action {
        let mut config = ForwardActionConfig::builder().set_target_groups(Some(tuples));
        if sticky {
            config = config.target_group_stickiness_config(
                TargetGroupStickinessConfig::builder()
                    .enabled(true)
                    .duration_seconds(300)
                    .build(),
            );
        }
        Action::builder()
            .r#type(ActionTypeEnum::Forward)
            .order(2)
            .forward_config(config.build())
            .build()
    }

    fn auth_action() -> Action {
        Action::builder()
            .r#type(ActionTypeEnum::FixedResponse)
            .order(1)
            .fixed_response_config(
                FixedResponseActionConfig::builder()
                    .status_code("403")
                    .build(),
            )
            .build()
    }

    #[test]
    fn a_single_target_group_becomes_a_weighted_pair() {
        let actions = vec![
            Action::builder()
                .r#type(ActionTypeEnum::Forward)
                .target_group_arn(STABLE)
                .build(),
        ];
        let updated = set_forward_weights(&actions, STABLE, CANARY, (90, 10)).unwrap();
        assert_eq!(updated[0].target_group_arn(), None);
        assert_eq!(
            forward_weights(&updated).unwrap(),
            vec![
                TargetGroupWeight {
                    target_group_arn: STABLE.into(),
                    weight: 90
                },
                TargetGroupWeight {
                    target_group_arn: CANARY.into(),
                    weight: 10
                },
            ]
        );
        assert!(has_weights(&updated, STABLE, CANARY, (90, 10)));
        assert!(!has_weights(&updated, STABLE, CANARY, (80, 20)));
        // Before: everything on stable, nothing on the (absent) canary.
        assert!(has_weights(&actions, STABLE, CANARY, (1, 0)));
        assert!(same_split(&actions, STABLE, CANARY, (100, 0)));
        assert!(!same_split(&actions, STABLE, CANARY, (90, 10)));
        assert!(same_split(&updated, STABLE, CANARY, (9, 1)));
        assert!(!same_split(&updated, STABLE, CANARY, (1, 0)));
        let third = vec![forward(
            vec![tuple(STABLE, Some(1)), tuple(OTHER, Some(1))],
            false,
        )];
        assert!(!same_split(&third, STABLE, CANARY, (100, 0)));
    }

    #[test]
    fn everything_else_on_the_actions_is_kept() {
        let actions = vec![
            auth_action(),
            forward(
                vec![
                    tuple(CANARY, Some(0)),
                    tuple(STABLE, Some(100)),
                    tuple(OTHER, Some(0)),
                ],
                true,
            ),
        ];
        let updated = set_forward_weights(&actions, STABLE, CANARY, (50, 50)).unwrap();
        assert_eq!(updated[0], actions[0]);
        let f = &updated[1];
        assert_eq!(f.order(), Some(2));
        let config = f.forward_config().unwrap();
        assert_eq!(
            config.target_group_stickiness_config(),
            actions[1]
                .forward_config()
                .unwrap()
                .target_group_stickiness_config()
        );
        // Same order as before; the idle third target group stays idle.
        assert_eq!(
            config.target_groups(),
            &[
                tuple(CANARY, Some(50)),
                tuple(STABLE, Some(50)),
                tuple(OTHER, Some(0))
            ]
        );
    }

    #[test]
    fn actions_that_cannot_be_weighted_are_refused() {
        let no_stable = vec![forward(vec![tuple(OTHER, Some(1))], false)];
        let err = set_forward_weights(&no_stable, STABLE, CANARY, (100, 0)).unwrap_err();
        assert!(
            err.contains("does not send traffic to the stable target group"),
            "{err}"
        );

        let third = vec![forward(
            vec![tuple(STABLE, Some(50)), tuple(OTHER, Some(50))],
            false,
        )];
        let err = set_forward_weights(&third, STABLE, CANARY, (100, 0)).unwrap_err();
        assert!(err.contains(OTHER) && err.contains("weight 50"), "{err}");

        let err = set_forward_weights(&[auth_action()], STABLE, CANARY, (100, 0)).unwrap_err();
        assert_eq!(err, "it has no forward action");
    }

    #[test]
    fn a_target_group_without_a_weight_counts_as_one() {
        let actions = vec![forward(vec![tuple(STABLE, None)], false)];
        assert_eq!(forward_weights(&actions).unwrap()[0].weight, 1);
    }

    #[test]
    fn actions_are_shown_as_the_api_spells_them() {
        let shown = action_json(&forward(vec![tuple(STABLE, Some(3))], true));
        assert_eq!(
            shown,
            json!({
                "Type": "forward",
                "Order": 2,
                "ForwardConfig": {
                    "TargetGroups": [{"TargetGroupArn": STABLE, "Weight": 3}],
                    "TargetGroupStickinessConfig": {"Enabled": true, "DurationSeconds": 300},
                },
            })
        );
        assert_eq!(
            action_json(&auth_action()),
            json!({"Type": "fixed-response", "Order": 1, "FixedResponseConfig": "(kept as read)"})
        );
    }

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

    fn task_definition() -> TaskDefinition {
        use aws_sdk_ecs::types::{
            Compatibility, CpuArchitecture, EphemeralStorage, IpcMode, NetworkMode, PidMode,
            RuntimePlatform, Volume,
        };
        TaskDefinition::builder()
            .task_definition_arn(TD1)
            .family("web")
            .revision(1)
            .task_role_arn("arn:aws:iam::1:role/web")
            .execution_role_arn("arn:aws:iam::1:role/exec")
            .network_mode(NetworkMode::Awsvpc)
            .container_definitions(
                ContainerDefinition::builder()
                    .name("app")
                    .image("web:1")
                    .memory(512)
                    .build(),
            )
            .container_definitions(
                ContainerDefinition::builder()
                    .name("sidecar")
                    .image("envoy:1")
                    .build(),
            )
            .volumes(Volume::builder().name("scratch").build())
            .requires_compatibilities(Compatibility::Fargate)
            .cpu("512")
            .memory("1024")
            .pid_mode(PidMode::Task)
            .ipc_mode(IpcMode::None)
            .ephemeral_storage(EphemeralStorage::builder().size_in_gib(30).build())
            .runtime_platform(
                RuntimePlatform::builder()
                    .cpu_architecture(CpuArchitecture::Arm64)
                    .build(),
            )
            .enable_fault_injection(true)
            .build()
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
    fn the_registration_carries_every_field_over() {
        let ecs = aws_sdk_ecs::Client::from_conf(
            aws_sdk_ecs::Config::builder()
                .behavior_version(BehaviorVersion::latest())
                .region(Region::new("us-east-1"))
                .build(),
        );
        let td = task_definition();
        let tags = vec![Tag::builder().key("team").value("payments").build()];
        let request = register_request(&ecs, &td, &tags);
        let input = request.as_input();
        assert_eq!(input.get_family(), &td.family);
        assert_eq!(input.get_task_role_arn(), &td.task_role_arn);
        assert_eq!(input.get_execution_role_arn(), &td.execution_role_arn);
        assert_eq!(input.get_network_mode(), &td.network_mode);
        assert_eq!(input.get_container_definitions(), &td.container_definitions);
        assert_eq!(input.get_volumes(), &td.volumes);
        assert_eq!(
            input.get_requires_compatibilities(),
            &td.requires_compatibilities
        );
        assert_eq!(input.get_cpu(), &td.cpu);
        assert_eq!(input.get_memory(), &td.memory);
        assert_eq!(input.get_pid_mode(), &td.pid_mode);
        assert_eq!(input.get_ipc_mode(), &td.ipc_mode);
        assert_eq!(input.get_ephemeral_storage(), &td.ephemeral_storage);
        assert_eq!(input.get_runtime_platform(), &td.runtime_platform);
        assert_eq!(input.get_enable_fault_injection(), &Some(true));
        assert_eq!(input.get_tags(), &Some(tags));
        assert_eq!(register_request(&ecs, &td, &[]).get_tags(), &None);
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

    #[test]
    fn the_state_survives_a_journal() {
        let state = EcsState {
            previous_task_definition: Some(TD1.into()),
            new_task_definition: None,
            original_weights: Some(vec![TargetGroupWeight {
                target_group_arn: STABLE.into(),
                weight: 1,
            }]),
        };
        let text = serde_json::to_string(&state).unwrap();
        assert_eq!(serde_json::from_str::<EcsState>(&text).unwrap(), state);
        assert_eq!(
            serde_json::from_str::<EcsState>("{}").unwrap(),
            EcsState::default()
        );
    }

    #[test]
    fn task_definitions_compare_by_family_and_revision() {
        assert!(same_td(TD1, "web:1"));
        assert!(same_td("web:1", TD1));
        assert!(!same_td(TD1, TD2));
    }

    #[test]
    fn credential_problems_say_what_to_do() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let err = check_not_expired(now - Duration::from_secs(60), now).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the AWS credentials expired at 2027-01-15T07:59:00Z (now 2027-01-15T08:00:00Z); refresh them (for example `aws sso login`) and run again"
        );
        assert!(check_not_expired(now + Duration::from_secs(60), now).is_ok());

        let api = |code: &str| EcsError::Api {
            service: "ecs",
            operation: "DescribeClusters",
            code: Some(code.into()),
            message: format!("{code}: the message"),
        };
        assert!(api("ExpiredTokenException").to_string().ends_with(
            "ExpiredTokenException: the message; the AWS credentials have expired: refresh them (for example `aws sso login`) and run again"
        ));
        assert!(
            api("UnrecognizedClientException")
                .to_string()
                .contains("AWS did not accept the credentials")
        );
        assert!(
            api("AccessDeniedException")
                .to_string()
                .contains("lack a permission")
        );
        assert_eq!(
            api("ClusterNotFoundException").to_string(),
            "ecs DescribeClusters failed: ClusterNotFoundException: the message"
        );
    }

    /// A stand-in for the ECS API on 127.0.0.1: answers each request with the next of
    /// `answers` (status and JSON body), or never answers once they run out.
    async fn fake_ecs(answers: Vec<(u16, &'static str)>) -> (String, Arc<std::sync::Mutex<u32>>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(std::sync::Mutex::new(0u32));
        let answers = Arc::new(std::sync::Mutex::new(answers.into_iter()));
        let counter = seen.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                let answers = answers.clone();
                let counter = counter.clone();
                tokio::spawn(async move {
                    let mut buffer = Vec::new();
                    loop {
                        // One request: headers, then a body of Content-Length bytes.
                        let mut chunk = [0u8; 4096];
                        let head_end = loop {
                            if let Some(i) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                                break i + 4;
                            }
                            match socket.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                            }
                        };
                        let head = String::from_utf8_lossy(&buffer[..head_end]).to_lowercase();
                        let length: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .map_or(0, |v| v.trim().parse().unwrap());
                        while buffer.len() < head_end + length {
                            match socket.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                            }
                        }
                        buffer.drain(..head_end + length);
                        *counter.lock().unwrap() += 1;
                        let next = answers.lock().unwrap().next();
                        let Some((status, body)) = next else {
                            // Hold the connection open without answering.
                            tokio::time::sleep(Duration::from_secs(60)).await;
                            return;
                        };
                        let response = format!(
                            "HTTP/1.1 {status} X\r\ncontent-type: application/x-amz-json-1.1\r\nx-amzn-requestid: 1\r\ncontent-length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        if socket.write_all(response.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (url, seen)
    }

    const QUICK: Limits = Limits {
        connect: Duration::from_secs(1),
        attempt: Duration::from_millis(300),
        operation: Duration::from_secs(2),
        max_attempts: 4,
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(50),
        credentials: Duration::from_secs(2),
        poll_first: Duration::from_millis(10),
        poll_max: Duration::from_millis(10),
    };

    async fn ecs_client(url: &str) -> aws_sdk_ecs::Client {
        let spec = Spec {
            aws: EcsAws {
                cluster: "prod".into(),
                region: Some("us-east-1".into()),
                endpoint_url: Some(url.to_string()),
                deploy_timeout: Duration::from_secs(1),
            },
            mode: EcsMode::Service(EcsServiceSpec {
                update: EcsImageUpdate {
                    service: "web".into(),
                    container: "app".into(),
                    image: "web:2".into(),
                },
            }),
        };
        let config = config_loader(&spec, &QUICK)
            .credentials_provider(aws_sdk_ecs::config::Credentials::new(
                "AKIDTEST", "secret", None, None, "test",
            ))
            .load()
            .await;
        aws_sdk_ecs::Client::new(&config)
    }

    const CLUSTERS: &str =
        r#"{"clusters":[{"clusterName":"prod","status":"ACTIVE"}],"failures":[]}"#;
    const THROTTLED: &str = r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#;

    async fn describe_prod(
        ecs: &aws_sdk_ecs::Client,
    ) -> Result<aws_sdk_ecs::operation::describe_clusters::DescribeClustersOutput, EcsError> {
        send(
            "ecs",
            "DescribeClusters",
            &QUICK,
            ecs.describe_clusters().clusters("prod").send(),
        )
        .await
    }

    #[tokio::test]
    async fn throttling_is_retried_with_backoff() {
        let (url, seen) = fake_ecs(vec![(400, THROTTLED), (400, THROTTLED), (200, CLUSTERS)]).await;
        let ecs = ecs_client(&url).await;
        let out = describe_prod(&ecs).await.unwrap();
        assert_eq!(out.clusters()[0].status(), Some("ACTIVE"));
        assert_eq!(*seen.lock().unwrap(), 3);
    }

    #[tokio::test]
    async fn throttling_that_never_ends_is_an_error_after_max_attempts() {
        let (url, seen) = fake_ecs(vec![(400, THROTTLED); 10]).await;
        let ecs = ecs_client(&url).await;
        let err = describe_prod(&ecs).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "ecs DescribeClusters failed: ThrottlingException: Rate exceeded"
        );
        assert_eq!(*seen.lock().unwrap(), QUICK.max_attempts);
    }

    #[tokio::test]
    async fn a_call_that_gets_no_answer_times_out() {
        let (url, seen) = fake_ecs(vec![]).await;
        let ecs = ecs_client(&url).await;
        let started = std::time::Instant::now();
        let err = describe_prod(&ecs).await.unwrap_err();
        let elapsed = started.elapsed();
        assert!(
            elapsed < QUICK.operation + Duration::from_secs(1),
            "{elapsed:?}"
        );
        // Each attempt timed out and was retried, until the operation's own limit.
        assert!(*seen.lock().unwrap() >= 2, "{}", *seen.lock().unwrap());
        assert!(err.to_string().contains("timeout"), "{err}");
    }
}
