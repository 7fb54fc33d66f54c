//! What the engine tells the world. The engine never prints: it emits these, and reporters
//! render them (progress bars, plain lines, JSON). The JSON form is a documented, stable schema
//! (docs/events.md): fields are only ever added.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::exec::{Action, Observer, Report};
use crate::exit::Exit;
use crate::plan::Audience;

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OutcomeKind {
    Promoted,
    /// Could not proceed (backend or I/O error); traffic was returned to stable where possible.
    Failed,
    RolledBack,
    Paused,
    /// The rollback itself failed: traffic is in an unknown state.
    RollbackFailed,
    /// `rollout backtest` only: the history ended before the run would have decided; traffic
    /// would still have been at the weight given.
    Undecided,
}

impl OutcomeKind {
    /// The exit code the plan contract gives a run (`run`, `resume`) that ends this way.
    pub fn exit(self) -> Exit {
        match self {
            OutcomeKind::Promoted => Exit::Success,
            OutcomeKind::Failed => Exit::CouldNotProceed,
            OutcomeKind::RolledBack => Exit::RolledBack,
            OutcomeKind::Paused => Exit::Paused,
            OutcomeKind::RollbackFailed => Exit::RollbackFailed,
            OutcomeKind::Undecided => Exit::Paused,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outcome {
    pub kind: OutcomeKind,
    /// One sentence a person understands: what happened and why.
    pub reason: String,
    /// Traffic on the new version when the run ended, in percent; `None` when unknown.
    pub weight: Option<f64>,
    /// The process's exit code: the run's by `kind`, except that a rollback asked for with
    /// `rollout rollback` that succeeded is a success.
    #[serde(rename = "exit_code")]
    pub exit: Exit,
}

impl Outcome {
    pub fn new(kind: OutcomeKind, reason: String, weight: Option<f64>) -> Outcome {
        Outcome {
            kind,
            reason,
            weight,
            exit: kind.exit(),
        }
    }
}

/// The verdict of one measurement, after the metric's `on_no_data` policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    Pass,
    Breach,
    Gray,
    NoData,
    Error,
}

impl Verdict {
    /// Pass, gray and breach are valid evidence; no data and errors are not.
    pub fn is_valid(self) -> bool {
        matches!(self, Verdict::Pass | Verdict::Gray | Verdict::Breach)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Breach => "breach",
            Verdict::Gray => "gray",
            Verdict::NoData => "no data",
            Verdict::Error => "error",
        }
    }
}

/// A judged measurement (`judge = "mann-whitney"`): the canary's samples against the
/// baseline's, and what the test said.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// `mann-whitney`.
    pub test: String,
    /// Which way is worse: `increase`, `decrease` or `either`.
    pub direction: crate::plan::Direction,
    pub canary_points: usize,
    pub baseline_points: usize,
    pub canary_median: Option<f64>,
    pub baseline_median: Option<f64>,
    /// How much worse the canary's median is than the baseline's, relative to it, in
    /// `direction` (0.4: 40% worse; negative: better); null when the baseline's median is 0
    /// and the canary's is not.
    pub relative_difference: Option<f64>,
    /// The canary's U statistic.
    pub statistic: Option<f64>,
    pub p_value: Option<f64>,
    /// `exact` or `asymptotic` (the normal approximation with tie correction).
    pub method: Option<String>,
    /// Worse by more than `tolerance`.
    pub worse: bool,
    /// The test is sure at `confidence` that the canary is worse in `direction`.
    pub significant: bool,
    pub confidence: f64,
    pub tolerance: f64,
    pub min_points: u32,
}

impl Comparison {
    /// The comparison in words: "median 0.07 against the baseline's 0.05 (40% higher,
    /// p = 3.1e-5; 20 and 20 samples)".
    pub fn describe(&self, show: impl Fn(f64) -> String) -> String {
        use crate::plan::Direction;
        let median = |m: Option<f64>| m.map_or("none".to_string(), &show);
        let (worse, better) = match self.direction {
            Direction::Increase => ("higher", "lower"),
            Direction::Decrease => ("lower", "higher"),
            Direction::Either => ("apart", "apart"),
        };
        let percent = |f: f64| crate::plan::show_number((f * 100.0).round());
        let difference = match (
            self.relative_difference,
            self.canary_median,
            self.baseline_median,
        ) {
            (Some(d), _, _) if d >= 0.0 => format!("{}% {worse}", percent(d)),
            (Some(d), _, _) => format!("{}% {better}", percent(-d)),
            (None, Some(_), Some(_)) => format!("{worse}, against a median of 0"),
            _ => "nothing to compare".to_string(),
        };
        let p = self.p_value.map_or_else(
            || "no p-value".to_string(),
            |p| format!("p = {}", show_p(p)),
        );
        format!(
            "median {} against the baseline's {} ({difference}, {p}; {} and {} samples)",
            median(self.canary_median),
            median(self.baseline_median),
            self.canary_points,
            self.baseline_points
        )
    }
}

/// A p-value as people read it: 0.0132, or 3.1e-8 when tiny.
pub fn show_p(p: f64) -> String {
    if p != 0.0 && p < 0.001 {
        format!("{p:.1e}")
    } else {
        crate::plan::show_number(p)
    }
}

/// One measurement of one metric, as reported and kept as evidence.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Measurement {
    pub stage: usize,
    pub metric: String,
    pub value: Option<f64>,
    pub baseline: Option<f64>,
    pub verdict: Verdict,
    /// Why there is no value: the source's error, or what "no data" meant here.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    pub breach_streak: u32,
    /// Whether this metric only warns (mode = "warn").
    pub warn_only: bool,
    /// Whether its conditions are written in percent (`> 5%`): people are shown `value` and
    /// `baseline` times 100 with a `%` (the numbers here stay fractions).
    pub shown_as_percent: bool,
    /// The metric's source, by name.
    pub source: String,
    /// The request as sent (`${VAR}`s unresolved, secrets redacted).
    pub query: String,
    /// The baseline's request, when the metric has a baseline.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline_query: Option<String>,
    /// The moment the source evaluated the query at.
    #[serde(with = "rfc3339")]
    pub evaluated_at: SystemTime,
    /// Breaches of this metric in this stage so far, in a row or not (`max_breaches`).
    pub breaches: u32,
    /// A judged metric's comparison; `value` and `baseline` are then the medians.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comparison: Option<Box<Comparison>>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum Event {
    Started {
        name: String,
        strategy: String,
        backend: String,
        stages: usize,
        dry_run: bool,
    },
    /// What the backend needs kept to undo the run later (see `Backend::saved_state`).
    BackendState {
        state: serde_json::Value,
    },
    StageStarted {
        stage: usize,
        stages: usize,
        weight: f64,
        previous_weight: f64,
    },
    WeightApplied {
        stage: usize,
        weight: f64,
        /// What the weight is a share of: requests, or users of a feature flag.
        audience: Audience,
    },
    /// Segments that get the new version in this stage whatever the weight (its own and
    /// every earlier stage's), once the backend has applied them.
    SegmentsApplied {
        stage: usize,
        segments: Vec<String>,
    },
    /// The share of requests copied to the new version in this stage (their answers
    /// discarded), once the backend has applied it.
    MirrorApplied {
        stage: usize,
        percent: f64,
    },
    /// A backend action or a hook: done, or in a dry run, what would be done.
    Action {
        #[serde(skip_serializing_if = "Option::is_none")]
        stage: Option<usize>,
        dry_run: bool,
        #[serde(flatten)]
        action: Action,
    },
    HookFinished {
        #[serde(skip_serializing_if = "Option::is_none")]
        stage: Option<usize>,
        argv: Vec<String>,
        ok: bool,
        detail: String,
    },
    BakeStarted {
        stage: usize,
        #[serde(with = "secs")]
        bake: Duration,
        #[serde(with = "secs")]
        interval: Duration,
        #[serde(with = "secs")]
        max_hold: Duration,
        metrics: Vec<String>,
    },
    Measured(Measurement),
    /// The bake is over but the stage cannot advance yet.
    Holding {
        stage: usize,
        reasons: Vec<String>,
    },
    /// The stage has not advanced `stuck_after` into its bake (said once per stage).
    Stuck {
        stage: usize,
        weight: f64,
        #[serde(with = "secs")]
        after: Duration,
        reasons: Vec<String>,
    },
    /// Ready to start (`stage` 0) or to advance, but the change window is closed: the run
    /// holds at `weight`, still measuring, until it opens.
    WindowClosed {
        stage: usize,
        weight: f64,
        /// The window, in words: `mon,tue 09:00-16:00 Europe/Berlin`.
        window: String,
        /// When it next opens (RFC 3339, UTC); `null` when not within a year.
        opens_at: Option<String>,
        /// The same, as people in the window's zone read it.
        opens: String,
    },
    AwaitingApproval {
        stage: usize,
        how: String,
    },
    Approved {
        stage: usize,
        by: String,
    },
    StagePassed {
        stage: usize,
        weight: f64,
        #[serde(with = "secs")]
        elapsed: Duration,
    },
    Interrupted {
        signal: String,
        action: String,
    },
    RollingBack {
        reason: String,
    },
    Warning {
        message: String,
    },
    /// A command's process group began (a backend command or a hook): journaled, so that a
    /// later process can stop what a dead one left running before it acts.
    ChildStarted {
        group: crate::exec::children::ChildGroup,
    },
    /// That process group's command finished (or was killed at its timeout).
    ChildEnded {
        pgid: u32,
    },
    Finished(Outcome),
}

impl From<Report> for Event {
    fn from(report: Report) -> Event {
        match report {
            Report::Action { dry_run, action } => Event::Action {
                stage: None,
                dry_run,
                action,
            },
            Report::ChildStarted(group) => Event::ChildStarted { group },
            Report::ChildEnded { pgid } => Event::ChildEnded { pgid },
        }
    }
}

/// Durations in JSON events are seconds, as a number.
mod secs {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }
}

/// An event with when it happened.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stamped {
    #[serde(with = "rfc3339")]
    pub time: SystemTime,
    #[serde(flatten)]
    pub event: Event,
}

mod rfc3339 {
    use std::time::SystemTime;

    pub fn serialize<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_rfc3339_millis(*t))
    }
}

/// Anything that renders events: a terminal, a log, a JSON stream, an evidence file.
pub trait Reporter: Send + Sync {
    fn report(&self, event: &Stamped);
}

impl Stamped {
    pub fn now(event: Event) -> Stamped {
        Stamped {
            time: SystemTime::now(),
            event,
        }
    }
}

/// Where event times (and a measurement's moment) come from: the system clock, or a backtest's
/// virtual clock, which starts at a past moment and runs with tokio's (paused) time.
#[derive(Debug, Clone, Copy, Default)]
pub enum Clock {
    #[default]
    System,
    Virtual {
        origin: SystemTime,
        started: tokio::time::Instant,
    },
}

impl Clock {
    /// A virtual clock that reads `origin` now.
    pub fn starting_at(origin: SystemTime) -> Clock {
        Clock::Virtual {
            origin,
            started: tokio::time::Instant::now(),
        }
    }

    pub fn now(&self) -> SystemTime {
        match self {
            Clock::System => SystemTime::now(),
            Clock::Virtual { origin, started } => *origin + started.elapsed(),
        }
    }
}

/// Why a step could not be put on record.
#[derive(Debug, Clone, Error, PartialEq)]
pub enum LedgerError {
    /// The record could not be written (a full disk, a damaged state folder, a store that
    /// does not answer, ...).
    #[error("the journal cannot be written: {0}")]
    Unwritable(String),
    /// This process no longer holds the rollout (another took it over, or its lease ran out):
    /// it must not act at all any more.
    #[error("{0}")]
    Lost(String),
}

/// Where the engine puts each step of a rollout on record, durably, before it acts on it (an
/// intent: starting, a stage's new weight, a rollback) and as soon as it is done (a result). A
/// step whose intent cannot be recorded is not taken: after a crash, the record must never
/// claim less than what was done.
#[async_trait]
pub trait Ledger: Send + Sync {
    async fn record(&self, event: &Stamped) -> Result<(), LedgerError>;

    /// After `attempt` failed writes: how long to wait before trying again, or `None` to
    /// give up on the step.
    fn retry_after(&self, attempt: u32) -> Option<std::time::Duration> {
        (attempt < 3).then(|| std::time::Duration::from_millis(500) * attempt)
    }

    /// Resolves, with why, once this process has lost the rollout to another.
    async fn lost(&self) -> String {
        std::future::pending().await
    }
}

/// Keeps no record: dry runs, and engines under test that do not look at one.
pub struct NoLedger;

#[async_trait]
impl Ledger for NoLedger {
    async fn record(&self, _event: &Stamped) -> Result<(), LedgerError> {
        Ok(())
    }
}

/// Hands each event, stamped with the time, to every reporter.
#[derive(Clone, Default)]
pub struct Emitter {
    reporters: Vec<Arc<dyn Reporter>>,
    clock: Clock,
}

impl Emitter {
    pub fn new(reporters: Vec<Arc<dyn Reporter>>) -> Self {
        Emitter {
            reporters,
            clock: Clock::System,
        }
    }

    /// The same reporters, with times from `clock`.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    pub fn clock(&self) -> Clock {
        self.clock
    }

    /// The event with the time by this emitter's clock.
    pub fn stamp(&self, event: Event) -> Stamped {
        Stamped {
            time: self.clock.now(),
            event,
        }
    }

    pub fn emit(&self, event: Event) {
        self.emit_stamped(&self.stamp(event));
    }

    pub fn emit_stamped(&self, stamped: &Stamped) {
        for reporter in &self.reporters {
            reporter.report(stamped);
        }
    }

    /// What an executor reports, emitted as events.
    pub fn observer(&self) -> Observer {
        let events = self.clone();
        std::sync::Arc::new(move |report| events.emit(Event::from(report)))
    }
}
