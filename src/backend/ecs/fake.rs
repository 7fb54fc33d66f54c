//! An in-memory ECS and ELBv2 for the backend's unit tests, behind the same seam as the SDK.
//!
//! It answers as the services do where the backend can tell: a cluster or service it does not
//! know is absent from DescribeClusters and DescribeServices (not an error), UpdateService on a
//! missing service is ServiceNotFoundException, a missing target group, listener or rule is
//! TargetGroupNotFound, ListenerNotFound or RuleNotFound, revisions are numbered per family and
//! named by full ARN, UpdateService to a new task definition starts a PRIMARY deployment
//! IN_PROGRESS (the previous one becoming ACTIVE), and a forward action ALB would refuse is a
//! ValidationError.
//!
//! Where it differs from AWS: one account and region, no IAM, quotas, throttling or eventual
//! consistency (a test injects an error with `World::failures` instead); services have no tasks,
//! only the counts on their deployments; a deployment moves only when its service is described
//! (each DescribeServices is one look), and ends as `World::scripts` says for its image; ALB
//! stores actions exactly as written, where the real one also fills in defaults (a weight of 1,
//! a `TargetGroupArn` beside a one-group `ForwardConfig`); listener rule conditions, ports and
//! certificates are not modelled, as the backend never sends them.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use aws_sdk_ecs::types::{
    Cluster, Compatibility, ContainerDefinition, CpuArchitecture, Deployment, DeploymentController,
    DeploymentControllerType, DeploymentRolloutState, EphemeralStorage, IpcMode, NetworkMode,
    PidMode, RuntimePlatform, Service, Tag, TaskDefinition, Volume,
};
use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, AuthenticateOidcActionConfig, ForwardActionConfig, Listener, Rule,
    TargetGroup, TargetGroupStickinessConfig, TargetGroupTuple,
};
use serde_json::Value;

use super::api::{Call, Described, EcsApi, NewRevision};
use super::deploy::same_td;
use super::{Context, EcsError, Limits};
use crate::exec::{Action as ExecAction, DryRunExecutor, Executor, RealExecutor, Report};
use crate::plan::EcsAws;

pub const REGION: &str = "us-east-1";
pub const CLUSTER: &str = "prod";
pub const TD1: &str = "arn:aws:ecs:us-east-1:123456789012:task-definition/web:1";
pub const TD2: &str = "arn:aws:ecs:us-east-1:123456789012:task-definition/web:2";
pub const CANARY_TD1: &str = "arn:aws:ecs:us-east-1:123456789012:task-definition/web-canary:1";
pub const CANARY_TD2: &str = "arn:aws:ecs:us-east-1:123456789012:task-definition/web-canary:2";
pub const STABLE: &str = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/stable/1";
pub const CANARY: &str = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/canary/2";
pub const OTHER: &str = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/other/3";
pub const LISTENER: &str =
    "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/web/1/2";
pub const RULE: &str =
    "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener-rule/app/web/1/2/3";
pub const FOREIGN_RULE: &str =
    "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener-rule/app/web/1/2/4";
pub const NEW_IMAGE: &str = "web:2";

/// How a deployment of a task definition holding a given image ends.
#[derive(Debug, Clone, PartialEq)]
pub enum Script {
    /// COMPLETED at this look, every desired task running, older deployments drained.
    CompletesAfter(u32),
    /// The circuit breaker marks it FAILED at its first look, with this reason.
    FailsWith(String),
    /// IN_PROGRESS forever, its tasks failing their health checks.
    Stuck,
    /// At its first look someone else deploys this task definition over it.
    ReplacedBy(String),
}

const DEFAULT_SCRIPT: Script = Script::CompletesAfter(2);

#[derive(Debug, Clone)]
pub struct FakeService {
    pub status: String,
    pub controller: DeploymentControllerType,
    pub task_definition: String,
    pub desired: i32,
    pub deployments: Vec<FakeDeployment>,
}

#[derive(Debug, Clone)]
pub struct FakeDeployment {
    pub status: &'static str,
    pub task_definition: String,
    pub rollout_state: DeploymentRolloutState,
    pub reason: String,
    pub running: i32,
    pub pending: i32,
    pub failed: i32,
    looks: u32,
}

impl FakeDeployment {
    fn steady(task_definition: &str, desired: i32) -> Self {
        FakeDeployment {
            status: "PRIMARY",
            task_definition: task_definition.into(),
            rollout_state: DeploymentRolloutState::Completed,
            reason: "ECS deployment completed.".into(),
            running: desired,
            pending: 0,
            failed: 0,
            looks: 0,
        }
    }
}

/// Everything the fake holds; tests set it up and look at it through `FakeAws::world`.
#[derive(Debug, Default)]
pub struct World {
    /// Cluster name to status.
    pub clusters: BTreeMap<String, String>,
    /// Services of cluster `CLUSTER`, by name.
    pub services: BTreeMap<String, FakeService>,
    /// In registration order.
    pub task_definitions: Vec<Described>,
    pub target_groups: BTreeSet<String>,
    pub listeners: BTreeMap<String, Vec<Action>>,
    pub rules: BTreeMap<String, Vec<Action>>,
    /// By image; a deployment of any other image completes at its second look.
    pub scripts: BTreeMap<String, Script>,
    /// Every call made, in order: its operation and parameters as they are reported.
    pub calls: Vec<(&'static str, Value)>,
    /// The next call of an operation fails with this error code and message.
    pub failures: BTreeMap<&'static str, (String, String)>,
    /// Credentials do not resolve, for this reason.
    pub no_credentials: Option<String>,
    /// Writes to listeners and rules are accepted and lost (another writer wins).
    pub lose_action_writes: bool,
}

impl World {
    /// Cluster `prod`; service `web` steady on `web:1` (the rich task definition below, tagged)
    /// with 2 tasks, `web-canary` steady on `web-canary:1` with 1; target groups stable,
    /// canary and other; a listener forwarding everything to stable in the single-group form; a
    /// rule with an authentication action before a sticky forward action (stable 100, canary
    /// 0); a rule forwarding half its traffic to the third target group.
    pub fn standard() -> World {
        let mut world = World::default();
        world.clusters.insert(CLUSTER.into(), "ACTIVE".into());
        world.task_definitions.push(Described {
            task_definition: task_definition(),
            tags: vec![Tag::builder().key("team").value("payments").build()],
        });
        world.task_definitions.push(Described {
            task_definition: TaskDefinition::builder()
                .task_definition_arn(CANARY_TD1)
                .family("web-canary")
                .revision(1)
                .container_definitions(container("app", "web:1"))
                .build(),
            tags: vec![],
        });
        world.services.insert("web".into(), steady_service(TD1, 2));
        world
            .services
            .insert("web-canary".into(), steady_service(CANARY_TD1, 1));
        world.target_groups = [STABLE, CANARY, OTHER].map(String::from).into();
        world.listeners.insert(
            LISTENER.into(),
            vec![
                Action::builder()
                    .r#type(ActionTypeEnum::Forward)
                    .target_group_arn(STABLE)
                    .build(),
            ],
        );
        world.rules.insert(
            RULE.into(),
            vec![
                authenticate(1),
                forward(2, &[(STABLE, 100), (CANARY, 0)], true),
            ],
        );
        world.rules.insert(
            FOREIGN_RULE.into(),
            vec![forward(1, &[(STABLE, 50), (OTHER, 50)], false)],
        );
        world
    }

    /// The operations called that change something, in order.
    pub fn changes(&self) -> Vec<&'static str> {
        self.calls
            .iter()
            .map(|(operation, _)| *operation)
            .filter(|op| !op.starts_with("Describe"))
            .collect()
    }

    /// Whether `service` runs `task_definition` (a full ARN) with one deployment, COMPLETED,
    /// every desired task running.
    pub fn steady_on(&self, service: &str, task_definition: &str) -> bool {
        let service = &self.services[service];
        let [only] = service.deployments.as_slice() else {
            return false;
        };
        service.task_definition == task_definition
            && only.status == "PRIMARY"
            && only.task_definition == task_definition
            && only.rollout_state == DeploymentRolloutState::Completed
            && only.running == service.desired
    }

    /// The task definition registered under this full ARN.
    pub fn registered(&self, arn: &str) -> &Described {
        self.task_definitions
            .iter()
            .find(|d| d.task_definition.task_definition_arn() == Some(arn))
            .unwrap_or_else(|| panic!("{arn} is not registered"))
    }

    fn task_definition(&self, name: &str) -> Option<&Described> {
        if name.contains(':') {
            return self.task_definitions.iter().find(|d| {
                let arn = d.task_definition.task_definition_arn().unwrap_or_default();
                same_td(arn, name)
            });
        }
        // A family alone names its latest revision.
        self.task_definitions
            .iter()
            .rfind(|d| d.task_definition.family() == Some(name))
    }

    fn script_for(&self, task_definition: &str) -> Script {
        let images: Vec<&str> = self
            .task_definition(task_definition)
            .map(|d| d.task_definition.container_definitions())
            .unwrap_or_default()
            .iter()
            .filter_map(|c| c.image())
            .collect();
        images
            .iter()
            .find_map(|image| self.scripts.get(*image).cloned())
            .unwrap_or(DEFAULT_SCRIPT)
    }

    /// One look at a service: its PRIMARY deployment in progress moves as its script says.
    fn look_at(&mut self, name: &str) {
        let Some(service) = self.services.get(name) else {
            return;
        };
        let Some(index) = service.deployments.iter().position(|d| {
            d.status == "PRIMARY" && d.rollout_state == DeploymentRolloutState::InProgress
        }) else {
            return;
        };
        let script = self.script_for(&service.deployments[index].task_definition);
        let service = self.services.get_mut(name).expect("looked up above");
        let deployment = &mut service.deployments[index];
        deployment.looks += 1;
        match script {
            Script::CompletesAfter(looks) if deployment.looks >= looks => {
                deployment.rollout_state = DeploymentRolloutState::Completed;
                deployment.reason = "ECS deployment completed.".into();
                deployment.running = service.desired;
                deployment.pending = 0;
                let done = deployment.clone();
                service.deployments = vec![done];
            }
            Script::CompletesAfter(_) => {
                deployment.running = (deployment.running + 1).min(service.desired - 1);
                deployment.pending = service.desired - deployment.running;
            }
            Script::FailsWith(reason) => {
                deployment.rollout_state = DeploymentRolloutState::Failed;
                deployment.reason = reason;
                deployment.failed = service.desired;
                deployment.running = 0;
                deployment.pending = 0;
            }
            Script::Stuck => deployment.failed += 1,
            Script::ReplacedBy(other) => start_deployment(service, &other),
        }
    }

    fn describe_service(&self, name: &str) -> Option<Service> {
        let service = self.services.get(name)?;
        let deployments = service.deployments.iter().map(|d| {
            Deployment::builder()
                .status(d.status)
                .task_definition(&d.task_definition)
                .rollout_state(d.rollout_state.clone())
                .rollout_state_reason(&d.reason)
                .desired_count(service.desired)
                .running_count(d.running)
                .pending_count(d.pending)
                .failed_tasks(d.failed)
                .build()
        });
        let controller = DeploymentController::builder()
            .r#type(service.controller.clone())
            .build()
            .expect("the type is set");
        Some(
            Service::builder()
                .service_name(name)
                .status(&service.status)
                .task_definition(&service.task_definition)
                .desired_count(service.desired)
                .deployment_controller(controller)
                .set_deployments(Some(deployments.collect()))
                .build(),
        )
    }

    fn register(
        &mut self,
        revision: &NewRevision,
    ) -> Result<TaskDefinition, (&'static str, String)> {
        let definition = &revision.definition;
        let Some(family) = definition.family().map(str::to_string) else {
            return Err(("ClientException", "Family must be provided.".into()));
        };
        if definition.container_definitions().is_empty() {
            return Err((
                "ClientException",
                "Container definitions must be provided.".into(),
            ));
        }
        let number = 1 + self
            .task_definitions
            .iter()
            .filter(|d| d.task_definition.family() == Some(family.as_str()))
            .map(|d| d.task_definition.revision())
            .max()
            .unwrap_or(0);
        let mut registered = definition.clone();
        registered.task_definition_arn = Some(format!(
            "arn:aws:ecs:{REGION}:123456789012:task-definition/{family}:{number}"
        ));
        registered.revision = number;
        registered.status = Some(aws_sdk_ecs::types::TaskDefinitionStatus::Active);
        self.task_definitions.push(Described {
            task_definition: registered.clone(),
            tags: revision.tags.clone(),
        });
        Ok(registered)
    }

    fn update_service(
        &mut self,
        cluster: &str,
        name: &str,
        task_definition: &str,
    ) -> Result<(), (&'static str, String)> {
        if !self.clusters.contains_key(cluster) {
            return Err(("ClusterNotFoundException", "Cluster not found.".into()));
        }
        let Some(arn) = self
            .task_definition(task_definition)
            .and_then(|d| d.task_definition.task_definition_arn())
            .map(str::to_string)
        else {
            return Err(("ClientException", "TaskDefinition not found.".into()));
        };
        let Some(service) = self.services.get_mut(name) else {
            return Err(("ServiceNotFoundException", "Service not found.".into()));
        };
        if service.status != "ACTIVE" {
            return Err((
                "ServiceNotActiveException",
                "Service was not ACTIVE.".into(),
            ));
        }
        // Without other changes, ECS starts no deployment for the task definition it runs.
        if service.task_definition != arn {
            start_deployment(service, &arn);
        }
        Ok(())
    }

    /// What ALB refuses: a `TargetGroupArn` beside a forward config of several groups, a weight
    /// outside 0..=999, a target group it does not know.
    fn check_actions(&self, actions: &[Action]) -> Result<(), (&'static str, String)> {
        for action in actions {
            let groups = action
                .forward_config()
                .map(|f| f.target_groups())
                .unwrap_or_default();
            if action.target_group_arn().is_some() && groups.len() > 1 {
                return Err((
                    "ValidationError",
                    "A forward action cannot name a TargetGroupArn beside several target groups"
                        .into(),
                ));
            }
            for group in groups {
                if !(0..=999).contains(&group.weight().unwrap_or(1)) {
                    return Err(("ValidationError", "Weights must be 0 to 999".into()));
                }
            }
            let arns = groups
                .iter()
                .filter_map(|g| g.target_group_arn())
                .chain(action.target_group_arn());
            for arn in arns {
                if !self.target_groups.contains(arn) {
                    return Err((
                        "TargetGroupNotFound",
                        format!("Target group '{arn}' not found"),
                    ));
                }
            }
        }
        Ok(())
    }
}

fn start_deployment(service: &mut FakeService, task_definition: &str) {
    for d in &mut service.deployments {
        if d.status == "PRIMARY" {
            d.status = "ACTIVE";
        }
    }
    service.deployments.insert(
        0,
        FakeDeployment {
            status: "PRIMARY",
            task_definition: task_definition.into(),
            rollout_state: DeploymentRolloutState::InProgress,
            reason: "ECS deployment in progress.".into(),
            running: 0,
            pending: service.desired,
            failed: 0,
            looks: 0,
        },
    );
    service.task_definition = task_definition.into();
}

fn steady_service(task_definition: &str, desired: i32) -> FakeService {
    FakeService {
        status: "ACTIVE".into(),
        controller: DeploymentControllerType::Ecs,
        task_definition: task_definition.into(),
        desired,
        deployments: vec![FakeDeployment::steady(task_definition, desired)],
    }
}

fn container(name: &str, image: &str) -> ContainerDefinition {
    ContainerDefinition::builder()
        .name(name)
        .image(image)
        .memory(512)
        .build()
}

/// `web:1`: a task definition with most registrable fields set, so that a lost one shows.
pub fn task_definition() -> TaskDefinition {
    TaskDefinition::builder()
        .task_definition_arn(TD1)
        .family("web")
        .revision(1)
        .task_role_arn("arn:aws:iam::123456789012:role/web")
        .execution_role_arn("arn:aws:iam::123456789012:role/exec")
        .network_mode(NetworkMode::Awsvpc)
        .container_definitions(container("app", "web:1"))
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

pub fn forward(order: i32, groups: &[(&str, i32)], sticky: bool) -> Action {
    let tuples = groups.iter().map(|(arn, weight)| {
        TargetGroupTuple::builder()
            .target_group_arn(*arn)
            .weight(*weight)
            .build()
    });
    let mut config = ForwardActionConfig::builder().set_target_groups(Some(tuples.collect()));
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
        .order(order)
        .forward_config(config.build())
        .build()
}

fn authenticate(order: i32) -> Action {
    Action::builder()
        .r#type(ActionTypeEnum::AuthenticateOidc)
        .order(order)
        .authenticate_oidc_config(
            AuthenticateOidcActionConfig::builder()
                .issuer("https://idp.example")
                .client_id("rollout-tests")
                .build(),
        )
        .build()
}

pub struct FakeAws {
    world: Mutex<World>,
}

impl FakeAws {
    pub fn new(world: World) -> Arc<FakeAws> {
        Arc::new(FakeAws {
            world: Mutex::new(world),
        })
    }

    pub fn world(&self) -> MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records the call, then fails it if a test asked for that.
    fn call(&self, call: Call<'_>) -> Result<MutexGuard<'_, World>, EcsError> {
        let mut world = self.world();
        world.calls.push((call.operation(), call.params()));
        match world.failures.remove(call.operation()) {
            Some((code, message)) => Err(api_error(&call, code, message)),
            None => Ok(world),
        }
    }
}

fn api_error(call: &Call<'_>, code: impl Into<String>, message: String) -> EcsError {
    let code = code.into();
    EcsError::Api {
        service: call.service(),
        operation: call.operation(),
        message: format!("{code}: {message}"),
        code: Some(code),
    }
}

#[async_trait]
impl EcsApi for FakeAws {
    fn region(&self) -> String {
        REGION.into()
    }

    async fn resolve_credentials(&self) -> Result<(), EcsError> {
        match self.world().no_credentials.clone() {
            Some(why) => Err(EcsError::NoCredentials(why)),
            None => Ok(()),
        }
    }

    async fn describe_clusters(&self, cluster: &str) -> Result<Vec<Cluster>, EcsError> {
        let world = self.call(Call::DescribeClusters { cluster })?;
        Ok(world
            .clusters
            .get(cluster)
            .map(|status| {
                Cluster::builder()
                    .cluster_name(cluster)
                    .status(status)
                    .build()
            })
            .into_iter()
            .collect())
    }

    async fn describe_services(
        &self,
        cluster: &str,
        service: &str,
    ) -> Result<Vec<Service>, EcsError> {
        let call = Call::DescribeServices { cluster, service };
        let mut world = self.call(call)?;
        if !world.clusters.contains_key(cluster) {
            return Err(api_error(
                &call,
                "ClusterNotFoundException",
                "Cluster not found.".into(),
            ));
        }
        world.look_at(service);
        Ok(world.describe_service(service).into_iter().collect())
    }

    async fn describe_task_definition(
        &self,
        task_definition: &str,
    ) -> Result<Option<Described>, EcsError> {
        let call = Call::DescribeTaskDefinition { task_definition };
        let world = self.call(call)?;
        match world.task_definition(task_definition) {
            Some(found) => Ok(Some(found.clone())),
            None => Err(api_error(
                &call,
                "ClientException",
                "Unable to describe task definition.".into(),
            )),
        }
    }

    async fn register_task_definition(
        &self,
        revision: &NewRevision,
    ) -> Result<TaskDefinition, EcsError> {
        let call = Call::RegisterTaskDefinition(revision);
        let mut world = self.call(call)?;
        world
            .register(revision)
            .map_err(|(code, message)| api_error(&call, code, message))
    }

    async fn update_service(
        &self,
        cluster: &str,
        service: &str,
        task_definition: &str,
    ) -> Result<(), EcsError> {
        let call = Call::UpdateService {
            cluster,
            service,
            task_definition,
        };
        let mut world = self.call(call)?;
        world
            .update_service(cluster, service, task_definition)
            .map_err(|(code, message)| api_error(&call, code, message))
    }

    async fn describe_target_groups(&self, arn: &str) -> Result<Vec<TargetGroup>, EcsError> {
        let call = Call::DescribeTargetGroups { arn };
        let world = self.call(call)?;
        if !world.target_groups.contains(arn) {
            return Err(api_error(
                &call,
                "TargetGroupNotFound",
                "One or more target groups not found".into(),
            ));
        }
        Ok(vec![TargetGroup::builder().target_group_arn(arn).build()])
    }

    async fn describe_listeners(&self, arn: &str) -> Result<Vec<Listener>, EcsError> {
        let call = Call::DescribeListeners { arn };
        let world = self.call(call)?;
        let Some(actions) = world.listeners.get(arn) else {
            return Err(api_error(
                &call,
                "ListenerNotFound",
                "One or more listeners not found".into(),
            ));
        };
        Ok(vec![
            Listener::builder()
                .listener_arn(arn)
                .set_default_actions(Some(actions.clone()))
                .build(),
        ])
    }

    async fn describe_rules(&self, arn: &str) -> Result<Vec<Rule>, EcsError> {
        let call = Call::DescribeRules { arn };
        let world = self.call(call)?;
        let Some(actions) = world.rules.get(arn) else {
            return Err(api_error(
                &call,
                "RuleNotFound",
                "One or more rules not found".into(),
            ));
        };
        Ok(vec![
            Rule::builder()
                .rule_arn(arn)
                .set_actions(Some(actions.clone()))
                .build(),
        ])
    }

    async fn modify_listener(&self, arn: &str, default_actions: &[Action]) -> Result<(), EcsError> {
        let call = Call::ModifyListener {
            arn,
            actions: default_actions,
        };
        let mut world = self.call(call)?;
        if !world.listeners.contains_key(arn) {
            let message = "One or more listeners not found".into();
            return Err(api_error(&call, "ListenerNotFound", message));
        }
        world
            .check_actions(default_actions)
            .map_err(|(code, message)| api_error(&call, code, message))?;
        if !world.lose_action_writes {
            world.listeners.insert(arn.into(), default_actions.to_vec());
        }
        Ok(())
    }

    async fn modify_rule(&self, arn: &str, actions: &[Action]) -> Result<(), EcsError> {
        let call = Call::ModifyRule { arn, actions };
        let mut world = self.call(call)?;
        if !world.rules.contains_key(arn) {
            let message = "One or more rules not found".into();
            return Err(api_error(&call, "RuleNotFound", message));
        }
        world
            .check_actions(actions)
            .map_err(|(code, message)| api_error(&call, code, message))?;
        if !world.lose_action_writes {
            world.rules.insert(arn.into(), actions.to_vec());
        }
        Ok(())
    }
}

// ---- What the backends' tests share ----

/// An executor that keeps what it is told: real (notes are dropped, as in a real run) or dry.
pub fn executor(dry_run: bool) -> (Arc<dyn Executor>, Arc<Mutex<Vec<ExecAction>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let kept = seen.clone();
    let observer: crate::exec::Observer = Arc::new(move |report| {
        if let Report::Action { action, .. } = report {
            kept.lock().unwrap().push(action);
        }
    });
    let exec: Arc<dyn Executor> = if dry_run {
        Arc::new(DryRunExecutor { observer })
    } else {
        Arc::new(RealExecutor {
            observer,
            redactor: Default::default(),
        })
    };
    (exec, seen)
}

pub fn aws() -> EcsAws {
    EcsAws {
        cluster: CLUSTER.into(),
        region: Some(REGION.into()),
        endpoint_url: None,
        deploy_timeout: std::time::Duration::from_secs(60),
    }
}

pub fn context(api: Arc<dyn EcsApi>, exec: Arc<dyn Executor>) -> Context {
    Context::new(&aws(), api, exec, Limits::STANDARD)
}
