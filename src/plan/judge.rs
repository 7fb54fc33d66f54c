//! Plan 1.1 metric fields: `judge = "mann-whitney"` with its `window`, `step`, `direction`,
//! `confidence`, `tolerance` and `min_points`, and the per-stage breach budget `max_breaches`.
//! Read here and checked here, so that the shared reader and validator only call in.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::diagnostic::Diagnostic;
use super::raw::{RawMetric, SourceType};
use super::reader::{At, Cx, Field, Table, join};

/// How a judged metric compares the canary's samples with the baseline's.
#[derive(Debug, Clone, PartialEq)]
pub struct Judge {
    /// How far back each measurement looks.
    pub window: Duration,
    /// The resolution of the samples (Prometheus: the range query's step).
    pub step: Duration,
    pub direction: Direction,
    /// How sure the test must be that the canary is worse before it counts as a breach.
    pub confidence: f64,
    /// The relative difference of the medians that is tolerated (0.25: 25% worse is fine).
    pub tolerance: f64,
    /// Fewer samples than this on either side is no data.
    pub min_points: u32,
}

impl Judge {
    pub const DEFAULT_WINDOW: Duration = Duration::from_secs(5 * 60);
    pub const DEFAULT_STEP: Duration = Duration::from_secs(15);
    pub const DEFAULT_CONFIDENCE: f64 = 0.98;
    pub const DEFAULT_TOLERANCE: f64 = 0.25;
    pub const DEFAULT_MIN_POINTS: u32 = 10;
}

/// Which way the canary's values are worse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Higher is worse (latency, errors).
    Increase,
    /// Lower is worse (throughput, conversions).
    Decrease,
    /// Any difference is worse.
    Either,
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Direction::Increase => "increase",
            Direction::Decrease => "decrease",
            Direction::Either => "either",
        })
    }
}

/// Prometheus refuses a range query of more points than this per series.
pub const PROMETHEUS_MAX_POINTS: u64 = 11_000;

/// The default breach budget: 3, or one more than `rollback_after` when that is larger, so that
/// the budget never fires before a streak of the default length could.
pub fn default_max_breaches(rollback_after: u32) -> u32 {
    3.max(rollback_after.saturating_add(1))
}

/// The judge's fields as written, each located.
#[derive(Debug, Default)]
pub struct RawJudge {
    /// Whether `judge` is written at all, valid or not.
    pub written: bool,
    /// `judge = "mann-whitney"`: where.
    pub judge: Option<At<()>>,
    pub window: Option<At<Duration>>,
    pub step: Option<At<Duration>>,
    pub direction: Option<At<Direction>>,
    pub confidence: Option<At<f64>>,
    pub tolerance: Option<At<f64>>,
    pub min_points: Option<At<u32>>,
    pub max_breaches: Option<At<u32>>,
}

fn at<T>(f: &Field<'_, '_>, v: Option<T>) -> Option<At<T>> {
    v.map(|v| At::new(v, f.span()))
}

/// Reads the judge's fields and `max_breaches` from a metric's table.
pub fn read(table: &Table<'_, '_>) -> RawJudge {
    let field = |key: &'static str| table.field(key).map(|f| f.get());
    let duration = |key: &'static str| field(key).and_then(|f| at(&f, f.positive_duration()));
    RawJudge {
        written: table.peek("judge").is_some(),
        judge: field("judge").and_then(|f| at(&f, f.choice(&[("mann-whitney", ())]))),
        window: duration("window"),
        step: duration("step"),
        direction: field("direction").and_then(|f| {
            let d = f.choice(&[
                ("increase", Direction::Increase),
                ("decrease", Direction::Decrease),
                ("either", Direction::Either),
            ]);
            at(&f, d)
        }),
        confidence: field("confidence").and_then(|f| at(&f, confidence(&f))),
        tolerance: field("tolerance").and_then(|f| at(&f, tolerance(&f))),
        min_points: field("min_points").and_then(|f| at(&f, f.count(2, "min_points = 10"))),
        max_breaches: field("max_breaches").and_then(|f| at(&f, f.count(0, "max_breaches = 3"))),
    }
}

fn confidence(f: &Field<'_, '_>) -> Option<f64> {
    let n = f.number("confidence = 0.98")?;
    if n > 0.0 && n < 1.0 {
        return Some(n);
    }
    f.cx.push(
        f.error(format!("{n} is not a confidence between 0 and 1"))
            .label("out of range")
            .help("a confidence is a probability above 0 and below 1: 0.98 means 98% sure"),
    );
    None
}

fn tolerance(f: &Field<'_, '_>) -> Option<f64> {
    let n = f.number("tolerance = 0.25")?;
    if n >= 0.0 {
        return Some(n);
    }
    f.cx.push(
        f.error(format!("a tolerance cannot be negative, found {n}"))
            .label("negative")
            .help("the tolerance is the relative difference of the medians that is accepted: 0.25 tolerates 25% worse"),
    );
    None
}

/// Checks the judge against the rest of the metric. `Err(())` when it is invalid (reported);
/// `Ok(None)` for a metric without a judge.
pub fn check(
    cx: &Cx,
    m: &RawMetric,
    source_type: Option<SourceType>,
    has_baseline: bool,
) -> Result<Option<Judge>, ()> {
    let raw = &m.judge;
    check_max_breaches(cx, m);
    let Some(judge_at) = &raw.judge else {
        return if raw.written {
            Err(())
        } else {
            refuse_unjudged_fields(cx, m)
        };
    };
    let mut ok = true;
    for (key, cond) in [("advance", &m.advance), ("rollback", &m.rollback)] {
        if let Some(cond) = cond {
            ok = false;
            cx.push(
                Diagnostic::error(join(&m.path, key), cond.span.clone(), format!("`{key}` cannot be combined with `judge`"))
                    .label("the judge decides this metric")
                    .help("a judged metric compares the canary's samples with the baseline's; remove `advance` and `rollback`, or remove `judge`"),
            );
        }
    }
    if let Some(reduce) = &m.reduce {
        ok = false;
        cx.push(
            Diagnostic::error(
                join(&m.path, "reduce"),
                reduce.span.clone(),
                "`reduce` does not apply to a judged metric",
            )
            .label("every series is compared")
            .help("a judged metric compares the samples of all series of both queries; remove `reduce`"),
        );
    }
    if !has_baseline && source_type.is_some() {
        ok = false;
        let (key, example) = match source_type {
            Some(SourceType::HttpJson) => {
                ("baseline_path", "baseline_path = \"/stable/latency_ms\"")
            }
            Some(SourceType::Command) => {
                ("baseline_run", "baseline_run = [\"./stable-latency.sh\"]")
            }
            _ => (
                "baseline",
                "baseline = 'rate(latency_sum{track=\"stable\"}[1m]) / rate(latency_count{track=\"stable\"}[1m])'",
            ),
        };
        cx.push(
            Diagnostic::error(
                join(&m.path, "judge"),
                judge_at.span.clone(),
                format!("a judged metric needs `{key}` to compare with"),
            )
            .label("nothing to compare the canary with")
            .help(format!(
                "add the stable version's samples, for example: {example}"
            )),
        );
    }
    let judge = Judge {
        window: raw
            .window
            .as_ref()
            .map_or(Judge::DEFAULT_WINDOW, |w| w.value),
        step: raw.step.as_ref().map_or(Judge::DEFAULT_STEP, |s| s.value),
        direction: raw
            .direction
            .as_ref()
            .map_or(Direction::Increase, |d| d.value),
        confidence: raw
            .confidence
            .as_ref()
            .map_or(Judge::DEFAULT_CONFIDENCE, |c| c.value),
        tolerance: raw
            .tolerance
            .as_ref()
            .map_or(Judge::DEFAULT_TOLERANCE, |t| t.value),
        min_points: raw
            .min_points
            .as_ref()
            .map_or(Judge::DEFAULT_MIN_POINTS, |n| n.value),
    };
    ok &= check_resolution(cx, m, &judge, source_type);
    if ok { Ok(Some(judge)) } else { Err(()) }
}

/// The step must fit in the window, and Prometheus answers a limited number of points.
fn check_resolution(
    cx: &Cx,
    m: &RawMetric,
    judge: &Judge,
    source_type: Option<SourceType>,
) -> bool {
    let raw = &m.judge;
    let span = raw.step.as_ref().or(raw.window.as_ref()).map_or_else(
        || {
            raw.judge
                .as_ref()
                .map_or(m.header.clone(), |j| j.span.clone())
        },
        |a| a.span.clone(),
    );
    let show = |d: Duration| humantime::format_duration(d).to_string();
    if judge.step > judge.window {
        cx.push(
            Diagnostic::error(
                join(&m.path, "step"),
                span,
                format!(
                    "the step ({}) is longer than the window ({})",
                    show(judge.step),
                    show(judge.window)
                ),
            )
            .label("the window would hold at most one sample")
            .help(
                "make the step a small part of the window, e.g. window = \"5m\" and step = \"15s\"",
            ),
        );
        return false;
    }
    let points = judge.window.as_nanos() / judge.step.as_nanos().max(1);
    if source_type == Some(SourceType::Prometheus) && points > u128::from(PROMETHEUS_MAX_POINTS) {
        cx.push(
            Diagnostic::error(
                join(&m.path, "step"),
                span,
                format!("the window holds {points} steps; Prometheus answers at most {PROMETHEUS_MAX_POINTS} points per series"),
            )
            .label("too many points")
            .help("use a longer step or a shorter window"),
        );
        return false;
    }
    true
}

/// The judge's own fields mean nothing without `judge`.
fn refuse_unjudged_fields(cx: &Cx, m: &RawMetric) -> Result<Option<Judge>, ()> {
    let raw = &m.judge;
    let written = [
        ("window", raw.window.as_ref().map(|a| a.span.clone())),
        ("step", raw.step.as_ref().map(|a| a.span.clone())),
        ("direction", raw.direction.as_ref().map(|a| a.span.clone())),
        (
            "confidence",
            raw.confidence.as_ref().map(|a| a.span.clone()),
        ),
        ("tolerance", raw.tolerance.as_ref().map(|a| a.span.clone())),
        (
            "min_points",
            raw.min_points.as_ref().map(|a| a.span.clone()),
        ),
    ];
    let mut ok = true;
    for (key, span) in written {
        let Some(span) = span else { continue };
        ok = false;
        cx.push(
            Diagnostic::error(join(&m.path, key), span, format!("`{key}` applies only to a judged metric"))
                .label("the metric has no `judge`")
                .help("add judge = \"mann-whitney\" to compare the canary's samples with the baseline's, or remove it"),
        );
    }
    if ok { Ok(None) } else { Err(()) }
}

/// A budget below `rollback_after` makes the streak rule dead weight: say so.
fn check_max_breaches(cx: &Cx, m: &RawMetric) {
    let (Some(budget), Some(after)) = (&m.judge.max_breaches, m.rollback_after) else {
        return;
    };
    if budget.value != 0 && budget.value < after {
        cx.push(
            Diagnostic::warning(
                join(&m.path, "max_breaches"),
                budget.span.clone(),
                format!(
                    "max_breaches ({}) is below rollback_after ({after}): {} breaches in a stage roll back, in a row or not",
                    budget.value, budget.value
                ),
            )
            .label("rollback_after never decides")
            .help(format!(
                "raise max_breaches to {after} or more, or set max_breaches = 0 to count only breaches in a row"
            )),
        );
    }
}

/// The budget in force: as written, or the default.
pub fn max_breaches(m: &RawMetric) -> u32 {
    m.judge.max_breaches.as_ref().map_or_else(
        || default_max_breaches(m.rollback_after.unwrap_or(1)),
        |b| b.value,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_budget_stays_above_the_streak() {
        assert_eq!(default_max_breaches(1), 3);
        assert_eq!(default_max_breaches(2), 3);
        assert_eq!(default_max_breaches(3), 4);
        assert_eq!(default_max_breaches(10), 11);
        assert_eq!(default_max_breaches(u32::MAX), u32::MAX);
    }
}
