//! The seam every AWS effect of the ECS backend goes through: one method per operation, on the
//! SDK's own types, so that the mode code cannot tell a real run from a dry run or a test.
//!
//! - `sdk::SdkApi` makes each call, with time limits, retries and errors in the plan's terms,
//!   and reports each call that changes something (through `Executor::call`) just before it.
//! - `dry_run::DryRunApi` makes none: it reports every call and answers reads from the state the
//!   plan implies.
//! - `fake::FakeAws` (tests only) is an in-memory ECS and ELBv2.
//!
//! How a call is reported (its service, operation and parameters) is decided here once, for all.

use async_trait::async_trait;
use aws_sdk_ecs::types::{Cluster, Service, Tag, TaskDefinition};
use aws_sdk_elasticloadbalancingv2::types::{Action, Listener, Rule, TargetGroup};
use serde_json::{Value, json};

use super::EcsError;
use crate::exec::Executor;

#[async_trait]
pub trait EcsApi: Send + Sync {
    /// The region calls go to, for messages: the resolved one, the plan's, or "of the
    /// environment" before anything was resolved.
    fn region(&self) -> String;

    /// Resolves the region and credentials (the standard chain), so that a problem with them
    /// is named as such before any call.
    async fn resolve_credentials(&self) -> Result<(), EcsError>;

    /// ECS answers a cluster it does not know with no cluster (and a failure), not an error.
    async fn describe_clusters(&self, cluster: &str) -> Result<Vec<Cluster>, EcsError>;

    /// Like clusters, a service ECS does not know is absent from the answer.
    async fn describe_services(
        &self,
        cluster: &str,
        service: &str,
    ) -> Result<Vec<Service>, EcsError>;

    /// The task definition with its tags.
    async fn describe_task_definition(
        &self,
        task_definition: &str,
    ) -> Result<Option<Described>, EcsError>;

    /// Registers `revision.definition`; the answer is the registered task definition.
    async fn register_task_definition(
        &self,
        revision: &NewRevision,
    ) -> Result<TaskDefinition, EcsError>;

    async fn update_service(
        &self,
        cluster: &str,
        service: &str,
        task_definition: &str,
    ) -> Result<(), EcsError>;

    async fn describe_target_groups(&self, arn: &str) -> Result<Vec<TargetGroup>, EcsError>;

    async fn describe_listeners(&self, arn: &str) -> Result<Vec<Listener>, EcsError>;

    async fn describe_rules(&self, arn: &str) -> Result<Vec<Rule>, EcsError>;

    /// Sends only `DefaultActions`: the listener's port, protocol and certificates stay.
    async fn modify_listener(&self, arn: &str, default_actions: &[Action]) -> Result<(), EcsError>;

    /// Sends only `Actions`: the rule keeps its conditions.
    async fn modify_rule(&self, arn: &str, actions: &[Action]) -> Result<(), EcsError>;
}

/// A task definition as DescribeTaskDefinition returns it, tags included.
#[derive(Debug, Clone, PartialEq)]
pub struct Described {
    pub task_definition: TaskDefinition,
    pub tags: Vec<Tag>,
}

/// A new revision of a task definition: `definition` is `copy_of` with `image` on `container`.
#[derive(Debug, Clone, PartialEq)]
pub struct NewRevision {
    pub copy_of: String,
    pub container: String,
    pub image: String,
    pub definition: TaskDefinition,
    pub tags: Vec<Tag>,
}

/// One call, as it is reported and named in errors.
#[derive(Debug, Clone, Copy)]
pub enum Call<'a> {
    DescribeClusters {
        cluster: &'a str,
    },
    DescribeServices {
        cluster: &'a str,
        service: &'a str,
    },
    DescribeTaskDefinition {
        task_definition: &'a str,
    },
    RegisterTaskDefinition(&'a NewRevision),
    UpdateService {
        cluster: &'a str,
        service: &'a str,
        task_definition: &'a str,
    },
    DescribeTargetGroups {
        arn: &'a str,
    },
    DescribeListeners {
        arn: &'a str,
    },
    DescribeRules {
        arn: &'a str,
    },
    ModifyListener {
        arn: &'a str,
        actions: &'a [Action],
    },
    ModifyRule {
        arn: &'a str,
        actions: &'a [Action],
    },
}

impl Call<'_> {
    /// The name messages give the API: "ecs" or "elbv2".
    pub fn service(&self) -> &'static str {
        match self {
            Call::DescribeClusters { .. }
            | Call::DescribeServices { .. }
            | Call::DescribeTaskDefinition { .. }
            | Call::RegisterTaskDefinition(_)
            | Call::UpdateService { .. } => "ecs",
            _ => "elbv2",
        }
    }

    pub fn operation(&self) -> &'static str {
        match self {
            Call::DescribeClusters { .. } => "DescribeClusters",
            Call::DescribeServices { .. } => "DescribeServices",
            Call::DescribeTaskDefinition { .. } => "DescribeTaskDefinition",
            Call::RegisterTaskDefinition(_) => "RegisterTaskDefinition",
            Call::UpdateService { .. } => "UpdateService",
            Call::DescribeTargetGroups { .. } => "DescribeTargetGroups",
            Call::DescribeListeners { .. } => "DescribeListeners",
            Call::DescribeRules { .. } => "DescribeRules",
            Call::ModifyListener { .. } => "ModifyListener",
            Call::ModifyRule { .. } => "ModifyRule",
        }
    }

    /// Whether the call changes something in AWS (a real run reports only these).
    pub fn changes_something(&self) -> bool {
        matches!(
            self,
            Call::RegisterTaskDefinition(_)
                | Call::UpdateService { .. }
                | Call::ModifyListener { .. }
                | Call::ModifyRule { .. }
        )
    }

    /// The parameters as the API spells them. A new revision is shown by what it is a copy of
    /// and what changes, not by its whole definition.
    pub fn params(&self) -> Value {
        match *self {
            Call::DescribeClusters { cluster } => json!({ "clusters": [cluster] }),
            Call::DescribeServices { cluster, service } => {
                json!({ "cluster": cluster, "services": [service] })
            }
            Call::DescribeTaskDefinition { task_definition } => {
                json!({ "taskDefinition": task_definition, "include": ["TAGS"] })
            }
            Call::RegisterTaskDefinition(revision) => {
                let mut params = json!({
                    "copyOf": revision.copy_of,
                    "container": revision.container,
                    "image": revision.image,
                });
                if let Some(family) = revision.definition.family() {
                    params["family"] = json!(family);
                }
                params
            }
            Call::UpdateService {
                cluster,
                service,
                task_definition,
            } => {
                json!({ "cluster": cluster, "service": service, "taskDefinition": task_definition })
            }
            Call::DescribeTargetGroups { arn } => json!({ "TargetGroupArns": [arn] }),
            Call::DescribeListeners { arn } => json!({ "ListenerArns": [arn] }),
            Call::DescribeRules { arn } => json!({ "RuleArns": [arn] }),
            Call::ModifyListener { arn, actions } => json!({
                "ListenerArn": arn,
                "DefaultActions": actions.iter().map(action_json).collect::<Vec<_>>(),
            }),
            Call::ModifyRule { arn, actions } => json!({
                "RuleArn": arn,
                "Actions": actions.iter().map(action_json).collect::<Vec<_>>(),
            }),
        }
    }

    pub fn report_to(&self, exec: &dyn Executor) {
        exec.call(self.service(), self.operation(), self.params());
    }
}

/// An action as the API spells it, for the log; settings other than forwarding are summarised.
pub fn action_json(action: &Action) -> Value {
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
    use aws_sdk_elasticloadbalancingv2::types::{
        ActionTypeEnum, FixedResponseActionConfig, ForwardActionConfig,
        TargetGroupStickinessConfig, TargetGroupTuple,
    };

    const STABLE: &str = "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/stable/1";

    #[test]
    fn actions_are_shown_as_the_api_spells_them() {
        let forward = Action::builder()
            .r#type(ActionTypeEnum::Forward)
            .order(2)
            .forward_config(
                ForwardActionConfig::builder()
                    .target_groups(
                        TargetGroupTuple::builder()
                            .target_group_arn(STABLE)
                            .weight(3)
                            .build(),
                    )
                    .target_group_stickiness_config(
                        TargetGroupStickinessConfig::builder()
                            .enabled(true)
                            .duration_seconds(300)
                            .build(),
                    )
                    .build(),
            )
            .build();
        assert_eq!(
            action_json(&forward),
            json!({
                "Type": "forward",
                "Order": 2,
                "ForwardConfig": {
                    "TargetGroups": [{"TargetGroupArn": STABLE, "Weight": 3}],
                    "TargetGroupStickinessConfig": {"Enabled": true, "DurationSeconds": 300},
                },
            })
        );
        let fixed = Action::builder()
            .r#type(ActionTypeEnum::FixedResponse)
            .order(1)
            .fixed_response_config(
                FixedResponseActionConfig::builder()
                    .status_code("403")
                    .build(),
            )
            .build();
        assert_eq!(
            action_json(&fixed),
            json!({"Type": "fixed-response", "Order": 1, "FixedResponseConfig": "(kept as read)"})
        );
    }

    #[test]
    fn only_calls_that_change_something_say_so() {
        let revision = NewRevision {
            copy_of: "web:1".into(),
            container: "app".into(),
            image: "web:2".into(),
            definition: TaskDefinition::builder().family("web").build(),
            tags: vec![],
        };
        let register = Call::RegisterTaskDefinition(&revision);
        assert!(register.changes_something());
        assert_eq!(
            register.params(),
            json!({"copyOf": "web:1", "family": "web", "container": "app", "image": "web:2"})
        );
        let read = Call::DescribeServices {
            cluster: "prod",
            service: "web",
        };
        assert!(!read.changes_something());
        assert_eq!(
            (read.service(), read.operation()),
            ("ecs", "DescribeServices")
        );
        let modify = Call::ModifyRule {
            arn: "rule",
            actions: &[],
        };
        assert!(modify.changes_something());
        assert_eq!(modify.service(), "elbv2");
    }
}
