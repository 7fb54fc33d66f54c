//! `type = "command"`: the user's own commands move traffic. The escape hatch for any router.

use std::sync::Arc;

use async_trait::async_trait;

use super::{Backend, BackendError, Cmd, Executor, WeightChange, context_env, run_checked};
use crate::plan::{Argv, CommandBackend as Spec, Plan, Weight};

pub struct CommandBackend {
    name: String,
    spec: Spec,
    exec: Arc<dyn Executor>,
    current: WeightChange,
}

impl CommandBackend {
    pub fn new(plan: &Plan, spec: Spec, exec: Arc<dyn Executor>) -> Self {
        CommandBackend {
            name: plan.name.to_string(),
            spec,
            exec,
            current: WeightChange {
                stage: 0,
                weight: Weight::ZERO,
                previous: Weight::ZERO,
            },
        }
    }

    fn cmd(&self, argv: &Argv, change: WeightChange, purpose: &str) -> Cmd {
        Cmd {
            argv: argv.as_slice().to_vec(),
            env: context_env(&self.name, change),
            timeout: self.spec.timeout,
            purpose: purpose.to_string(),
        }
    }

    async fn apply(&mut self, change: WeightChange) -> Result<(), BackendError> {
        let set = self.cmd(&self.spec.set_weight, change, "set_weight");
        run_checked(self.exec.as_ref(), &set).await?;
        if let Some(verify) = &self.spec.verify {
            let verify = self.cmd(verify, change, "verify");
            run_checked(self.exec.as_ref(), &verify).await?;
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
            let cmd = self.cmd(promote, self.current, "promote");
            run_checked(self.exec.as_ref(), &cmd).await?;
        }
        Ok(())
    }

    async fn rollback(&mut self) -> Result<(), BackendError> {
        let change = WeightChange {
            stage: self.current.stage,
            weight: Weight::ZERO,
            previous: self.current.weight,
        };
        match &self.spec.rollback {
            Some(rollback) => {
                let cmd = self.cmd(rollback, change, "rollback");
                run_checked(self.exec.as_ref(), &cmd).await?;
                self.current = change;
                Ok(())
            }
            None => self.apply(change).await,
        }
    }
}
