//! One target's deliveries: in order, each with a timeout and a few retries with backoff.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;

use super::{Channel, Message, Warn};
use crate::exec::redact::Redactor;

/// Tries per notification: the first and two retries.
pub const ATTEMPTS: u32 = 3;
/// The pause before retry N is N times this.
const BACKOFF: Duration = Duration::from_secs(1);

/// The longest one notification can take, every attempt timing out.
pub fn worst_case(timeout: Duration) -> Duration {
    timeout * ATTEMPTS + BACKOFF * (ATTEMPTS * (ATTEMPTS - 1) / 2)
}

pub fn client() -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .user_agent(concat!("rollout/", env!("CARGO_PKG_VERSION")))
        // A receiver that redirects gets no copy of the event (or its signature) elsewhere.
        .redirect(reqwest::redirect::Policy::none())
        .referer(false)
        .build()
}

pub struct Worker {
    pub client: reqwest::Client,
    pub channel: Arc<dyn Channel>,
    /// `notify[0] (slack)`.
    pub label: String,
    pub timeout: Duration,
    pub redactor: Redactor,
    pub warn: Warn,
    pub pending: Arc<AtomicUsize>,
}

impl Worker {
    /// Delivers each message in turn until the queue is closed and empty.
    pub async fn run(self, mut queue: mpsc::UnboundedReceiver<Message>) {
        while let Some(message) = queue.recv().await {
            if let Err(why) = self.deliver(&message).await {
                (self.warn)(self.redactor.redact(&format!(
                    "the `{}` notification to {} was not delivered: {why}",
                    message.on.as_str(),
                    self.label
                )));
            }
            self.pending.fetch_sub(1, Ordering::SeqCst);
        }
    }

    async fn deliver(&self, message: &Message) -> Result<(), String> {
        let mut attempt = 1;
        loop {
            match self.attempt(message).await {
                Ok(()) => return Ok(()),
                Err(Failure::Final(why)) => return Err(why),
                Err(Failure::Passing(why)) if attempt >= ATTEMPTS => {
                    return Err(format!("{why} (after {ATTEMPTS} attempts)"));
                }
                Err(Failure::Passing(_)) => {
                    tokio::time::sleep(BACKOFF * attempt).await;
                    attempt += 1;
                }
            }
        }
    }

    async fn attempt(&self, message: &Message) -> Result<(), Failure> {
        let request = self
            .client
            .post(self.channel.url().clone())
            .timeout(self.timeout)
            .headers(self.channel.headers(&message.body))
            .header("X-Rollout-Event", message.on.as_str())
            .body(message.body.clone());
        let response = request.send().await.map_err(|e| {
            let e = e.without_url();
            if e.is_timeout() {
                Failure::Passing(format!(
                    "no answer within {}",
                    humantime::format_duration(self.timeout)
                ))
            } else {
                Failure::Passing(crate::exec::error_chain(&e))
            }
        })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let why = format!("the receiver answered {status}");
        // A server error or a rate limit may pass; anything else will not, however often.
        if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            Err(Failure::Passing(why))
        } else {
            Err(Failure::Final(why))
        }
    }
}

enum Failure {
    /// Worth another attempt: no connection, a timeout, a 5xx, a 429.
    Passing(String),
    Final(String),
}
