//! `type = "command"`: the user's own commands move traffic. The escape hatch for any router.

use std::sync::Arc;

use async_trait::async_trait;

use super::{Backend, BackendError, Executor, OwnCommands, WeightChange};
use crate::plan::{CommandBackend as Spec, Plan};

pub struct CommandBackend {
    spec: Spec,
    commands: OwnCommands,
    current: WeightChange,
}

impl CommandBackend {
    pub fn new(plan: &Plan, spec: Spec, exec: Arc<dyn Executor>) -> Self {
        CommandBackend {
            commands: OwnCommands::new(plan, spec.timeout, exec),
            spec,
            current: WeightChange::BEFORE_START,
        }
    }

    async fn apply(&mut self, change: WeightChange) -> Result<(), BackendError> {
        self.commands
            .run_checked(&self.spec.set_weight, change, "set_weight")
            .await?;
        if let Some(verify) = &self.spec.verify {
            self.commands.run_checked(verify, change, "verify").await?;
        }
        self.current = change;
        Ok(())
    }
}

#[async_trait]
impl Backend for CommandBackend {
    fn describe(&self) -> String {
        format!("command backend (`{}`)", self.spec.set_weight)
    }

    async fn preflight(&mut self) -> Result<(), BackendError> {
        Ok(())
    }

    async fn set_weight(&mut self, change: WeightChange) -> Result<(), BackendError> {
        self.apply(change).await
    }

    async fn promote(&mut self) -> Result<(), BackendError> {
        if let Some(promote) = &self.spec.promote {
            self.commands
                .run_checked(promote, self.current, "promote")
                .await?;
        }
        Ok(())
    }

    async fn rollback(&mut self) -> Result<(), BackendError> {
        let change = self.current.to_stable();
        match &self.spec.rollback {
            Some(rollback) => {
                self.commands
                    .run_checked(rollback, change, "rollback")
                    .await?;
                self.current = change;
                Ok(())
            }
            None => self.apply(change).await,
        }
    }
}
