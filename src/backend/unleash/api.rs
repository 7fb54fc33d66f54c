//! How the Unleash backend talks to its server: one request at a time through `Transport`.
//! A real run sends it over HTTPS (TLS verified, a time limit on every request, no redirects:
//! the token must go to the server the plan names and nowhere else). A dry run, and the unit
//! tests, send it to `Implied`: an in-memory Unleash holding what the plan implies, so that
//! the backend takes the path a real run takes and every call it would make is shown.

use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};

use crate::exec::redact::Redactor;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Put,
    Delete,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
        }
    }
}

/// An answer: the HTTP status and the body, parsed when it is JSON (`Null` when empty).
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

impl Answer {
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// Unleash's own words for an error (`message`), redacted.
    pub fn message(&self, redactor: &Redactor) -> String {
        let text = self
            .body
            .get("message")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| redactor.snippet(self.body.to_string().as_bytes()));
        redactor.redact(&text)
    }
}

#[async_trait]
pub trait Transport: Send + Sync {
    /// `Err` when no answer came (unreachable, timed out, TLS refused): the message is
    /// already fit to show.
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Answer, String>;
}

pub struct Http {
    client: reqwest::Client,
    base: String,
    token: String,
}

impl Http {
    pub fn new(base: &str, token: String, timeout: Duration) -> Result<Http, String> {
        let client = reqwest::Client::builder()
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("rollout/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot set up the HTTP client: {e}"))?;
        Ok(Http {
            client,
            base: base.trim_end_matches('/').to_string(),
            token,
        })
    }
}

#[async_trait]
impl Transport for Http {
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Answer, String> {
        let url = format!("{}{path}", self.base);
        let method_ = match method {
            Method::Get => reqwest::Method::GET,
            Method::Post => reqwest::Method::POST,
            Method::Put => reqwest::Method::PUT,
            Method::Delete => reqwest::Method::DELETE,
        };
        let mut request = self
            .client
            .request(method_, &url)
            .header(reqwest::header::AUTHORIZATION, &self.token)
            .header(reqwest::header::ACCEPT, "application/json");
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|e| describe(&e))?;
        let status = response.status().as_u16();
        let bytes = response.bytes().await.map_err(|e| describe(&e))?;
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Ok(Answer { status, body })
    }
}

/// A transport error in words, with its causes (reqwest's own message alone says only
/// "error sending request"). The caller redacts it.
fn describe(e: &reqwest::Error) -> String {
    let mut text = if e.is_timeout() {
        "timed out".to_string()
    } else {
        e.to_string()
    };
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

/// An in-memory Unleash with one project, one flag and its environments: what a dry run
/// assumes (the flag exists, disabled in the plan's environment, with no strategies) and what
/// unit tests drive. Strategy ids are `<id N>`.
pub struct Implied {
    state: Mutex<ImpliedState>,
}

struct ImpliedState {
    prefix: String,
    environments: Vec<(String, bool, Vec<Value>)>,
    next_id: u32,
    /// Unit tests: answer every request with this status instead.
    failing: Option<u16>,
}

impl Implied {
    pub fn new(project: &str, flag: &str, environments: &[&str]) -> Implied {
        Implied {
            state: Mutex::new(ImpliedState {
                prefix: format!("/api/admin/projects/{project}/features/{flag}"),
                environments: environments
                    .iter()
                    .map(|e| (e.to_string(), false, Vec::new()))
                    .collect(),
                next_id: 1,
                failing: None,
            }),
        }
    }

    /// The strategies and whether the flag is enabled, in `environment` (unit tests).
    #[cfg(test)]
    pub fn environment(&self, environment: &str) -> (bool, Vec<Value>) {
        let state = self.state.lock().unwrap();
        let (_, enabled, strategies) = state
            .environments
            .iter()
            .find(|(e, _, _)| e == environment)
            .expect("a known environment");
        (*enabled, strategies.clone())
    }

    /// Adds a strategy someone else made (unit tests).
    #[cfg(test)]
    pub fn add(&self, environment: &str, strategy: Value, enabled: bool) {
        let mut state = self.state.lock().unwrap();
        let id = format!("<id {}>", state.next_id);
        state.next_id += 1;
        let env = state
            .environments
            .iter_mut()
            .find(|(e, _, _)| e == environment)
            .unwrap();
        let mut strategy = strategy;
        strategy["id"] = json!(id);
        env.2.push(strategy);
        env.1 = enabled;
    }

    #[cfg(test)]
    pub fn fail_with(&self, status: Option<u16>) {
        self.state.lock().unwrap().failing = status;
    }
}

fn not_found(message: &str) -> Answer {
    Answer {
        status: 404,
        body: json!({ "name": "NotFoundError", "message": message }),
    }
}

impl ImpliedState {
    fn answer(&mut self, method: Method, path: &str, body: Option<&Value>) -> Answer {
        let ok = |body: Value| Answer { status: 200, body };
        if path == "/api/admin/user" {
            return ok(
                json!({ "user": { "permissions": ["ADMIN"] }, "permissions": [{ "permission": "ADMIN" }] }),
            );
        }
        let Some(rest) = path.strip_prefix(&self.prefix) else {
            return not_found("There's no such feature in this project.");
        };
        if rest.is_empty() && method == Method::Get {
            let environments: Vec<Value> = self
                .environments
                .iter()
                .map(|(name, enabled, strategies)| json!({ "name": name, "enabled": enabled, "strategies": strategies }))
                .collect();
            return ok(json!({ "environments": environments }));
        }
        let Some(rest) = rest.strip_prefix("/environments/") else {
            return not_found("no such route");
        };
        let (environment, rest) = rest.split_once('/').unwrap_or((rest, ""));
        let next_id = &mut self.next_id;
        let Some((_, enabled, strategies)) = self
            .environments
            .iter_mut()
            .find(|(e, _, _)| e == environment)
        else {
            return not_found(&format!("Feature does not have environment {environment}"));
        };
        match (method, rest) {
            (Method::Post, "on") => *enabled = true,
            (Method::Post, "off") => *enabled = false,
            (Method::Get, "strategies") => return ok(Value::Array(strategies.clone())),
            (Method::Post, "strategies") => {
                let mut strategy = body.cloned().unwrap_or(Value::Null);
                strategy["id"] = json!(format!("<id {next_id}>"));
                *next_id += 1;
                strategies.push(strategy.clone());
                return ok(strategy);
            }
            (method, rest) => {
                let Some(id) = rest.strip_prefix("strategies/") else {
                    return not_found("no such route");
                };
                let Some(at) = strategies.iter().position(|s| s["id"] == id) else {
                    return not_found(&format!("Could not find strategy with id={id}"));
                };
                match method {
                    Method::Put => {
                        let mut strategy = body.cloned().unwrap_or(Value::Null);
                        strategy["id"] = json!(id);
                        strategies[at] = strategy.clone();
                        return ok(strategy);
                    }
                    Method::Delete => {
                        strategies.remove(at);
                    }
                    _ => return not_found("no such route"),
                }
            }
        }
        ok(Value::Null)
    }
}

#[async_trait]
impl Transport for Implied {
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Answer, String> {
        let mut state = self
            .state
            .lock()
            .expect("the implied Unleash is never poisoned");
        if let Some(status) = state.failing {
            return Ok(Answer {
                status,
                body: json!({ "message": format!("failing with {status}") }),
            });
        }
        Ok(state.answer(method, path, body))
    }
}
