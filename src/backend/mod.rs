//! Traffic backends: the things that move traffic between the stable and the new version.
//!
//! Every backend implements `Backend`; adding one is a new file and one arm in `build`.
//! Backends act only through an `Executor`, which is what makes `--dry-run` exact. The ECS
//! backend makes its AWS calls through a seam of its own, which the executor's kind picks: the
//! SDK's for a real run, a recorder that reports each call for a dry run.

pub mod command;
pub mod ecs;
pub mod flagd;
pub mod kubectl;
pub mod nginx;
pub mod unleash;

use std::sync::Arc;

use async_trait::async_trait;
use thiserror::Error;

pub use crate::exec::{Cmd, ExecError, Executor, Output};

use crate::plan::{Plan, SegmentSet, Weight};

/// What `rollout rollback` knows when no journal says what the run changed: the plan, and what
/// the person adds on the command line.
#[derive(Debug, Clone, Default)]
pub struct Recovery {
    /// ECS: the task definition to return the service to (`--task-definition`).
    pub task_definition: Option<String>,
}

/// A move from one stage's weight to the next.
#[derive(Debug, Clone, Copy)]
pub struct WeightChange {
    pub stage: usize,
    pub weight: Weight,
    pub previous: Weight,
    /// The segments that get the new version whatever the weight: the stage's own and every
    /// earlier stage's (indexes into the plan's segments, which backends get at construction).
    pub segments: SegmentSet,
    /// The share of requests also copied to the new version in this stage; `None`: none.
    pub mirror: Option<Weight>,
}

impl WeightChange {
    /// Before the first stage: nothing on the new version.
    pub const BEFORE_START: WeightChange = WeightChange {
        stage: 0,
        weight: Weight::ZERO,
        previous: Weight::ZERO,
        segments: SegmentSet::EMPTY,
        mirror: None,
    };

    /// Back to stable from here, within the same stage: no weight, no segments, no mirror.
    pub fn to_stable(self) -> WeightChange {
        WeightChange {
            stage: self.stage,
            weight: Weight::ZERO,
            previous: self.weight,
            segments: SegmentSet::EMPTY,
            mirror: None,
        }
    }

    /// Whether the new version gets nobody, not even copies.
    pub fn is_stable(self) -> bool {
        self.weight.is_zero() && self.segments.is_empty() && self.mirror.is_none()
    }
}

/// A backend's own commands (nginx's test and reload, the command backend's set_weight, ...):
/// run through the executor with the rollout's context in their environment and the backend's
/// time limit.
pub struct OwnCommands {
    pub name: String,
    pub exec: Arc<dyn Executor>,
    timeout: std::time::Duration,
}

impl OwnCommands {
    pub fn new(plan: &Plan, timeout: std::time::Duration, exec: Arc<dyn Executor>) -> Self {
        OwnCommands {
            name: plan.name.to_string(),
            exec,
            timeout,
        }
    }

    pub fn cmd(&self, argv: &crate::plan::Argv, change: WeightChange, purpose: &str) -> Cmd {
        Cmd {
            argv: argv.as_slice().to_vec(),
            env: context_env(&self.name, change),
            timeout: self.timeout,
            purpose: purpose.to_string(),
            stdout_keep: crate::exec::KEEP,
        }
    }

    /// Runs the command and turns a non-zero exit into an error.
    pub async fn run_checked(
        &self,
        argv: &crate::plan::Argv,
        change: WeightChange,
        purpose: &str,
    ) -> Result<Output, BackendError> {
        run_checked(self.exec.as_ref(), &self.cmd(argv, change, purpose)).await
    }

    /// Like `run_checked`, for a command whose stdout is a document read whole (nginx's
    /// configuration dump): up to `exec::KEEP_DOCUMENT` of it is kept.
    pub async fn read_document(
        &self,
        argv: &crate::plan::Argv,
        change: WeightChange,
        purpose: &str,
    ) -> Result<Output, BackendError> {
        let cmd = Cmd {
            stdout_keep: crate::exec::KEEP_DOCUMENT,
            ..self.cmd(argv, change, purpose)
        };
        run_checked(self.exec.as_ref(), &cmd).await
    }
}

#[derive(Debug, Error)]
pub enum BackendError {
    #[error(transparent)]
    Exec(#[from] ExecError),
    /// A command ran and said no.
    #[error("{purpose} failed ({status}): `{command}`{}", fmt_tail(.output))]
    CommandFailed {
        purpose: String,
        command: String,
        status: String,
        output: String,
    },
    /// The change was made but could not be confirmed to have taken effect.
    #[error("the change could not be confirmed: {0}")]
    NotConfirmed(String),
    /// The new version itself failed to become ready (a Deployment past its progress deadline,
    /// an ECS deployment failed by its circuit breaker): the release failed its stage.
    #[error("{0}")]
    NewVersionFailed(String),
    /// What the backend needs before it may change anything is not there (a missing object,
    /// a forbidden verb, an unreachable cluster): nothing was changed because of it.
    #[error("{0}")]
    Precondition(String),
    /// A command succeeded but printed something the backend cannot read.
    #[error("{purpose}: {problem}")]
    UnexpectedOutput { purpose: String, problem: String },
    #[error("the {0} backend is not available in this build yet")]
    Unsupported(&'static str),
    /// An API the backend drives (Unleash) failed to answer, or answered with an error.
    #[error("{0}")]
    Api(String),
    /// The backend cannot be set up from the plan and the environment (a `${VAR}` that is not
    /// set): nothing was touched.
    #[error("{0}")]
    Setup(String),
    /// An AWS call, resource, credential or deployment problem of the ECS backend.
    #[error(transparent)]
    Ecs(#[from] ecs::EcsError),
}

fn fmt_tail(output: &str) -> String {
    if output.is_empty() {
        String::new()
    } else {
        format!(": {output}")
    }
}

impl BackendError {
    pub fn failed(cmd: &Cmd, output: &Output) -> Self {
        BackendError::CommandFailed {
            purpose: cmd.purpose.clone(),
            command: crate::plan::Argv::new(cmd.argv.clone())
                .map_or_else(String::new, |a| a.to_string()),
            status: output.status_text(),
            output: output.tail(),
        }
    }
}

#[async_trait]
pub trait Backend: Send + Sync {
    /// One line for people: what this backend drives.
    fn describe(&self) -> String;

    /// Checks that everything the run needs is there, before anything is changed.
    async fn preflight(&mut self) -> Result<(), BackendError>;

    /// Sends `change.weight` percent of traffic to the new version and confirms it took effect.
    /// Must be idempotent: a resumed run may apply the same weight again.
    async fn set_weight(&mut self, change: WeightChange) -> Result<(), BackendError>;

    /// Makes the new version the stable one, once all traffic is on it.
    async fn promote(&mut self) -> Result<(), BackendError>;

    /// Returns all traffic to the stable version and undoes what the run changed.
    async fn rollback(&mut self) -> Result<(), BackendError>;

    /// What the backend learned before changing anything that a later process needs to undo
    /// the run (the stable replica count, the previous task definition, ...). The engine
    /// journals it after preflight. `None` for backends that need nothing.
    fn saved_state(&self) -> Option<serde_json::Value> {
        None
    }

    /// Prepares a rollback that no journal describes (the run happened on another machine, or
    /// its journal is damaged): works out the stable state from the plan and from what the
    /// backend reports now, changing nothing. `Err` when the stable state cannot be known; it
    /// says what is needed. The notes say what the rollback will leave as it is.
    async fn recover(&mut self, _recovery: &Recovery) -> Result<Vec<String>, BackendError> {
        Ok(Vec::new())
    }

    /// Hands back `saved_state` from the journal to a new process (`rollout resume`,
    /// `rollout rollback`), before `preflight`; a backend given its state must not capture
    /// it again from what is now a changed system.
    fn restore_state(&mut self, _state: serde_json::Value) -> Result<(), BackendError> {
        Ok(())
    }
}

/// Runs a command through the executor and turns a non-zero exit into an error.
pub async fn run_checked(exec: &dyn Executor, cmd: &Cmd) -> Result<Output, BackendError> {
    let output = exec.run(cmd).await?;
    if output.success() {
        Ok(output)
    } else {
        Err(BackendError::failed(cmd, &output))
    }
}

pub fn build(plan: &Plan, exec: Arc<dyn Executor>) -> Result<Box<dyn Backend>, BackendError> {
    match &plan.backend {
        crate::plan::Backend::Nginx(spec) => {
            Ok(Box::new(nginx::Nginx::new(plan, spec.clone(), exec)))
        }
        crate::plan::Backend::Command(spec) => Ok(Box::new(command::CommandBackend::new(
            plan,
            spec.clone(),
            exec,
        ))),
        crate::plan::Backend::Kubectl(spec) => Ok(kubectl::build(plan, spec, exec)),
        crate::plan::Backend::Ecs(spec) => Ok(ecs::build(spec.clone(), exec)),
        crate::plan::Backend::Flagd(spec) => {
            Ok(Box::new(flagd::Flagd::new(plan, spec.clone(), exec)))
        }
        crate::plan::Backend::Unleash(spec) => {
            Ok(Box::new(unleash::Unleash::new(plan, spec.clone(), exec)?))
        }
    }
}

/// The environment every backend command and hook gets: the run's context, never templated
/// into strings.
pub fn context_env(name: &str, change: WeightChange) -> Vec<(String, String)> {
    vec![
        ("ROLLOUT_NAME".into(), name.to_string()),
        ("ROLLOUT_STAGE".into(), change.stage.to_string()),
        ("ROLLOUT_WEIGHT".into(), change.weight.percent().to_string()),
        (
            "ROLLOUT_PREVIOUS_WEIGHT".into(),
            change.previous.percent().to_string(),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 20 MB single line on stderr: the error says it once, bounded, with what was dropped.
    #[tokio::test]
    async fn a_failed_command_with_a_huge_stderr_line_gives_a_bounded_error() {
        let cmd = Cmd {
            argv: [
                "sh",
                "-c",
                "head -c 20000000 /dev/zero | tr '\\0' x >&2; exit 7",
            ]
            .map(String::from)
            .to_vec(),
            env: Vec::new(),
            timeout: std::time::Duration::from_secs(60),
            purpose: "set_weight".into(),
            stdout_keep: crate::exec::KEEP,
        };
        let output = crate::exec::run_command(&cmd).await.unwrap();
        let message = BackendError::failed(&cmd, &output).to_string();
        assert!(message.len() < 1_000, "{} bytes", message.len());
        assert_eq!(
            message,
            format!(
                "set_weight failed (exit status 7): `sh -c 'head -c 20000000 /dev/zero | tr '\\''\\0'\\'' x >&2; exit 7'`: …{} (19.9 MB of stderr dropped)",
                "x".repeat(500)
            )
        );
    }
}
