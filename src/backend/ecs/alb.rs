//! `mode = "alb"`: the stage's split on the weights of the stable and canary target groups of one
//! forward action (a listener's default actions, or a listener rule's), everything else on the
//! actions kept. Optionally the canary service first gets the new image, as in mode "service".

use async_trait::async_trait;
use aws_sdk_elasticloadbalancingv2::types::Action;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::deploy::{DeployState, ImageUpdate};
use super::forward::{
    TargetGroupWeight, alb_weights, forward_weights, has_weights, same_split, set_forward_weights,
};
use super::{Context, EcsError, new_version_failed, unreadable_state};
use crate::backend::{Backend, BackendError, Recovery, WeightChange};
use crate::plan::{AlbListener, EcsAlbSpec};

pub struct AlbBackend {
    cx: Context,
    listener: AlbListener,
    stable: String,
    canary: String,
    /// The canary service's image update, when the plan gives one.
    canary_update: Option<ImageUpdate>,
    /// The canary service runs the new image, steady: it may get traffic.
    canary_ready: bool,
    /// The forward action's target groups and weights at preflight.
    original_weights: Option<Vec<TargetGroupWeight>>,
}

/// What the journal keeps of a run in this mode. Flattened, it reads as it did before the modes
/// were split, so a run journaled then can be resumed or rolled back now.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
struct AlbState {
    #[serde(flatten)]
    canary: DeployState,
    original_weights: Option<Vec<TargetGroupWeight>>,
}

impl AlbBackend {
    pub(crate) fn new(cx: Context, spec: EcsAlbSpec) -> Self {
        AlbBackend {
            canary_update: spec
                .canary_update
                .map(|update| ImageUpdate::new(cx.clone(), update)),
            cx,
            listener: spec.listener,
            stable: spec.stable_target_group,
            canary: spec.canary_target_group,
            canary_ready: false,
            original_weights: None,
        }
    }

    /// What holds the actions, for messages.
    fn action_owner(&self) -> String {
        match &self.listener {
            AlbListener::Listener(arn) => format!("the default actions of ALB listener {arn}"),
            AlbListener::Rule(arn) => format!("ALB listener rule {arn}"),
        }
    }

    fn unusable(&self, problem: String) -> EcsError {
        EcsError::Unusable(format!("{}: {problem}", self.action_owner()))
    }

    async fn check_target_group(&self, arn: &str, role: &str) -> Result<(), EcsError> {
        let missing = || self.cx.missing(format!("target group {arn} ({role})"));
        match self.cx.api.describe_target_groups(arn).await {
            Ok(found) if !found.is_empty() => Ok(()),
            Ok(_) => Err(missing()),
            Err(e) if e.is_api_code("TargetGroupNotFound") => Err(missing()),
            Err(e) => Err(e),
        }
    }

    /// The listener's default actions, or the rule's actions.
    async fn read_actions(&self) -> Result<Vec<Action>, EcsError> {
        let api = &self.cx.api;
        let (read, not_found, what) = match &self.listener {
            AlbListener::Listener(arn) => (
                api.describe_listeners(arn).await.map(|found| {
                    found
                        .into_iter()
                        .next()
                        .map(|l| l.default_actions().to_vec())
                }),
                "ListenerNotFound",
                format!("ALB listener {arn}"),
            ),
            AlbListener::Rule(arn) => (
                api.describe_rules(arn)
                    .await
                    .map(|found| found.into_iter().next().map(|r| r.actions().to_vec())),
                "RuleNotFound",
                format!("ALB listener rule {arn}"),
            ),
        };
        match read {
            Ok(Some(actions)) => Ok(actions),
            Ok(None) => Err(self.cx.missing(what)),
            Err(e) if e.is_api_code(not_found) => Err(self.cx.missing(what)),
            Err(e) => Err(e),
        }
    }

    async fn write_actions(&self, actions: &[Action]) -> Result<(), EcsError> {
        match &self.listener {
            AlbListener::Listener(arn) => self.cx.api.modify_listener(arn, actions).await,
            AlbListener::Rule(arn) => self.cx.api.modify_rule(arn, actions).await,
        }
    }

    /// The forward action can be weighted: proved now, before anything changes.
    async fn check_actions(&mut self) -> Result<(), EcsError> {
        let actions = self.read_actions().await?;
        let original = forward_weights(&actions).map_err(|e| self.unusable(e))?;
        set_forward_weights(&actions, &self.stable, &self.canary, (100, 0))
            .map_err(|e| self.unusable(e))?;
        // Handed back from a journal, what the run started from stays.
        self.original_weights.get_or_insert(original);
        Ok(())
    }

    /// Writes the weights on the forward action and reads them back.
    async fn apply_weights(&self, weights: (i32, i32)) -> Result<(), BackendError> {
        let (stable, canary) = (self.stable.as_str(), self.canary.as_str());
        let actions = self.read_actions().await?;
        if same_split(&actions, stable, canary, weights) {
            // Already so (a retried rollback, a repeated stage): that read is the confirmation.
            return Ok(());
        }
        let updated =
            set_forward_weights(&actions, stable, canary, weights).map_err(|e| self.unusable(e))?;
        self.write_actions(&updated).await?;
        let what = self.action_owner();
        self.cx.exec.note(&format!(
            "read {what} back and confirm the weights {} (stable) / {} (canary)",
            weights.0, weights.1
        ));
        let read_back = self.read_actions().await?;
        if has_weights(&read_back, stable, canary, weights) {
            return Ok(());
        }
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

    fn state(&self) -> AlbState {
        AlbState {
            canary: self
                .canary_update
                .as_ref()
                .map(|update| update.state.clone())
                .unwrap_or_default(),
            original_weights: self.original_weights.clone(),
        }
    }
}

#[async_trait]
impl Backend for AlbBackend {
    fn describe(&self) -> String {
        let on = match &self.listener {
            AlbListener::Listener(arn) => format!("ALB listener {arn}"),
            AlbListener::Rule(arn) => format!("ALB listener rule {arn}"),
        };
        format!("{on} (ECS cluster `{}`)", self.cx.cluster)
    }

    async fn preflight(&mut self) -> Result<(), BackendError> {
        self.cx.check_account_and_cluster().await?;
        if let Some(update) = &mut self.canary_update {
            update.check().await?;
        }
        self.check_target_group(&self.stable, "stable_target_group")
            .await?;
        self.check_target_group(&self.canary, "canary_target_group")
            .await?;
        self.check_actions().await?;
        Ok(())
    }

    async fn set_weight(&mut self, change: WeightChange) -> Result<(), BackendError> {
        if let Some(update) = &mut self.canary_update
            && !self.canary_ready
        {
            // The canary service gets the new image before it gets any traffic.
            update.deploy().await.map_err(new_version_failed)?;
            self.canary_ready = true;
        }
        self.apply_weights(alb_weights(change.weight)).await
    }

    /// At 100% the canary target group already has every request; making the canary service
    /// the new stable one is up to the person.
    async fn promote(&mut self) -> Result<(), BackendError> {
        Ok(())
    }

    async fn rollback(&mut self) -> Result<(), BackendError> {
        // Traffic first: the weights are what users feel. Both steps change nothing where
        // nothing was changed, so they are safe from any state.
        self.apply_weights((100, 0)).await?;
        if let Some(update) = &mut self.canary_update {
            update.restore().await?;
        }
        Ok(())
    }

    /// Setting the stable group back to 100 needs nothing more than a preflight; the canary
    /// service keeps its task definition unless one is given.
    async fn recover(&mut self, recovery: &Recovery) -> Result<Vec<String>, BackendError> {
        let mut notes = Vec::new();
        match (&mut self.canary_update, &recovery.task_definition) {
            (Some(update), Some(previous)) => {
                update.state.previous_task_definition = Some(previous.clone());
            }
            (Some(update), None) => notes.push(format!(
                "no journal: ECS service `{}` keeps the task definition it runs now (the one before \
                 the rollout is only known to the journal; `--task-definition` returns it too)",
                update.service()
            )),
            (None, Some(previous)) => notes.push(format!(
                "--task-definition {previous} is not used: the plan gives no canary_service, so \
                 no service's task definition is changed"
            )),
            (None, None) => {}
        }
        self.preflight().await?;
        Ok(notes)
    }

    fn saved_state(&self) -> Option<Value> {
        let state = self.state();
        (state != AlbState::default())
            .then(|| serde_json::to_value(&state).expect("strings and numbers serialize"))
    }

    fn restore_state(&mut self, state: Value) -> Result<(), BackendError> {
        let state: AlbState = serde_json::from_value(state).map_err(unreadable_state)?;
        if let Some(update) = &mut self.canary_update {
            update.state = state.canary;
        }
        self.original_weights = state.original_weights;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
