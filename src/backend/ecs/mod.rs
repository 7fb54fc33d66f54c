//! `type = "ecs"`: Amazon ECS through the official AWS SDK, in two modes, each its own backend.
//!
//! `mode = "service"` (`ServiceBackend`) replaces one service's task definition: a new revision of
//! its current task definition with `image` on `container` (every other field carried over),
//! `UpdateService`, then a wait until the service's deployments say the new revision is steady.
//! Only 0% and 100% exist here: at 0% nothing changes, at 100% the service runs the new revision.
//!
//! `mode = "alb"` (`AlbBackend`) sets the stage's split on the target-group weights of one ALB
//! forward action (a listener's default action or a listener rule's), keeping everything else on
//! the action, and reads it back. Optionally the canary service first gets the new image, like
//! mode "service".
//!
//! What is confirmed: a weight is confirmed by reading the action back and finding exactly the
//! weights written; a deployment by the service's deployments (the PRIMARY one on the expected
//! task definition with `rolloutState` COMPLETED and as many running tasks as desired, and no
//! other deployment with tasks still running). A deployment the circuit breaker marks FAILED, or
//! one that is not steady within `deploy_timeout`, fails the stage.
//!
//! Every AWS effect goes through one seam, `EcsApi`, with one method per operation. A real run
//! uses the SDK's (`sdk`), which talks to AWS only from `preflight` on; a dry run uses the
//! recorder (`dry_run`), which reports each call instead and answers reads from the state the
//! plan implies; unit tests use an in-memory ECS and ELBv2 (`fake`). The mode code is the same
//! for all three, so a dry run makes the very calls a real run would, in the same order.

mod alb;
mod api;
mod deploy;
mod dry_run;
#[cfg(test)]
mod fake;
mod forward;
mod sdk;
mod service;

use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;

pub use alb::AlbBackend;
pub use forward::alb_weights;
pub use service::ServiceBackend;

use super::{Backend, BackendError, Executor};
use crate::plan::{EcsAws, EcsBackend, EcsMode};
use api::EcsApi;

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
    /// The engine changes traffic only after a successful preflight; a backend asked to act
    /// before one refuses rather than act on resources it has not checked.
    #[error("the ECS backend was asked to {0} before its preflight check")]
    NotChecked(&'static str),
}

impl EcsError {
    /// Whether AWS answered with the error code `expected`.
    fn is_api_code(&self, expected: &str) -> bool {
        matches!(self, EcsError::Api { code: Some(code), .. } if code == expected)
    }
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

fn unreadable_state(e: serde_json::Error) -> BackendError {
    EcsError::Unusable(format!(
        "the journal's record of the ECS state before the run cannot be read ({e})"
    ))
    .into()
}

/// What both modes act through: the API (real, dry-run or fake), the executor that is told
/// what the backend checks and waits for by itself, and the plan's shared settings.
#[derive(Clone)]
pub(crate) struct Context {
    api: Arc<dyn EcsApi>,
    exec: Arc<dyn Executor>,
    cluster: String,
    deploy_timeout: Duration,
    limits: Limits,
}

impl Context {
    fn new(aws: &EcsAws, api: Arc<dyn EcsApi>, exec: Arc<dyn Executor>, limits: Limits) -> Self {
        Context {
            api,
            exec,
            cluster: aws.cluster.clone(),
            deploy_timeout: aws.deploy_timeout,
            limits,
        }
    }

    fn missing(&self, what: String) -> EcsError {
        EcsError::Missing {
            what,
            region: self.api.region(),
        }
    }

    /// Credentials resolve and the cluster is ACTIVE: what every preflight starts with.
    async fn check_account_and_cluster(&self) -> Result<(), EcsError> {
        self.api.resolve_credentials().await?;
        let cluster = &self.cluster;
        let clusters = self.api.describe_clusters(cluster).await?;
        let found = clusters.iter().find(|c| {
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
}

/// The backend of the plan's mode. A dry run gets the recorder as its API, a real run the SDK's:
/// the one place where the two differ.
pub fn build(spec: EcsBackend, exec: Arc<dyn Executor>) -> Box<dyn Backend> {
    let api: Arc<dyn EcsApi> = if exec.is_dry_run() {
        Arc::new(dry_run::DryRunApi::new(&spec, exec.clone()))
    } else {
        Arc::new(sdk::SdkApi::new(&spec.aws, Limits::STANDARD, exec.clone()))
    };
    build_on(spec, api, exec)
}

fn build_on(spec: EcsBackend, api: Arc<dyn EcsApi>, exec: Arc<dyn Executor>) -> Box<dyn Backend> {
    let context = Context::new(&spec.aws, api, exec, Limits::STANDARD);
    match spec.mode {
        EcsMode::Service(service) => Box::new(ServiceBackend::new(context, service)),
        EcsMode::Alb(alb) => Box::new(AlbBackend::new(context, alb)),
    }
}

#[cfg(test)]
mod tests;
