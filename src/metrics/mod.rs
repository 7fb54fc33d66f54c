//! Metric sources. Each source type is one file implementing `Probe`; `build` picks it.
//! A probe reads one metric (and its baseline) and says what it found: a number, no data, or
//! an error. Judging the number is the engine's business (`engine::verdict`).

pub mod command;
pub mod history;
pub mod http_json;
pub mod prometheus;
pub mod promql;
pub mod range;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use thiserror::Error;

use crate::plan::template::{MissingVar, Template};
use crate::plan::{Headers, Metric, Plan, Query, SourceKind};

pub use crate::exec::redact::{REDACTED, Redactor};

/// What one reading of a metric said, before any rule is applied.
#[derive(Debug, Clone, PartialEq)]
pub enum Reading {
    /// The source answered with a number, and with the baseline's number when the metric has one.
    Value { value: f64, baseline: Option<f64> },
    /// A judged metric's samples over its window: the canary's and the baseline's, every
    /// finite value of every series.
    Samples {
        canary: Vec<f64>,
        baseline: Vec<f64>,
    },
    /// The source answered but had no value (empty vector, NaN, +Inf, missing baseline); the
    /// detail says what it answered instead, when that is known.
    NoData(Option<String>),
    /// The source could not be reached, timed out or answered garbage.
    Error(String),
}

/// Which of a metric's two queries to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    Value,
    Baseline,
}

#[derive(Debug, Clone, Error, PartialEq)]
pub enum ProbeError {
    #[error("no answer within {}", humantime::format_duration(*.0))]
    Timeout(Duration),
    #[error("cannot reach the source: {0}")]
    Unreachable(String),
    #[error("the source answered HTTP {status}: {message}")]
    Http { status: u16, message: String },
    #[error("unusable answer: {0}")]
    Malformed(String),
    /// Only the origin is kept: the full `Location` may carry a token.
    #[error(
        "the source redirected to another origin ({0}); rollout does not send the source's headers there: set the source's url to the final address"
    )]
    CrossOriginRedirect(String),
    #[error("{0}")]
    Command(String),
}

impl ProbeError {
    /// The error with every secret in its text replaced.
    pub fn redacted(self, redactor: &Redactor) -> ProbeError {
        match self {
            ProbeError::Timeout(after) => ProbeError::Timeout(after),
            ProbeError::Unreachable(m) => ProbeError::Unreachable(redactor.redact(&m)),
            ProbeError::Http { status, message } => ProbeError::Http {
                status,
                message: redactor.redact(&message),
            },
            ProbeError::Malformed(m) => ProbeError::Malformed(redactor.redact(&m)),
            ProbeError::CrossOriginRedirect(o) => {
                ProbeError::CrossOriginRedirect(redactor.redact(&o))
            }
            ProbeError::Command(m) => ProbeError::Command(redactor.redact(&m)),
        }
    }
}

#[async_trait]
pub trait Probe: Send + Sync {
    /// What is read, for people; never contains a header value.
    fn describe(&self, which: Which) -> String;

    /// The request a reading at `at` sends, as sent, for the evidence: `${VAR}`s stay
    /// unresolved and nothing secret is in it.
    fn sent(&self, which: Which, at: SystemTime) -> String;

    /// One reading, evaluated at `at`: a number (the samples of the window before `at`, for a
    /// judged metric), or no data when the source answered without a usable one.
    async fn read(&self, which: Which, at: SystemTime) -> Result<Found, ProbeError>;
}

/// What a source answered, when it answered.
#[derive(Debug, Clone, PartialEq)]
pub enum Found {
    /// A finite number.
    Value(f64),
    /// A judged metric's samples: the finite values only.
    Samples(Vec<f64>),
    /// No usable number; says what the source answered instead ("the source returned NaN").
    NoData(String),
}

impl Found {
    pub fn value(&self) -> Option<f64> {
        match self {
            Found::Value(v) => Some(*v),
            Found::Samples(_) | Found::NoData(_) => None,
        }
    }
}

/// A judged metric's window of samples: how far back, at what resolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SampleWindow {
    pub length: Duration,
    pub step: Duration,
}

impl SampleWindow {
    pub fn of(metric: &Metric) -> Option<SampleWindow> {
        metric.judge.as_ref().map(|j| SampleWindow {
            length: j.window,
            step: j.step,
        })
    }
}

/// RFC 3339 with milliseconds, UTC: how times are sent to sources and shown in evidence.
pub fn rfc3339(at: SystemTime) -> String {
    humantime::format_rfc3339_millis(at).to_string()
}

#[derive(Debug, Error)]
pub enum SetupError {
    #[error("source `{source_name}`: {var} (it is used in the source's url or headers)")]
    Env {
        source_name: String,
        var: MissingVar,
    },
    #[error("source `{source_name}`: `{template}` does not resolve to an http:// or https:// URL")]
    Url {
        source_name: String,
        template: String,
    },
    #[error("source `{source_name}`: invalid header `{header}`")]
    Header { source_name: String, header: String },
    #[error("cannot set up the HTTP client: {0}")]
    Client(String),
}

/// One shared HTTP client: connection reuse across polls, TLS verified (rustls, webpki roots).
pub fn http_client() -> Result<reqwest::Client, SetupError> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .user_agent(concat!("rollout/", env!("CARGO_PKG_VERSION")))
        // reqwest strips `Authorization` on a redirect to another host, but sends every other
        // header (an `X-Api-Key`) along, and would add a Referer naming the source's URL.
        .redirect(reqwest::redirect::Policy::custom(same_origin_only))
        .referer(false)
        .build()
        .map_err(|e| SetupError::Client(e.to_string()))
}

/// Follows a redirect only within the origin (scheme, host and port) the request was sent to,
/// with reqwest's usual limit on the chain's length; refuses any other.
fn same_origin_only(attempt: reqwest::redirect::Attempt) -> reqwest::redirect::Action {
    let next = attempt.url().origin();
    if attempt.previous().first().map(|first| first.origin()) != Some(next.clone()) {
        return attempt.error(CrossOrigin(next.ascii_serialization()));
    }
    reqwest::redirect::Policy::default().redirect(attempt)
}

#[derive(Debug, Error)]
#[error("redirect to another origin ({0})")]
struct CrossOrigin(String);

/// Builds the probe of every metric, resolving `${VAR}`s now, before anything is touched.
pub fn build_all(plan: &Plan, client: &reqwest::Client) -> Result<Vec<Arc<dyn Probe>>, SetupError> {
    let redactor = secrets(plan);
    plan.metrics
        .iter()
        .map(|m| build(plan, m, client, &redactor))
        .collect()
}

/// Every value a source's url or headers take from the environment, and every whole header
/// value. All probes redact all of them, and so does the executor in what backend commands and
/// hooks print: they inherit the environment too.
pub fn secrets(plan: &Plan) -> Redactor {
    let mut values = Vec::new();
    let mut add = |t: &Template, whole: bool| {
        values.extend(t.vars().filter_map(|v| std::env::var(v).ok()));
        if whole {
            values.extend(t.resolve_env().ok());
        }
    };
    for source in &plan.sources {
        if let SourceKind::Prometheus { url, headers } | SourceKind::HttpJson { url, headers } =
            &source.kind
        {
            add(url, false);
            for (_, value) in headers {
                add(value, true);
            }
        }
    }
    for metric in &plan.metrics {
        if let Query::HttpJson { endpoint, .. } = &metric.query {
            add(&endpoint.url, false);
        }
    }
    // A notification's URL is a credential in itself (a Slack webhook URL is all it takes).
    for secret in plan.notify.iter().flat_map(|n| n.secrets()) {
        add(secret, true);
    }
    if let crate::plan::Backend::Unleash(unleash) = &plan.backend {
        add(&unleash.url, false);
        add(&unleash.token, true);
    }
    Redactor::new(values)
}

/// A Prometheus metric's probe as such (for replaying its history); `None` for other sources.
pub fn prometheus_probe(
    plan: &Plan,
    metric: &Metric,
    client: &reqwest::Client,
    redactor: &Redactor,
) -> Result<Option<prometheus::Prometheus>, SetupError> {
    let Query::Prometheus {
        endpoint,
        query,
        baseline,
        reduce,
    } = &metric.query
    else {
        return Ok(None);
    };
    let source = &plan.sources[metric.source];
    let name = source.name.as_str();
    Ok(Some(prometheus::Prometheus {
        window: SampleWindow::of(metric),
        client: client.clone(),
        base_url: resolve_url(name, &endpoint.url)?,
        url_shown: endpoint.url.to_string(),
        headers: header_map(name, &endpoint.headers, &|t| resolve(name, t))?,
        timeout: source.timeout,
        query: query.clone(),
        baseline: baseline.clone(),
        reduce: *reduce,
        redactor: redactor.clone(),
    }))
}

fn resolve(source: &str, t: &Template) -> Result<String, SetupError> {
    t.resolve_env().map_err(|var| SetupError::Env {
        source_name: source.to_string(),
        var,
    })
}

/// A URL whose scheme came from a variable is checked once it is known.
fn resolve_url(source: &str, t: &Template) -> Result<String, SetupError> {
    let url = resolve(source, t)?;
    if url.starts_with("http://") || url.starts_with("https://") {
        Ok(url)
    } else {
        Err(SetupError::Url {
            source_name: source.to_string(),
            template: t.to_string(),
        })
    }
}

fn build(
    plan: &Plan,
    metric: &Metric,
    client: &reqwest::Client,
    redactor: &Redactor,
) -> Result<Arc<dyn Probe>, SetupError> {
    let source = &plan.sources[metric.source];
    let name = source.name.as_str();
    Ok(match &metric.query {
        Query::Prometheus { .. } => match prometheus_probe(plan, metric, client, redactor)? {
            Some(probe) => Arc::new(probe) as Arc<dyn Probe>,
            None => return Err(SetupError::Client("not a Prometheus query".into())),
        },
        Query::HttpJson {
            endpoint,
            path,
            baseline_path,
        } => Arc::new(http_json::HttpJson {
            samples: metric.judge.is_some(),
            client: client.clone(),
            url: resolve_url(name, &endpoint.url)?,
            url_shown: endpoint.url.to_string(),
            headers: header_map(name, &endpoint.headers, &|t| resolve(name, t))?,
            timeout: source.timeout,
            path: path.clone(),
            baseline_path: baseline_path.clone(),
            redactor: redactor.clone(),
        }),
        Query::Command { run, baseline_run } => Arc::new(command::CommandProbe {
            samples: metric.judge.is_some(),
            run: run.clone(),
            baseline_run: baseline_run.clone(),
            timeout: source.timeout,
            metric: metric.name.to_string(),
            redactor: redactor.clone(),
        }),
    })
}

fn header_map(
    source: &str,
    headers: &Headers,
    resolve: &dyn Fn(&Template) -> Result<String, SetupError>,
) -> Result<reqwest::header::HeaderMap, SetupError> {
    let mut map = reqwest::header::HeaderMap::new();
    for (name, value) in headers {
        let bad = || SetupError::Header {
            source_name: source.to_string(),
            header: name.clone(),
        };
        let header_name =
            reqwest::header::HeaderName::from_bytes(name.as_bytes()).map_err(|_| bad())?;
        let mut header_value =
            reqwest::header::HeaderValue::from_str(&resolve(value)?).map_err(|_| bad())?;
        // Keeps the value out of reqwest's and our Debug output.
        header_value.set_sensitive(true);
        map.insert(header_name, header_value);
    }
    Ok(map)
}

/// One measurement as evidence: what was read, when it was evaluated, and what was sent.
#[derive(Debug, Clone, PartialEq)]
pub struct Taken {
    pub reading: Reading,
    pub at: SystemTime,
    pub query: String,
    pub baseline_query: Option<String>,
}

impl Taken {
    /// `reading`, with the requests the probe sends for the metric (and its baseline) at `at`.
    pub fn new(probe: &dyn Probe, metric: &Metric, at: SystemTime, reading: Reading) -> Taken {
        Taken {
            reading,
            at,
            query: probe.sent(Which::Value, at),
            baseline_query: metric
                .query
                .has_baseline()
                .then(|| probe.sent(Which::Baseline, at)),
        }
    }
}

/// Reads a metric and, when it has one, its baseline, both evaluated at `at`.
pub async fn take(probe: &dyn Probe, metric: &Metric, at: SystemTime) -> Taken {
    let reading = measure(probe, metric, at).await;
    Taken::new(probe, metric, at, reading)
}

/// Reads a metric and, when it has one, its baseline, at the same moment.
pub async fn measure(probe: &dyn Probe, metric: &Metric, at: SystemTime) -> Reading {
    let value = probe.read(Which::Value, at);
    let (value, baseline) = if metric.query.has_baseline() {
        let (value, baseline) = tokio::join!(value, probe.read(Which::Baseline, at));
        match (value, baseline) {
            (Err(e), _) => return Reading::Error(e.to_string()),
            (_, Err(e)) => return Reading::Error(format!("baseline: {e}")),
            (Ok(v), Ok(b)) => (v, Some(b)),
        }
    } else {
        match value.await {
            Ok(v) => (v, None),
            Err(e) => return Reading::Error(e.to_string()),
        }
    };
    match (value, baseline) {
        (Found::Samples(canary), Some(Found::Samples(baseline))) => {
            Reading::Samples { canary, baseline }
        }
        (Found::Samples(canary), _) => Reading::Samples {
            canary,
            baseline: Vec::new(),
        },
        (Found::Value(value), baseline) => Reading::Value {
            value,
            baseline: baseline.as_ref().and_then(Found::value),
        },
        (Found::NoData(detail), _) => Reading::NoData(Some(detail)),
    }
}

/// Turns a reqwest failure into a probe error without the URL, which may hold a secret.
pub fn transport_error(e: reqwest::Error, timeout: Duration) -> ProbeError {
    if e.is_timeout() {
        return ProbeError::Timeout(timeout);
    }
    let mut source = std::error::Error::source(&e);
    while let Some(inner) = source {
        if let Some(CrossOrigin(origin)) = inner.downcast_ref() {
            return ProbeError::CrossOriginRedirect(origin.clone());
        }
        source = inner.source();
    }
    let e = e.without_url();
    let mut message = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(inner) = source {
        message = format!("{message}: {inner}");
        source = inner.source();
    }
    ProbeError::Unreachable(message)
}

/// The one rule for numbers, whatever the source: a finite number is a value; NaN, +Inf, -Inf
/// and numbers beyond a 64-bit float's range are no data, saying which. `text` is the number as
/// the source wrote it, which is all that is left of a number too large to hold.
pub fn number(value: f64, text: &str) -> Found {
    if value.is_finite() {
        return Found::Value(value);
    }
    Found::NoData(format!("the source returned {}", non_finite(value, text)))
}

/// How a source's NaN, infinity or overflowing number is shown.
fn non_finite(value: f64, text: &str) -> String {
    let text = text.trim();
    let word = text.trim_start_matches(['+', '-']).to_ascii_lowercase();
    match value {
        v if v.is_nan() => "NaN".to_string(),
        v if word == "inf" || word == "infinity" => {
            if v > 0.0 { "+Inf" } else { "-Inf" }.to_string()
        }
        _ => {
            let shown: String = text.chars().take(40).collect();
            let cut = if shown.len() < text.len() { "..." } else { "" };
            format!("{shown}{cut}, a number too large for a 64-bit float")
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn errors_keep_their_kind() {
        let r = Redactor::new(["k".repeat(8)]);
        let e = ProbeError::Http {
            status: 500,
            message: format!("echo {}", "k".repeat(8)),
        }
        .redacted(&r);
        assert_eq!(
            e.to_string(),
            "the source answered HTTP 500: echo [redacted]"
        );
    }

    use super::*;

    #[test]
    fn one_rule_for_numbers() {
        let no_data = |what: &str| Found::NoData(format!("the source returned {what}"));
        let too_large = "a number too large for a 64-bit float";
        let cases = [
            ("0.25", Found::Value(0.25)),
            ("-3", Found::Value(-3.0)),
            ("1e308", Found::Value(1e308)),
            ("1e-400", Found::Value(0.0)),
            ("NaN", no_data("NaN")),
            ("nan", no_data("NaN")),
            ("+Inf", no_data("+Inf")),
            ("-Inf", no_data("-Inf")),
            ("inf", no_data("+Inf")),
            ("-infinity", no_data("-Inf")),
            ("1e309", no_data(&format!("1e309, {too_large}"))),
            ("-1e309", no_data(&format!("-1e309, {too_large}"))),
            (
                &format!("1{}", "0".repeat(400)),
                no_data(&format!("1{}..., {too_large}", "0".repeat(39))),
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(number(text.parse().unwrap(), text), expected, "{text}");
        }
    }
}
