//! The seam's dry-run implementation. It calls nothing and needs no credentials: it reports
//! every call it is asked to make, reads included, through the executor, and answers reads from
//! the state the plan implies:
//!
//! - the cluster is ACTIVE;
//! - each service the plan names is ACTIVE, deployed by ECS, and steady on a task definition
//!   called `<the task definition of service NAME>` that has the plan's container;
//! - the target groups exist, and the listener or rule has one forward action that sends all
//!   traffic to the stable target group;
//! - a registered revision is called `<the revision just registered>`; a service updated to a
//!   task definition is steady on it at once; a listener or rule holds the actions last written.
//!
//! So the mode code takes the path a real run takes on a healthy system, and every call it would
//! make is shown in order, with its parameters; what a real run would first read from AWS shows
//! as the placeholders above. A real run keeps every other action of the listener or rule as it
//! reads it; the actions written here say so (`"otherActions": "kept as read"`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use aws_sdk_ecs::types::{
    Cluster, ContainerDefinition, Deployment, DeploymentRolloutState, Service, TaskDefinition,
};
use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, ForwardActionConfig, Listener, Rule, TargetGroup, TargetGroupTuple,
};
use serde_json::json;

use super::EcsError;
use super::api::{Call, Described, EcsApi, NewRevision};
use crate::exec::Executor;
use crate::plan::{AlbListener, EcsBackend, EcsImageUpdate, EcsMode};

/// What a registered revision is called in a dry run.
const REGISTERED: &str = "<the revision just registered>";

pub struct DryRunApi {
    exec: Arc<dyn Executor>,
    region: String,
    implied: Mutex<Implied>,
}

/// The state the plan implies, changed by the calls that change something.
#[derive(Default)]
struct Implied {
    /// The task definition each service runs.
    services: BTreeMap<String, String>,
    task_definitions: BTreeMap<String, Described>,
    /// The actions of the listener or rule, by ARN.
    actions: BTreeMap<String, Vec<Action>>,
}

impl DryRunApi {
    pub fn new(spec: &EcsBackend, exec: Arc<dyn Executor>) -> Self {
        let mut implied = Implied::default();
        let update = match &spec.mode {
            EcsMode::Service(service) => Some(&service.update),
            EcsMode::Alb(alb) => {
                let arn = match &alb.listener {
                    AlbListener::Listener(arn) | AlbListener::Rule(arn) => arn,
                };
                implied
                    .actions
                    .insert(arn.clone(), vec![forward_all_to(&alb.stable_target_group)]);
                alb.canary_update.as_ref()
            }
        };
        if let Some(update) = update {
            implied.add_service(update);
        }
        DryRunApi {
            exec,
            region: spec
                .aws
                .region
                .clone()
                .unwrap_or_else(|| "of the environment".into()),
            implied: Mutex::new(implied),
        }
    }

    fn implied(&self) -> MutexGuard<'_, Implied> {
        // Nothing panics while holding it; a poisoned lock still holds a consistent state.
        self.implied.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn report(&self, call: Call<'_>) {
        call.report_to(self.exec.as_ref());
    }

    /// The actions written are only the ones this dry run knows of.
    fn report_write(&self, call: Call<'_>) {
        let mut params = call.params();
        params["otherActions"] = json!("kept as read");
        self.exec.call(call.service(), call.operation(), params);
    }
}

impl Implied {
    fn add_service(&mut self, update: &EcsImageUpdate) {
        let arn = format!("<the task definition of service {}>", update.service);
        let container = ContainerDefinition::builder()
            .name(&update.container)
            .image("<its current image>")
            .build();
        let definition = TaskDefinition::builder()
            .task_definition_arn(&arn)
            .container_definitions(container)
            .build();
        self.task_definitions.insert(
            arn.clone(),
            Described {
                task_definition: definition,
                tags: Vec::new(),
            },
        );
        self.services.insert(update.service.clone(), arn);
    }
}

fn forward_all_to(target_group: &str) -> Action {
    let stable = TargetGroupTuple::builder()
        .target_group_arn(target_group)
        .weight(100)
        .build();
    Action::builder()
        .r#type(ActionTypeEnum::Forward)
        .forward_config(ForwardActionConfig::builder().target_groups(stable).build())
        .build()
}

/// An ACTIVE service steady on `task_definition`.
fn steady_service(name: &str, task_definition: &str) -> Service {
    let deployment = Deployment::builder()
        .status("PRIMARY")
        .task_definition(task_definition)
        .rollout_state(DeploymentRolloutState::Completed)
        .desired_count(1)
        .running_count(1)
        .build();
    Service::builder()
        .service_name(name)
        .status("ACTIVE")
        .task_definition(task_definition)
        .desired_count(1)
        .running_count(1)
        .deployments(deployment)
        .build()
}

#[async_trait]
impl EcsApi for DryRunApi {
    fn region(&self) -> String {
        self.region.clone()
    }

    async fn resolve_credentials(&self) -> Result<(), EcsError> {
        self.exec.note(&format!(
            "resolve AWS credentials (the standard chain) for the region {}",
            self.region
        ));
        Ok(())
    }

    async fn describe_clusters(&self, cluster: &str) -> Result<Vec<Cluster>, EcsError> {
        self.report(Call::DescribeClusters { cluster });
        Ok(vec![
            Cluster::builder()
                .cluster_name(cluster)
                .status("ACTIVE")
                .build(),
        ])
    }

    async fn describe_services(
        &self,
        cluster: &str,
        service: &str,
    ) -> Result<Vec<Service>, EcsError> {
        self.report(Call::DescribeServices { cluster, service });
        let implied = self.implied();
        Ok(implied
            .services
            .get(service)
            .map(|td| steady_service(service, td))
            .into_iter()
            .collect())
    }

    async fn describe_task_definition(
        &self,
        task_definition: &str,
    ) -> Result<Option<Described>, EcsError> {
        self.report(Call::DescribeTaskDefinition { task_definition });
        Ok(self
            .implied()
            .task_definitions
            .get(task_definition)
            .cloned())
    }

    async fn register_task_definition(
        &self,
        revision: &NewRevision,
    ) -> Result<TaskDefinition, EcsError> {
        self.report(Call::RegisterTaskDefinition(revision));
        let mut registered = revision.definition.clone();
        registered.task_definition_arn = Some(REGISTERED.into());
        self.implied().task_definitions.insert(
            REGISTERED.into(),
            Described {
                task_definition: registered.clone(),
                tags: revision.tags.clone(),
            },
        );
        Ok(registered)
    }

    async fn update_service(
        &self,
        cluster: &str,
        service: &str,
        task_definition: &str,
    ) -> Result<(), EcsError> {
        self.report(Call::UpdateService {
            cluster,
            service,
            task_definition,
        });
        self.implied()
            .services
            .insert(service.into(), task_definition.into());
        Ok(())
    }

    async fn describe_target_groups(&self, arn: &str) -> Result<Vec<TargetGroup>, EcsError> {
        self.report(Call::DescribeTargetGroups { arn });
        Ok(vec![TargetGroup::builder().target_group_arn(arn).build()])
    }

    async fn describe_listeners(&self, arn: &str) -> Result<Vec<Listener>, EcsError> {
        self.report(Call::DescribeListeners { arn });
        let actions = self.implied().actions.get(arn).cloned();
        Ok(actions
            .map(|actions| {
                Listener::builder()
                    .listener_arn(arn)
                    .set_default_actions(Some(actions))
                    .build()
            })
            .into_iter()
            .collect())
    }

    async fn describe_rules(&self, arn: &str) -> Result<Vec<Rule>, EcsError> {
        self.report(Call::DescribeRules { arn });
        let actions = self.implied().actions.get(arn).cloned();
        Ok(actions
            .map(|actions| {
                Rule::builder()
                    .rule_arn(arn)
                    .set_actions(Some(actions))
                    .build()
            })
            .into_iter()
            .collect())
    }

    async fn modify_listener(&self, arn: &str, default_actions: &[Action]) -> Result<(), EcsError> {
        self.report_write(Call::ModifyListener {
            arn,
            actions: default_actions,
        });
        self.implied()
            .actions
            .insert(arn.into(), default_actions.to_vec());
        Ok(())
    }

    async fn modify_rule(&self, arn: &str, actions: &[Action]) -> Result<(), EcsError> {
        self.report_write(Call::ModifyRule { arn, actions });
        self.implied().actions.insert(arn.into(), actions.to_vec());
        Ok(())
    }
}
