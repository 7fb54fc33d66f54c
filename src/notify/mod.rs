//! `[[notify]]`: telling people, in the background. The notifier is a reporter: each event a
//! target asked for is queued for that target's own task, which delivers it with a timeout
//! and a few retries. Nothing here waits on the network inside `report`, so a receiver that is
//! down, slow or hanging never delays or changes the rollout; a delivery that fails is a
//! warning. Targets' URLs, headers and secrets are never shown: they are named `notify[N]`.

mod deliver;
mod slack;
mod webhook;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use thiserror::Error;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::event::{Event, OutcomeKind, Reporter, Stamped};
use crate::exec::redact::Redactor;
use crate::plan::template::MissingVar;
use crate::plan::{Notify, NotifyKind, NotifyOn, Plan};

pub use deliver::ATTEMPTS;
pub use webhook::signature;

/// One kind of notification target: how an event becomes a request to it. Adding a kind is
/// one file implementing this and one arm in `channel`.
pub trait Channel: Send + Sync {
    /// Where requests go (a secret: never shown).
    fn url(&self) -> &reqwest::Url;
    /// The request's body for an event of the rollout `name`; `None` when this kind says
    /// nothing of it.
    fn body(&self, name: &str, stamped: &Stamped) -> Option<Vec<u8>>;
    /// The headers of a request carrying `body` (a webhook's own, its signature).
    fn headers(&self, body: &[u8]) -> reqwest::header::HeaderMap;
}

/// A target's channel, with every `${VAR}` of its url, headers and secret resolved.
fn channel(spec: &Notify) -> Result<Arc<dyn Channel>, SetupError> {
    Ok(match &spec.kind {
        NotifyKind::Slack => Arc::new(slack::Slack::resolve(spec)?),
        NotifyKind::Webhook { headers, secret } => {
            Arc::new(webhook::Webhook::resolve(spec, headers, secret.as_ref())?)
        }
    })
}

/// The target's URL, resolved; a problem with it is described, never quoted (it is a secret).
fn resolve_url(spec: &Notify) -> Result<reqwest::Url, SetupError> {
    let url = resolve(spec, &spec.url)?;
    reqwest::Url::parse(&url)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https"))
        .ok_or_else(|| invalid(spec, "its url is not an http:// or https:// URL"))
}

fn resolve(
    spec: &Notify,
    template: &crate::plan::template::Template,
) -> Result<String, SetupError> {
    template.resolve_env().map_err(|var| SetupError::Env {
        target: spec.to_string(),
        var,
    })
}

fn invalid(spec: &Notify, what: &str) -> SetupError {
    SetupError::Invalid {
        target: spec.to_string(),
        what: what.to_string(),
    }
}

/// Says a warning where the run's events go.
pub type Warn = Arc<dyn Fn(String) + Send + Sync>;

#[derive(Debug, Error)]
pub enum SetupError {
    #[error("{target}: {var}")]
    Env { target: String, var: MissingVar },
    #[error("{target}: {what}")]
    Invalid { target: String, what: String },
    #[error("the HTTP client for notifications could not be set up: {0}")]
    Client(String),
}

/// Which notification an event is, if any. Outcomes where the tool could not proceed come
/// under `rolled-back`: traffic was returned to stable where possible, and the event says how
/// it ended (its `kind` is `failed`).
pub fn notification(event: &Event) -> Option<NotifyOn> {
    Some(match event {
        Event::Started { .. } => NotifyOn::Started,
        Event::StageStarted { .. } => NotifyOn::StageStarted,
        Event::StagePassed { .. } => NotifyOn::StagePassed,
        Event::AwaitingApproval { .. } => NotifyOn::ApprovalNeeded,
        Event::Stuck { .. } => NotifyOn::Stuck,
        Event::Finished(outcome) => match outcome.kind {
            OutcomeKind::Promoted => NotifyOn::Promoted,
            OutcomeKind::RolledBack | OutcomeKind::Failed => NotifyOn::RolledBack,
            OutcomeKind::Paused => NotifyOn::Paused,
            OutcomeKind::RollbackFailed => NotifyOn::RollbackFailed,
            // Only a backtest ends undecided, and a backtest tells nobody.
            OutcomeKind::Undecided => return None,
        },
        _ => return None,
    })
}

/// One notification on its way: what it is (for warnings) and the request's parts.
struct Message {
    on: NotifyOn,
    body: Vec<u8>,
}

struct Target {
    spec: Notify,
    channel: Arc<dyn Channel>,
    queue: Mutex<Option<mpsc::UnboundedSender<Message>>>,
    /// Queued and not yet delivered or given up on.
    pending: Arc<AtomicUsize>,
}

pub struct Notifier {
    name: String,
    targets: Vec<Target>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    warn: Warn,
}

impl Notifier {
    /// Resolves every target's `${VAR}`s (a missing one is an error before anything is
    /// touched) and starts one delivery task per target. Must run inside the tokio runtime.
    pub fn start(plan: &Plan, redactor: Redactor, warn: Warn) -> Result<Notifier, SetupError> {
        let client = deliver::client().map_err(|e| SetupError::Client(e.to_string()))?;
        let mut targets = Vec::new();
        let mut tasks = Vec::new();
        for spec in &plan.notify {
            let channel = channel(spec)?;
            let (tx, rx) = mpsc::unbounded_channel();
            let pending = Arc::new(AtomicUsize::new(0));
            let worker = deliver::Worker {
                client: client.clone(),
                channel: channel.clone(),
                label: spec.to_string(),
                timeout: spec.timeout,
                redactor: redactor.clone(),
                warn: warn.clone(),
                pending: pending.clone(),
            };
            tasks.push(tokio::spawn(worker.run(rx)));
            targets.push(Target {
                spec: spec.clone(),
                channel,
                queue: Mutex::new(Some(tx)),
                pending,
            });
        }
        Ok(Notifier {
            name: plan.name.to_string(),
            targets,
            tasks: Mutex::new(tasks),
            warn,
        })
    }

    /// Lets what is queued be delivered, for at most `limit`, then gives up on the rest and
    /// says so: the process is about to exit.
    pub async fn finish(&self, limit: Duration) {
        for target in &self.targets {
            target.queue.lock().expect("notify lock").take();
        }
        let tasks = std::mem::take(&mut *self.tasks.lock().expect("notify lock"));
        let all = futures_util::future::join_all(tasks);
        if tokio::time::timeout(limit, all).await.is_ok() {
            return;
        }
        for target in &self.targets {
            let left = target.pending.load(Ordering::SeqCst);
            if left > 0 {
                (self.warn)(format!(
                    "{left} notification(s) to {} were not delivered before rollout exited",
                    target.spec
                ));
            }
        }
    }

    /// The longest a target's queue may need once closed: every attempt of its last message.
    pub fn drain_limit(&self) -> Duration {
        self.targets
            .iter()
            .map(|t| deliver::worst_case(t.spec.timeout))
            .max()
            .unwrap_or(Duration::ZERO)
    }
}

impl Reporter for Notifier {
    fn report(&self, stamped: &Stamped) {
        let Some(on) = notification(&stamped.event) else {
            return;
        };
        for target in self.targets.iter().filter(|t| t.spec.on.contains(&on)) {
            let Some(body) = target.channel.body(&self.name, stamped) else {
                continue;
            };
            let queue = target.queue.lock().expect("notify lock");
            let Some(queue) = queue.as_ref() else {
                continue;
            };
            // Counted before it is queued: the task may deliver it at once.
            target.pending.fetch_add(1, Ordering::SeqCst);
            if queue.send(Message { on, body }).is_err() {
                target.pending.fetch_sub(1, Ordering::SeqCst);
            }
        }
    }
}

#[cfg(test)]
mod tests;
