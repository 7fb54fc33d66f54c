//! `rollout validate --live`: every metric (and baseline) of a valid plan queried once, now, all
//! at once, each bounded by its source's timeout; what each answered, the verdict it would get,
//! and every problem in words. It touches no backend.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use comfy_table::{ContentArrangement, Table};
use serde::Serialize;

use rollout::engine::verdict::assess;
use rollout::event::{Comparison, Verdict};
use rollout::metrics::prometheus::Prometheus;
use rollout::metrics::{self, Found, Probe, ProbeError, Reading, Which, promql, rfc3339};
use rollout::plan::{Metric, Plan, SourceKind, show_reading};

/// Beyond the source's own timeout, for the whole check of one metric.
const GRACE: Duration = Duration::from_secs(1);

/// One metric, checked.
#[derive(Debug, Serialize)]
pub struct Row {
    pub metric: String,
    pub source: String,
    /// The request as sent (`${VAR}`s unresolved).
    pub query: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline_query: Option<String>,
    pub evaluated_at: String,
    pub value: Option<f64>,
    pub baseline: Option<f64>,
    /// The verdict the measurement would get in a run.
    pub verdict: Verdict,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comparison: Option<Comparison>,
    pub problems: Vec<Problem>,
    #[serde(skip)]
    percent: bool,
    /// Whether it answered with a value (and its baseline with one, or enough samples).
    pub answered: bool,
}

#[derive(Debug, Serialize)]
pub struct Problem {
    /// `unreachable`, `credentials`, `timeout`, `no-data`, `several-series`,
    /// `baseline-breaching` or `error`.
    pub kind: &'static str,
    pub message: String,
}

fn problem(kind: &'static str, message: impl Into<String>) -> Problem {
    Problem {
        kind,
        message: message.into(),
    }
}

/// Queries every metric of `plan` now. `Err` when the probes cannot be set up (a missing
/// environment variable): nothing was sent.
pub async fn check(plan: &Plan) -> anyhow::Result<Vec<Row>> {
    let client = metrics::http_client()?;
    let redactor = metrics::secrets(plan);
    let probes = metrics::build_all(plan, &client)?;
    let at = SystemTime::now();
    let mut checks = Vec::new();
    for (metric, probe) in plan.metrics.iter().zip(probes) {
        let prometheus = metrics::prometheus_probe(plan, metric, &client, &redactor)?;
        checks.push(check_metric(plan, metric, probe, prometheus, at));
    }
    Ok(futures_util::future::join_all(checks).await)
}

async fn check_metric(
    plan: &Plan,
    metric: &Metric,
    probe: Arc<dyn Probe>,
    prometheus: Option<Prometheus>,
    at: SystemTime,
) -> Row {
    let source = &plan.sources[metric.source];
    let deadline = tokio::time::Instant::now() + source.timeout + GRACE;
    let has_baseline = metric.query.has_baseline();
    let read = async {
        let baseline = async {
            match has_baseline {
                true => Some(probe.read(Which::Baseline, at).await),
                false => None,
            }
        };
        tokio::join!(probe.read(Which::Value, at), baseline)
    };
    let (value, baseline) = tokio::time::timeout_at(deadline, read)
        .await
        .unwrap_or_else(|_| {
            let late = || Err(ProbeError::Timeout(source.timeout + GRACE));
            (late(), has_baseline.then(late))
        });
    let mut row = Row {
        metric: metric.name.to_string(),
        source: source.name.to_string(),
        query: probe.sent(Which::Value, at),
        baseline_query: has_baseline.then(|| probe.sent(Which::Baseline, at)),
        evaluated_at: rfc3339(at),
        value: None,
        baseline: None,
        verdict: Verdict::Error,
        comparison: None,
        problems: Vec::new(),
        percent: metric.in_percent(),
        answered: false,
    };
    for (label, answer) in [("", Some(&value)), ("baseline: ", baseline.as_ref())] {
        let Some(answer) = answer else { continue };
        let which = if label.is_empty() {
            Which::Value
        } else {
            Which::Baseline
        };
        match answer {
            Err(e) => row
                .problems
                .push(classify(label, e, source_headers(plan, metric))),
            Ok(Found::NoData(detail)) => {
                // Only an empty answer has selectors to blame; NaN says enough by itself.
                let empty = detail.contains("empty vector");
                let hint = match &prometheus {
                    Some(p) if empty => tokio::time::timeout_at(deadline, hint(p, which, at))
                        .await
                        .ok()
                        .flatten(),
                    _ => None,
                };
                let hint = hint.map_or_else(String::new, |h| format!(": {h}"));
                row.problems
                    .push(problem("no-data", format!("{label}{detail}{hint}")));
            }
            Ok(_) => {}
        }
    }
    judge_row(metric, &mut row, value, baseline);
    row
}

/// The verdict, the values shown and the last problems, from what both queries answered.
fn judge_row(
    metric: &Metric,
    row: &mut Row,
    value: Result<Found, ProbeError>,
    baseline: Option<Result<Found, ProbeError>>,
) {
    let reading = match (value, baseline) {
        (Err(e), _) => Reading::Error(e.to_string()),
        (_, Some(Err(e))) => Reading::Error(format!("baseline: {e}")),
        (Ok(Found::Samples(canary)), b) => Reading::Samples {
            canary,
            baseline: match b {
                Some(Ok(Found::Samples(b))) => b,
                _ => Vec::new(),
            },
        },
        (Ok(Found::Value(v)), b) => Reading::Value {
            value: v,
            baseline: b.and_then(|b| b.ok()).and_then(|b| b.value()),
        },
        (Ok(Found::NoData(d)), _) => Reading::NoData(Some(d)),
    };
    let (verdict, comparison) = assess(metric, &reading);
    row.verdict = verdict;
    match (&reading, &comparison) {
        (Reading::Samples { .. }, Some(c)) => {
            row.value = c.canary_median;
            row.baseline = c.baseline_median;
            if let Some(few) = rollout::engine::judge::too_few(c) {
                row.problems.push(problem("no-data", few));
            }
            row.answered = row.problems.is_empty();
        }
        (Reading::Value { value, baseline }, _) => {
            row.value = Some(*value);
            row.baseline = *baseline;
            row.answered = !metric.query.has_baseline() || baseline.is_some();
        }
        _ => {}
    }
    row.comparison = comparison;
    if let (Some(rollback), Some(b)) = (&metric.rollback, row.baseline)
        && rollback.holds(b, Some(b)) == Some(true)
    {
        row.problems.push(problem(
            "baseline-breaching",
            format!(
                "the baseline ({}) already breaches rollback ({rollback}): the stable version \
                 fails this gate too, so it cannot tell a bad canary from a bad day",
                show_reading(b, row.percent)
            ),
        ));
    }
}

fn source_headers<'a>(plan: &'a Plan, metric: &Metric) -> Vec<&'a str> {
    match &plan.sources[metric.source].kind {
        SourceKind::Prometheus { headers, .. } | SourceKind::HttpJson { headers, .. } => {
            headers.iter().map(|(name, _)| name.as_str()).collect()
        }
        SourceKind::Command => Vec::new(),
    }
}

/// A probe's error as one of the problems `validate --live` names.
fn classify(label: &str, e: &ProbeError, headers: Vec<&str>) -> Problem {
    let message = format!("{label}{e}");
    match e {
        ProbeError::Timeout(_) => problem("timeout", message),
        ProbeError::Unreachable(_) => problem("unreachable", message),
        ProbeError::Http {
            status: status @ (401 | 403),
            ..
        } => {
            let check = match headers.as_slice() {
                [] => "the source has no headers: does it need a token?".to_string(),
                names => format!(
                    "check the source's headers ({}) and the environment variables they read",
                    names.join(", ")
                ),
            };
            problem(
                "credentials",
                format!("{label}the source refused the credentials (HTTP {status}): {check}"),
            )
        }
        ProbeError::Malformed(m) if m.contains(" series; aggregate it") => {
            problem("several-series", message)
        }
        _ => problem("error", message),
    }
}

/// Why a Prometheus query answered an empty vector, when one of its selectors says so.
async fn hint(prometheus: &Prometheus, which: Which, at: SystemTime) -> Option<String> {
    for selector in promql::selectors(prometheus.query_text(which)) {
        if prometheus.series_count(&selector.text, at).await.ok()? > 0 {
            continue;
        }
        let Some(name) = &selector.name else {
            return Some(format!(
                "the selector `{}` matches no series in the last hour",
                selector.text
            ));
        };
        let of_name = prometheus.series_count(name, at).await.ok()?;
        return Some(if of_name == 0 || selector.text == *name {
            format!("no series named `{name}` in the last hour (is it scraped? is the name right?)")
        } else {
            format!(
                "`{name}` has {of_name} series in the last hour, but the label selector `{}` matches none of them",
                selector.text
            )
        });
    }
    Some("every selector matches series: the expression itself leaves none (a filter, a join, or a rate over fewer than two points)".to_string())
}

/// The one row of a plan whose probes cannot be set up (a missing environment variable).
pub fn setup_failed(message: &str) -> Row {
    Row {
        metric: "-".to_string(),
        source: "-".to_string(),
        query: "-".to_string(),
        baseline_query: None,
        evaluated_at: rfc3339(SystemTime::now()),
        value: None,
        baseline: None,
        verdict: Verdict::Error,
        comparison: None,
        problems: vec![problem("error", message)],
        percent: false,
        answered: false,
    }
}

/// The rows as a table, wrapped to `width` columns.
pub fn render(rows: &[Row], width: u16) -> String {
    let mut table = Table::new();
    table.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
    table.set_content_arrangement(ContentArrangement::Dynamic);
    table.set_width(width);
    table.set_header([
        "Metric",
        "Source",
        "Query (as sent)",
        "Value",
        "Baseline",
        "Verdict",
        "Problems",
    ]);
    for row in rows {
        let shown = |v: Option<f64>| v.map_or("-".to_string(), |v| show_reading(v, row.percent));
        let mut query = row.query.clone();
        if let Some(b) = &row.baseline_query {
            query.push_str(&format!("\nbaseline: {b}"));
        }
        let mut verdict = row.verdict.as_str().to_string();
        if let Some(c) = &row.comparison {
            verdict.push_str(&format!(
                "\n{}",
                c.describe(|v| show_reading(v, row.percent))
            ));
        }
        let problems: Vec<String> = row
            .problems
            .iter()
            .map(|p| format!("{}: {}", p.kind, p.message))
            .collect();
        table.add_row(vec![
            row.metric.clone(),
            row.source.clone(),
            query,
            shown(row.value),
            shown(row.baseline),
            verdict,
            if problems.is_empty() {
                "-".to_string()
            } else {
                problems.join("\n")
            },
        ]);
    }
    format!("{table}\n")
}
