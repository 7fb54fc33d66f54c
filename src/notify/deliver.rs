//! One target's deliveries: in order, each with a timeout and a few retries with backoff.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use sha2::Sha256;
use tokio::sync::mpsc;

use super::{Message, SetupError, Warn};
use crate::exec::redact::Redactor;
use crate::plan::{Notify, NotifyKind};

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

/// `sha256=HEX`: HMAC-SHA256 of the body with the secret, as `X-Rollout-Signature` carries it.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(body);
    let bytes = mac.finalize().into_bytes();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

/// Where a target's notifications go, with every `${VAR}` resolved.
pub struct Endpoint {
    url: reqwest::Url,
    headers: HeaderMap,
    secret: Option<Vec<u8>>,
}

impl Endpoint {
    pub fn resolve(spec: &Notify) -> Result<Endpoint, SetupError> {
        let target = spec.to_string();
        let env = |t: &crate::plan::template::Template| {
            t.resolve_env().map_err(|var| SetupError::Env {
                target: target.clone(),
                var,
            })
        };
        let invalid = |what: &str| SetupError::Invalid {
            target: target.clone(),
            what: what.to_string(),
        };
        // The URL is a secret: a problem with it is described, never quoted.
        let url = reqwest::Url::parse(&env(&spec.url)?)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .ok_or_else(|| invalid("its url is not an http:// or https:// URL"))?;
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let mut secret = None;
        if let NotifyKind::Webhook {
            headers: wanted,
            secret: key,
        } = &spec.kind
        {
            for (name, value) in wanted {
                let name = HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| invalid(&format!("`{name}` is not a header name")))?;
                let mut value = HeaderValue::from_str(&env(value)?)
                    .map_err(|_| invalid(&format!("the value of header `{name}` is not valid")))?;
                value.set_sensitive(true);
                headers.insert(name, value);
            }
            secret = key.as_ref().map(&env).transpose()?.map(String::into_bytes);
        }
        Ok(Endpoint {
            url,
            headers,
            secret,
        })
    }
}

pub struct Worker {
    pub client: reqwest::Client,
    pub endpoint: Endpoint,
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
        let mut request = self
            .client
            .post(self.endpoint.url.clone())
            .timeout(self.timeout)
            .headers(self.endpoint.headers.clone())
            .header("X-Rollout-Event", message.on.as_str())
            .body(message.body.clone());
        if let Some(secret) = &self.endpoint.secret {
            request = request.header("X-Rollout-Signature", signature(secret, &message.body));
        }
        let response = request.send().await.map_err(|e| {
            let e = e.without_url();
            if e.is_timeout() {
                Failure::Passing(format!(
                    "no answer within {}",
                    humantime::format_duration(self.timeout)
                ))
            } else {
                Failure::Passing(error_chain(&e))
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

/// An error with its causes (`error sending request: connection refused`), without the URL.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let more = cause.to_string();
        if !text.contains(&more) {
            text.push_str(&format!(": {more}"));
        }
        source = cause.source();
    }
    text
}
