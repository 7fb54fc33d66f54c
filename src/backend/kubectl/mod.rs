//! `type = "kubectl"`: drives a Kubernetes cluster through the user's own `kubectl`, with their
//! kubeconfig, context and credentials.
//!
//! Every call is an argv array with `--kubeconfig`/`--context`/`-n` from the plan, and every
//! answer is read as JSON (`-o json`), never as human text. Only verbs and patch types that
//! behave the same on every conformant API server are used: `get`, `auth can-i`, `version`, and
//! `patch --type=json` (RFC 6902), whose first operation `test`s `metadata.resourceVersion`.
//! The API server applies a JSON patch to the object as stored at that moment, so the patch
//! lands only on the exact version that was read; a concurrent writer (a person, a controller
//! updating status) makes it fail, and the change is re-read and recomputed. Each change is
//! computed from the object as read and skipped when the object already holds it, which is
//! what makes a stage safe to apply again.
//!
//! Each mode is its own backend, built from exactly its own validated spec: `replicas.rs`
//! (two Deployments share the pods) and `gateway.rs` (an HTTPRoute's weights). Both act only
//! through the `client::Api` seam: `client::KubectlApi` in a real run, and in a dry run the
//! in-memory cluster of `store.rs` holding the objects as the plan implies them, which reports
//! every command a real run would run and answers from those objects. Neither mode knows
//! which one it has.
//!
//! Readiness is judged from a Deployment's status as `kubectl rollout status` judges it, and
//! also until a scale-down's surplus pods are gone (see `client::judge_deployment`), by polling
//! `get` until `rollout_timeout`. `kubectl rollout status` itself is not used: it watches, and
//! its verdict is human text.

mod api;
mod client;
mod gateway;
mod replicas;
mod route_rules;
mod store;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Backend, BackendError, Executor};
use crate::plan::{KubectlBackend, KubectlConnection, KubectlMode, Plan, Segment};
use client::{Api, Client, KubectlApi};

pub use api::{Deployment, HttpRoute};
pub use client::{Readiness, judge_deployment};
pub use gateway::{Gateway, gateway_weights, judge_route};
pub use replicas::{Replicas, split_replicas};

/// The backend of the plan's mode. A dry run gets the same backend on the in-memory cluster.
pub fn build(plan: &Plan, spec: &KubectlBackend, exec: Arc<dyn Executor>) -> Box<dyn Backend> {
    let mirrors = plan.stages.iter().any(|s| s.mirror.is_some());
    build_for(spec, exec, &plan.segments, mirrors)
}

/// `build`, given what of the plan a mode needs besides its backend table: its segments, and
/// whether any stage mirrors.
fn build_for(
    spec: &KubectlBackend,
    exec: Arc<dyn Executor>,
    segments: &[Segment],
    mirrors: bool,
) -> Box<dyn Backend> {
    let api: Arc<dyn Api> = if exec.is_dry_run() {
        Arc::new(store::InMemory::assumed(spec, exec))
    } else {
        Arc::new(KubectlApi::new(&spec.connection, exec))
    };
    let client = Client::new(api, &spec.connection.namespace, spec.rollout_timeout);
    let place = place(&spec.connection);
    match &spec.mode {
        KubectlMode::Replicas(mode) => Box::new(Replicas::new(mode.clone(), client, place)),
        KubectlMode::Gateway(mode) => {
            Box::new(Gateway::new(mode.clone(), client, place, segments, mirrors))
        }
    }
}

/// Where the objects are, for people: "namespace shop of context `prod`".
fn place(connection: &KubectlConnection) -> String {
    match &connection.context {
        Some(context) => format!("namespace {} of context `{context}`", connection.namespace),
        None => format!("namespace {}", connection.namespace),
    }
}

/// What the objects looked like before this run changed anything, as the journal keeps it for
/// a later process (`rollout resume`, `rollout rollback`): `{"mode": "replicas", ...}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "kebab-case")]
pub enum Original {
    Replicas(replicas::Before),
    Gateway(gateway::Before),
}

impl Original {
    fn to_json(&self) -> Value {
        serde_json::to_value(self).expect("the original state serializes")
    }

    fn from_json(state: Value) -> Result<Original, BackendError> {
        serde_json::from_value(state).map_err(|e| {
            BackendError::Precondition(format!(
                "the journal's record of the Kubernetes objects before the run cannot be read ({e})"
            ))
        })
    }

    /// The journal was written by a run in another mode than the plan's now.
    fn of_another_mode(&self, plan_mode: &str) -> BackendError {
        let journal_mode = match self {
            Original::Replicas(_) => "replicas",
            Original::Gateway(_) => "gateway",
        };
        BackendError::Precondition(format!(
            "the journal records the objects of a run in mode = \"{journal_mode}\", but the plan's \
             mode is \"{plan_mode}\"; roll back with the plan that made the run"
        ))
    }
}
