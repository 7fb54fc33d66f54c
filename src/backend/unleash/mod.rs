//! `type = "unleash"`: rolls a flag out in one environment through the Unleash Admin API.
//!
//! rollout owns a gradual-rollout strategy (`flexibleRollout`) on the flag in that
//! environment, and one more per active segment (at 100%, constrained to the segment). It
//! finds them again by their title, which starts with `rollout:PLAN` (Unleash shows it in its
//! UI, with "managed by rollout"). The strategies the flag had are journaled at preflight
//! (`saved_state`) and removed at the first change, since any of them would give the flag to
//! users outside the rollout's share; rollback disables the flag in the environment first (the
//! kill switch: nobody gets it), then removes rollout's strategies and puts the saved ones
//! back. Every change is read back from the Admin API before the bake.

mod api;
mod strategies;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Backend, BackendError, Executor, WeightChange};
use crate::exec::redact::Redactor;
use crate::plan::{Plan, UnleashBackend as Spec};
use api::{Answer, Method, Transport};
use strategies::Owned;

/// What a rollback needs to put back: journaled after preflight.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Saved {
    /// Whether the flag was enabled in the environment.
    enabled: bool,
    /// The strategies it had there, as the Admin API listed them (rollout's own left out).
    strategies: Vec<Value>,
}

pub struct Unleash {
    spec: Spec,
    owned: Owned,
    exec: Arc<dyn Executor>,
    transport: Arc<dyn Transport>,
    redactor: Redactor,
    /// `None` before preflight, and after a `recover` that found no journal.
    saved: Option<Saved>,
    current: WeightChange,
}

impl Unleash {
    pub fn new(plan: &Plan, spec: Spec, exec: Arc<dyn Executor>) -> Result<Self, BackendError> {
        let resolve = |t: &crate::plan::template::Template, what: &str| {
            t.resolve_env()
                .map_err(|var| BackendError::Setup(format!("the unleash backend's {what}: {var}")))
        };
        let token = resolve(&spec.token, "token")?;
        let url = resolve(&spec.url, "url")?;
        if !url.starts_with("http://") && !url.starts_with("https://") {
            return Err(BackendError::Setup(format!(
                "the unleash backend's url `{}` does not resolve to an http:// or https:// URL",
                spec.url
            )));
        }
        let mut secrets = vec![token.clone()];
        secrets.extend(spec.url.vars().filter_map(|v| std::env::var(v).ok()));
        let redactor = Redactor::new(secrets);
        let transport: Arc<dyn Transport> = if exec.is_dry_run() {
            Arc::new(api::Implied::new(
                &spec.project,
                &spec.flag,
                &[&spec.environment],
            ))
        } else {
            Arc::new(api::Http::new(&url, token, spec.timeout).map_err(BackendError::Setup)?)
        };
        Ok(Unleash {
            owned: Owned::new(plan.name.as_str(), &spec, plan.segments.clone()),
            spec,
            exec,
            transport,
            redactor,
            saved: None,
            current: WeightChange::BEFORE_START,
        })
    }

    fn feature_path(&self) -> String {
        format!(
            "/api/admin/projects/{}/features/{}",
            self.spec.project, self.spec.flag
        )
    }

    fn environment_path(&self) -> String {
        format!(
            "{}/environments/{}",
            self.feature_path(),
            self.spec.environment
        )
    }

    /// One request. A dry run shows every request; a real run reports the ones that change
    /// something (shown with --verbose). No token is ever in what is shown.
    async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Answer, BackendError> {
        if method != Method::Get || self.exec.is_dry_run() {
            let operation = format!("{} {path}", method.as_str());
            self.exec
                .call("unleash", &operation, body.cloned().unwrap_or(Value::Null));
        }
        self.transport.send(method, path, body).await.map_err(|e| {
            BackendError::Api(format!(
                "Unleash did not answer {} {path}: {}",
                method.as_str(),
                self.redactor.redact(&e)
            ))
        })
    }

    /// A request that must succeed.
    async fn expect_ok(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, BackendError> {
        let answer = self.request(method, path, body).await?;
        if answer.ok() {
            return Ok(answer.body);
        }
        Err(BackendError::Api(format!(
            "Unleash refused {} {path} ({}): {}",
            method.as_str(),
            answer.status,
            answer.message(&self.redactor)
        )))
    }

    /// The token works, is an admin token, and may change flags in this project and
    /// environment. The body of this answer holds the token itself: it is never shown.
    async fn check_token(&self) -> Result<(), BackendError> {
        let answer = self.request(Method::Get, "/api/admin/user", None).await?;
        let problem = match answer.status {
            200 if strategies::may_change(&answer.body, &self.spec) => return Ok(()),
            200 => "it may not change flag strategies in this project and environment",
            401 => "the server refused it (401: unknown, expired or malformed)",
            403 => {
                "it is not an admin token (403); the Admin API needs an admin token or a personal access token"
            }
            _ => {
                return Err(BackendError::Precondition(format!(
                    "Unleash answered {} checking the token: {}",
                    answer.status,
                    answer.message(&self.redactor)
                )));
            }
        };
        Err(BackendError::Precondition(format!(
            "the Unleash token cannot be used: {problem}"
        )))
    }

    /// The flag's state in our environment: enabled, and its strategies there.
    async fn environment(&self) -> Result<(bool, Vec<Value>), BackendError> {
        let feature = self
            .request(Method::Get, &self.feature_path(), None)
            .await?;
        if feature.status == 404 {
            return Err(BackendError::Precondition(format!(
                "Unleash has no flag `{}` in project `{}`: {}",
                self.spec.flag,
                self.spec.project,
                feature.message(&self.redactor)
            )));
        }
        if !feature.ok() {
            return Err(BackendError::Api(format!(
                "Unleash refused to show flag `{}` ({}): {}",
                self.spec.flag,
                feature.status,
                feature.message(&self.redactor)
            )));
        }
        let environments = feature.body["environments"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let Some(found) = environments
            .iter()
            .find(|e| e["name"] == self.spec.environment.as_str())
        else {
            let names: Vec<String> = environments
                .iter()
                .filter_map(|e| e["name"].as_str().map(|n| format!("`{n}`")))
                .collect();
            return Err(BackendError::Precondition(format!(
                "flag `{}` has no environment `{}` in project `{}` (it has {})",
                self.spec.flag,
                self.spec.environment,
                self.spec.project,
                if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(", ")
                }
            )));
        };
        let enabled = found["enabled"].as_bool().unwrap_or(false);
        let path = format!("{}/strategies", self.environment_path());
        let strategies = self.expect_ok(Method::Get, &path, None).await?;
        Ok((enabled, strategies.as_array().cloned().unwrap_or_default()))
    }

    async fn switch(&self, on: bool) -> Result<(), BackendError> {
        let path = format!(
            "{}/{}",
            self.environment_path(),
            if on { "on" } else { "off" }
        );
        self.expect_ok(Method::Post, &path, None).await.map(drop)
    }

    /// Makes the environment's strategies exactly `wanted` (ours), removing the saved ones
    /// and refusing to remove any other: what is not journaled could not be put back. New
    /// strategies go in first: Unleash disables a flag whose last strategy is deleted.
    async fn sync(&self, found: &[Value], wanted: &[Value]) -> Result<(), BackendError> {
        let strategies = format!("{}/strategies", self.environment_path());
        if let Some(foreign) = found
            .iter()
            .find(|s| !self.owned.is_ours(s) && !self.was_saved(s))
        {
            return Err(BackendError::Precondition(format!(
                "flag `{}` got a strategy in `{}` during the rollout that rollout did not put there ({}); rollout removes only strategies it journaled, so nothing more was changed",
                self.spec.flag,
                self.spec.environment,
                strategies::describe(foreign)
            )));
        }
        for w in wanted {
            if !found.iter().any(|f| self.owned.same_title(w, f)) {
                self.expect_ok(Method::Post, &strategies, Some(w)).await?;
            }
        }
        for strategy in found {
            let id = strategy["id"].as_str().unwrap_or_default();
            let path = format!("{strategies}/{id}");
            match wanted.iter().find(|w| self.owned.same_title(w, strategy)) {
                Some(w) if strategies::same(w, strategy) => {}
                Some(w) => {
                    self.expect_ok(Method::Put, &path, Some(w)).await?;
                }
                None => {
                    self.expect_ok(Method::Delete, &path, None).await?;
                }
            }
        }
        Ok(())
    }

    fn was_saved(&self, strategy: &Value) -> bool {
        self.saved.as_ref().is_some_and(|s| {
            s.strategies
                .iter()
                .any(|saved| saved["id"] == strategy["id"])
        })
    }

    /// Reads the environment back: enabled as wanted, and exactly the wanted strategies.
    async fn confirm(&self, enabled: bool, wanted: &[Value]) -> Result<(), BackendError> {
        let (now_enabled, now) = self.environment().await?;
        let all_there = strategies::same_set(wanted, &now);
        if now_enabled == enabled && all_there {
            return Ok(());
        }
        Err(BackendError::NotConfirmed(format!(
            "reading flag `{}` back in `{}` shows it {} with {}, not as just set",
            self.spec.flag,
            self.spec.environment,
            if now_enabled { "enabled" } else { "disabled" },
            strategies::describe_all(&now)
        )))
    }

    async fn apply(&mut self, change: WeightChange) -> Result<(), BackendError> {
        let wanted = self.owned.wanted(change.weight, change.segments);
        let (_, found) = self.environment().await?;
        self.sync(&found, &wanted).await?;
        // Enabled last, once only our strategies decide who gets the flag.
        let (enabled, _) = self.environment().await?;
        if !enabled {
            self.switch(true).await?;
        }
        self.confirm(true, &wanted).await?;
        self.current = change;
        Ok(())
    }
}

#[async_trait]
impl Backend for Unleash {
    fn describe(&self) -> String {
        format!(
            "Unleash flag `{}` in `{}` (project `{}`)",
            self.spec.flag, self.spec.environment, self.spec.project
        )
    }

    async fn preflight(&mut self) -> Result<(), BackendError> {
        self.check_token().await?;
        let (enabled, found) = self.environment().await?;
        if self.saved.is_none() {
            let strategies = found
                .into_iter()
                .filter(|s| !self.owned.is_ours(s))
                .collect();
            self.saved = Some(Saved {
                enabled,
                strategies,
            });
        }
        Ok(())
    }

    async fn set_weight(&mut self, change: WeightChange) -> Result<(), BackendError> {
        self.apply(change).await
    }

    /// At 100% only rollout's share is left, at 100%: nothing more to change.
    async fn promote(&mut self) -> Result<(), BackendError> {
        Ok(())
    }

    async fn rollback(&mut self) -> Result<(), BackendError> {
        // The kill switch first: from this answer on, nobody gets the flag.
        self.switch(false).await?;
        let (_, found) = self.environment().await?;
        let strategies = format!("{}/strategies", self.environment_path());
        for strategy in found.iter().filter(|s| self.owned.is_ours(s)) {
            let path = format!(
                "{strategies}/{}",
                strategy["id"].as_str().unwrap_or_default()
            );
            self.expect_ok(Method::Delete, &path, None).await?;
        }
        // Without a journal (`recover`) there is nothing to put back, and nothing to hold the
        // others to.
        let known = self.saved.is_some();
        let saved = self.saved.clone().map_or_else(Vec::new, |s| s.strategies);
        for strategy in &saved {
            if !found.iter().any(|f| f["id"] == strategy["id"]) {
                let body = strategies::restorable(strategy);
                self.expect_ok(Method::Post, &strategies, Some(&body))
                    .await?;
            }
        }
        let wanted: Vec<Value> = saved.iter().map(strategies::restorable).collect();
        let (enabled, now) = self.environment().await?;
        let others: Vec<Value> = now.into_iter().filter(|s| !self.owned.is_ours(s)).collect();
        let restored = !known || strategies::same_set(&wanted, &others);
        if enabled || !restored {
            return Err(BackendError::NotConfirmed(format!(
                "reading flag `{}` back in `{}` after the rollback shows it {} with {}",
                self.spec.flag,
                self.spec.environment,
                if enabled { "still enabled" } else { "disabled" },
                strategies::describe_all(&others)
            )));
        }
        self.current = self.current.to_stable();
        Ok(())
    }

    fn saved_state(&self) -> Option<Value> {
        self.saved
            .as_ref()
            .map(|s| serde_json::to_value(s).expect("saved strategies serialize"))
    }

    fn restore_state(&mut self, state: Value) -> Result<(), BackendError> {
        let saved: Saved = serde_json::from_value(state).map_err(|e| {
            BackendError::Precondition(format!(
                "the journal's record of flag `{}`'s strategies cannot be read: {e}",
                self.spec.flag
            ))
        })?;
        self.saved = Some(saved);
        Ok(())
    }

    async fn recover(&mut self, _recovery: &super::Recovery) -> Result<Vec<String>, BackendError> {
        Ok(vec![format!(
            "without the journal, rollout does not know the strategies flag `{}` had in `{}` before the rollout: rollback disables the flag there (the kill switch) and removes rollout's own strategies, but cannot put the others back (Unleash's event log for the flag shows them)",
            self.spec.flag, self.spec.environment
        )])
    }
}
