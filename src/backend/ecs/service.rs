//! `mode = "service"`: one service gets the new image. A service runs one task definition at a
//! time, so validation has allowed only 0% (it keeps what it runs) and 100% (it runs the new
//! revision).

use async_trait::async_trait;
use serde_json::Value;

use super::deploy::{DeployState, ImageUpdate};
use super::{Context, new_version_failed, unreadable_state};
use crate::backend::{Backend, BackendError, Recovery, WeightChange};
use crate::plan::EcsServiceSpec;

pub struct ServiceBackend {
    cx: Context,
    update: ImageUpdate,
}

impl ServiceBackend {
    pub(crate) fn new(cx: Context, spec: EcsServiceSpec) -> Self {
        ServiceBackend {
            update: ImageUpdate::new(cx.clone(), spec.update),
            cx,
        }
    }
}

#[async_trait]
impl Backend for ServiceBackend {
    fn describe(&self) -> String {
        format!(
            "ECS service `{}` in cluster `{}`",
            self.update.service(),
            self.cx.cluster
        )
    }

    async fn preflight(&mut self) -> Result<(), BackendError> {
        self.cx.check_account_and_cluster().await?;
        self.update.check().await?;
        Ok(())
    }

    async fn set_weight(&mut self, change: WeightChange) -> Result<(), BackendError> {
        if change.weight.is_zero() {
            // The service keeps running what it ran, which is the stable version.
            self.cx.exec.note(&format!(
                "leave ECS service `{}` on its current task definition (0% on the new version)",
                self.update.service()
            ));
            return Ok(());
        }
        self.update.deploy().await.map_err(new_version_failed)
    }

    /// At 100% the service already runs the new revision; nothing is left to switch.
    async fn promote(&mut self) -> Result<(), BackendError> {
        Ok(())
    }

    async fn rollback(&mut self) -> Result<(), BackendError> {
        self.update.restore().await?;
        Ok(())
    }

    /// The task definition to return to is only in the journal, or given as
    /// `--task-definition`.
    async fn recover(&mut self, recovery: &Recovery) -> Result<Vec<String>, BackendError> {
        let Some(previous) = &recovery.task_definition else {
            return Err(BackendError::Precondition(format!(
                "the task definition ECS service `{}` ran before the rollout is only \
                 known to the journal; give it with `rollout rollback PLAN --task-definition \
                 FAMILY:REVISION` (`aws ecs describe-services` lists the service's deployments)",
                self.update.service()
            )));
        };
        self.update.state.previous_task_definition = Some(previous.clone());
        self.preflight().await?;
        Ok(Vec::new())
    }

    fn saved_state(&self) -> Option<Value> {
        (self.update.state != DeployState::default())
            .then(|| serde_json::to_value(&self.update.state).expect("strings serialize"))
    }

    fn restore_state(&mut self, state: Value) -> Result<(), BackendError> {
        self.update.state = serde_json::from_value(state).map_err(unreadable_state)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
