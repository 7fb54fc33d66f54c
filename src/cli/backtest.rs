//! `rollout backtest PLAN --start TIME --end TIME`: the real engine, replayed on a virtual
//! clock over a past window of Prometheus history. The history is fetched first (range queries,
//! batched per metric, at a step every moment of the run falls on); then the engine runs on a
//! paused tokio runtime, where time jumps from one timer to the next, against probes that answer
//! from that history, a backend that only records, no journal and no hooks run.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;

use rollout::approval::{Answer, Approver};
use rollout::backend::{Backend, BackendError, WeightChange};
use rollout::engine::{Engine, Start};
use rollout::event::{Clock, Emitter, Event, NoLedger, Outcome, OutcomeKind, Reporter, Stamped};
use rollout::exec::DryRunExecutor;
use rollout::metrics::history::Replay;
use rollout::metrics::{self, Probe};
use rollout::plan::{Plan, SourceKind};
use rollout::report::evidence::EvidenceCollector;
use rollout::report::json::JsonReporter;
use rollout::report::plain::PlainReporter;
use rollout::report::summary::SummaryCollector;
use rollout::report::text::Verbosity;

use super::args::{BacktestArgs, OutputFormat};
use super::{Exit, load_valid_plan};

/// More range requests than this per query means a replay step far finer than the plan needs.
const MAX_REQUESTS_PER_QUERY: u64 = 200;

pub fn backtest(args: &BacktestArgs, color: bool) -> anyhow::Result<Exit> {
    let Some(plan) = load_valid_plan(&args.plan, color)? else {
        return Ok(Exit::Invalid);
    };
    let now = SystemTime::now();
    let (start, end) = match (parse_time(&args.start, now), parse_time(&args.end, now)) {
        (Ok(start), Ok(end)) if start < end => (start, end),
        (Ok(_), Ok(_)) => return usage("--start must be before --end"),
        (Err(e), _) => return usage(&format!("--start: {e}")),
        (_, Err(e)) => return usage(&format!("--end: {e}")),
    };
    if let Some(refused) = refused_sources(&plan) {
        return usage(&refused);
    }
    let step = replay_step(&plan);
    let reach = history_reach(&plan, step);
    let requests = (end.duration_since(start)? + reach).as_millis()
        / (step.as_millis().max(1) * u128::from(rollout::plan::PROMETHEUS_MAX_POINTS));
    if requests as u64 >= MAX_REQUESTS_PER_QUERY {
        return usage(&format!(
            "the plan's intervals, bakes and windows only line up every {}, which over this window \
             is more than {MAX_REQUESTS_PER_QUERY} range queries per metric: backtest a shorter \
             window, or use durations in whole seconds",
            humantime::format_duration(step)
        ));
    }
    if args.output == OutputFormat::Human && !args.quiet {
        eprintln!(
            "backtest of {} from {} to {}: Prometheus history, replayed at {} steps; nothing is touched",
            plan.name,
            humantime::format_rfc3339_seconds(start),
            humantime::format_rfc3339_seconds(end),
            humantime::format_duration(step)
        );
    }
    let probes = match super::runtime()?.block_on(fetch(&plan, start - reach, end, step)) {
        Ok(probes) => probes,
        Err(e) => {
            eprintln!("error: cannot read the history: {e}; nothing was replayed");
            return Ok(Exit::CouldNotProceed);
        }
    };
    let replay = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()?;
    let outcome = replay.block_on(run(Arc::new(plan), probes, start, end, args));
    Ok(outcome.exit)
}

fn usage(message: &str) -> anyhow::Result<Exit> {
    eprintln!("error: {message}");
    Ok(Exit::Invalid)
}

/// Only Prometheus keeps history to replay: any other source is named and refused.
fn refused_sources(plan: &Plan) -> Option<String> {
    let refused: Vec<String> = plan
        .metrics
        .iter()
        .filter_map(|m| {
            let source = &plan.sources[m.source];
            (!matches!(source.kind, SourceKind::Prometheus { .. })).then(|| {
                format!(
                    "metric `{}` reads source `{}` ({})",
                    m.name,
                    source.name,
                    source.kind.type_name()
                )
            })
        })
        .collect();
    (!refused.is_empty()).then(|| {
        format!(
            "backtest replays Prometheus history only: {}",
            refused.join("; ")
        )
    })
}

/// The step every moment of the replay falls on: each measurement is an interval after a stage
/// starts, and stages start at bakes, measurements and holds, so the greatest common divisor of
/// them all (and of each judged window and step) lines every moment up with a point of history.
fn replay_step(plan: &Plan) -> Duration {
    let mut millis = 0u128;
    let mut add = |d: Duration| millis = gcd(millis, d.as_millis());
    for stage in &plan.stages {
        add(stage.interval);
        add(stage.bake);
        add(stage.max_hold);
    }
    for judge in plan.metrics.iter().filter_map(|m| m.judge.as_ref()) {
        add(judge.window);
        add(judge.step);
    }
    Duration::from_millis(millis.max(1) as u64)
}

fn gcd(a: u128, b: u128) -> u128 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// How far before `--start` the history must reach: the longest judged window.
fn history_reach(plan: &Plan, step: Duration) -> Duration {
    let longest = plan
        .metrics
        .iter()
        .filter_map(|m| m.judge.as_ref().map(|j| j.window))
        .max()
        .unwrap_or_default();
    let steps = longest.as_millis().div_ceil(step.as_millis().max(1));
    Duration::from_millis((steps * step.as_millis()) as u64)
}

async fn fetch(
    plan: &Plan,
    from: SystemTime,
    to: SystemTime,
    step: Duration,
) -> anyhow::Result<Vec<Arc<dyn Probe>>> {
    let client = metrics::http_client()?;
    let redactor = metrics::secrets(plan);
    let mut fetches = Vec::new();
    for metric in &plan.metrics {
        let Some(probe) = metrics::prometheus_probe(plan, metric, &client, &redactor)? else {
            anyhow::bail!("metric `{}` is not on a Prometheus source", metric.name);
        };
        let name = metric.name.to_string();
        fetches.push(async move {
            Replay::fetch(&probe, from, to, step)
                .await
                .map_err(|e| anyhow::anyhow!("metric `{name}`: {e}"))
        });
    }
    let replays = futures_util::future::try_join_all(fetches).await?;
    Ok(replays
        .into_iter()
        .map(|r| Arc::new(r) as Arc<dyn Probe>)
        .collect())
}

async fn run(
    plan: Arc<Plan>,
    probes: Vec<Arc<dyn Probe>>,
    start: SystemTime,
    end: SystemTime,
    args: &BacktestArgs,
) -> Outcome {
    let stages = plan
        .stages
        .iter()
        .map(|s| (s.number, s.weight.percent()))
        .collect();
    let summary = Arc::new(SummaryCollector::new(stages));
    let position = Arc::new(Position::default());
    let evidence = args
        .report
        .as_ref()
        .map(|_| Arc::new(EvidenceCollector::default()));
    let mut reporters: Vec<Arc<dyn Reporter>> = vec![summary.clone(), position.clone()];
    if let Some(evidence) = &evidence {
        reporters.push(evidence.clone());
    }
    reporters.push(screen(args));
    let virtual_time = Clock::starting_at(start);
    let events = Emitter::new(reporters).with_clock(virtual_time);
    let (keep_open, interrupts) = tokio::sync::mpsc::unbounded_channel();
    let engine = Engine {
        plan: plan.clone(),
        backend: Box::new(Recording {
            kind: plan.backend.type_name(),
        }),
        probes,
        exec: Arc::new(DryRunExecutor {
            observer: events.observer(),
        }),
        events: events.clone(),
        ledger: Arc::new(NoLedger),
        approver: Arc::new(Answers {
            deny: args.deny_approvals,
        }),
        interrupts,
        dry_run: false,
        start: Start::Fresh,
        requested_rollback: false,
        // A change window is judged at the replayed moment, not now.
        clock: Arc::new(move || {
            jiff::Timestamp::try_from(virtual_time.now()).unwrap_or(jiff::Timestamp::UNIX_EPOCH)
        }),
    };
    let deadline = tokio::time::Instant::now() + end.duration_since(start).unwrap_or_default();
    let outcome = tokio::select! {
        // A run that decides at the very moment the history ends has decided.
        biased;
        outcome = engine.run() => outcome,
        _ = tokio::time::sleep_until(deadline) => {
            let outcome = position.undecided(end);
            events.emit(Event::Finished(outcome.clone()));
            outcome
        }
    };
    drop(keep_open);
    if args.output == OutputFormat::Human && !args.quiet {
        eprint!("\n{}", summary.render());
    }
    if let (Some(path), Some(evidence)) = (&args.report, &evidence)
        && let Err(e) = evidence.write(path, plan.name.as_str(), &plan.fingerprint)
    {
        eprintln!("error: the evidence report was NOT written: {e}");
    }
    outcome
}

fn screen(args: &BacktestArgs) -> Arc<dyn Reporter> {
    let verbosity = Verbosity::from_flags(args.quiet, args.verbose);
    match args.output {
        OutputFormat::Json => Arc::new(JsonReporter::new(Box::new(std::io::stdout()))),
        OutputFormat::Human => Arc::new(PlainReporter::new(
            Box::new(std::io::stderr()),
            verbosity,
            true,
        )),
    }
}

/// Where the replayed run stood, for a window that ends before it decides.
#[derive(Default)]
struct Position(Mutex<(usize, f64)>);

impl Reporter for Position {
    fn report(&self, event: &Stamped) {
        if let Event::WeightApplied { stage, weight, .. } = event.event {
            *self.0.lock().expect("position lock") = (stage, weight);
        }
    }
}

impl Position {
    fn undecided(&self, end: SystemTime) -> Outcome {
        let (stage, weight) = *self.0.lock().expect("position lock");
        Outcome::new(
            OutcomeKind::Undecided,
            format!(
                "The history ended at {} before the rollout would have decided: it was in stage \
                 {stage} with {weight}% on the new version, still measuring. Backtest a longer \
                 window to see the decision.",
                humantime::format_rfc3339_seconds(end)
            ),
            Some(weight),
        )
    }
}

/// The backend of a backtest: it accepts every change and touches nothing.
struct Recording {
    kind: &'static str,
}

#[async_trait]
impl Backend for Recording {
    fn describe(&self) -> String {
        format!(
            "{} backend, replayed (a backtest touches nothing)",
            self.kind
        )
    }

    async fn preflight(&mut self) -> Result<(), BackendError> {
        Ok(())
    }

    async fn set_weight(&mut self, _: WeightChange) -> Result<(), BackendError> {
        Ok(())
    }

    async fn promote(&mut self) -> Result<(), BackendError> {
        Ok(())
    }

    async fn rollback(&mut self) -> Result<(), BackendError> {
        Ok(())
    }
}

/// Approvals count as given, or as refused with `--deny-approvals`.
struct Answers {
    deny: bool,
}

#[async_trait]
impl Approver for Answers {
    fn how(&self, _: &str, _: usize) -> String {
        if self.deny {
            "refused by --deny-approvals (backtest)".to_string()
        } else {
            "counted as given (backtest; --deny-approvals refuses)".to_string()
        }
    }

    async fn wait(&self, _: usize) -> Answer {
        if self.deny {
            Answer::Rejected {
                by: "--deny-approvals".to_string(),
            }
        } else {
            Answer::Approved {
                by: "backtest".to_string(),
            }
        }
    }
}

/// `now`, a time relative to now (`-6h`, `-1d 12h`), or RFC 3339 (`2026-05-01T12:00:00Z`,
/// `2026-05-01T14:00:00+02:00`).
pub fn parse_time(text: &str, now: SystemTime) -> Result<SystemTime, String> {
    let text = text.trim();
    if text == "now" {
        return Ok(now);
    }
    if let Some(ago) = text.strip_prefix('-') {
        let d = humantime::parse_duration(ago.trim())
            .map_err(|e| format!("`{text}` is not a relative time ({e}); for example: -6h"))?;
        return now
            .checked_sub(d)
            .ok_or_else(|| format!("`{text}` is too far back"));
    }
    let bad = || {
        format!(
            "`{text}` is not a time: use RFC 3339 (2026-05-01T12:00:00Z or \
             2026-05-01T14:00:00+02:00), or a time relative to now such as -6h"
        )
    };
    // humantime reads UTC only: an offset is taken off first.
    let (local, offset) = split_offset(text).ok_or_else(bad)?;
    let t = humantime::parse_rfc3339_weak(local).map_err(|_| bad())?;
    let shifted = if offset >= 0 {
        t.checked_sub(Duration::from_secs(offset as u64))
    } else {
        t.checked_add(Duration::from_secs(offset.unsigned_abs()))
    };
    shifted.ok_or_else(bad)
}

/// `2026-05-01T14:00:00+02:00` is `2026-05-01T14:00:00` and +7200 s; `...Z` is 0.
fn split_offset(text: &str) -> Option<(&str, i64)> {
    if let Some(local) = text.strip_suffix('Z').or_else(|| text.strip_suffix('z')) {
        return Some((local, 0));
    }
    let cut = text.len().checked_sub(6)?;
    let (local, offset) = text.split_at(cut);
    let sign = match offset.as_bytes().first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let (hours, minutes) = offset[1..].split_once(':')?;
    let seconds = hours.parse::<i64>().ok()? * 3600 + minutes.parse::<i64>().ok()? * 60;
    Some((local, sign * seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_absolute_and_relative() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let at = |text: &str| {
            parse_time(text, now).map(|t| humantime::format_rfc3339_seconds(t).to_string())
        };
        assert_eq!(at("now").unwrap(), "2027-01-15T08:00:00Z");
        assert_eq!(at("-6h").unwrap(), "2027-01-15T02:00:00Z");
        assert_eq!(at("-1d 2h").unwrap(), "2027-01-14T06:00:00Z");
        assert_eq!(at("2026-05-01T12:00:00Z").unwrap(), "2026-05-01T12:00:00Z");
        assert_eq!(
            at("2026-05-01T14:30:00+02:30").unwrap(),
            "2026-05-01T12:00:00Z"
        );
        assert_eq!(
            at("2026-05-01T09:00:00-03:00").unwrap(),
            "2026-05-01T12:00:00Z"
        );
        assert!(at("yesterday").unwrap_err().contains("is not a time"));
        assert!(
            at("-6 hours ago")
                .unwrap_err()
                .contains("not a relative time")
        );
    }
}
