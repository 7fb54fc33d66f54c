//! A stage's bake: poll every gating metric at its interval, concurrently, and decide.
//!
//! Each metric is polled by its own task, so one slow source never delays another's verdict.
//! Measurements arrive on a channel; after each one the rules are applied at once, so a breach
//! rolls back without waiting for the rest of the bake or for other metrics' queries.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior, sleep_until};

use super::verdict::{BreachRule, History, Standing, assess, fired, standing};
use super::window::WindowWait;
use super::{Engine, Halt};
use crate::approval::Answer;
use crate::event::{Clock, Comparison, Event, Measurement};
use crate::exec::Action;
use crate::metrics::{Probe, ProbeError, Reading, Taken, Which, take};
use crate::plan::{Metric, MetricMode, Plan, Stage, show_reading};

/// Extra time a whole measurement may take beyond the source's own timeout before the poller
/// gives up on it (the source's client should have given up first).
const MEASURE_GRACE: Duration = Duration::from_secs(1);

type Pending = Pin<Box<dyn Future<Output = Answer> + Send>>;

impl Engine {
    pub(super) async fn bake(&mut self, stage: &Stage) -> Result<(), Halt> {
        let plan = self.plan.clone();
        let metrics: Vec<&Metric> = stage.metrics.iter().map(|&i| &plan.metrics[i]).collect();
        if !stage.bake.is_zero() || !metrics.is_empty() {
            self.events.emit(Event::BakeStarted {
                stage: stage.number,
                bake: stage.bake,
                interval: stage.interval,
                max_hold: stage.max_hold,
                metrics: metrics.iter().map(|m| m.name.to_string()).collect(),
            });
        }
        if self.dry_run {
            self.describe_bake(stage);
            return Ok(());
        }
        let start = Instant::now();
        let bake_end = start + stage.bake;
        let hold_end = bake_end + stage.max_hold;
        let (tx, mut rx) = mpsc::channel::<(usize, Taken)>(64);
        // Dropping the set when the bake ends, for whatever reason, aborts every poller.
        let mut pollers = JoinSet::new();
        for (slot, &index) in stage.metrics.iter().enumerate() {
            let probe = self.probes[index].clone();
            let metric = plan.metrics[index].clone();
            let timeout = plan.sources[metric.source].timeout + MEASURE_GRACE;
            let poller = Poller {
                probe,
                metric,
                interval: stage.interval,
                timeout,
                clock: self.events.clock(),
            };
            pollers.spawn(poller.poll(slot, tx.clone()));
        }
        drop(tx);
        let mut histories = vec![History::default(); metrics.len()];
        let mut bake_done = stage.bake.is_zero();
        let mut approved = !stage.approval;
        let mut pending: Option<Pending> = None;
        let mut last_holding: Vec<String> = Vec::new();
        let stuck_at = self.plan.stuck_after.map(|after| start + after);
        let mut stuck_told = false;
        let mut window = WindowWait::default();
        loop {
            let mut ready = false;
            if bake_done {
                let reasons = holding_reasons(&metrics, &histories);
                if reasons.is_empty() {
                    if approved {
                        ready = true;
                    } else if pending.is_none() {
                        pending = Some(self.ask_approval(stage).await);
                    }
                } else if reasons != last_holding {
                    self.events.emit(Event::Holding {
                        stage: stage.number,
                        reasons: reasons.clone(),
                    });
                    last_holding = reasons;
                }
            }
            // Outside the change window a ready stage holds; the wait moves its deadlines.
            if !ready {
                window.end();
            } else if self.may_advance(stage, &mut window) {
                return Ok(());
            }
            let paused = window.paused();
            tokio::select! {
                // In order: evidence that arrives at the same moment as the bake's end is
                // judged first, so a replay on a virtual clock decides the same way every time.
                biased;
                Some((slot, taken)) = rx.recv() => {
                    let metric = metrics[slot];
                    let (verdict, comparison) = assess(metric, &taken.reading);
                    histories[slot].record(verdict);
                    let m = measurement(&plan, stage.number, metric, &taken, verdict, comparison, &histories[slot]);
                    self.events.emit(Event::Measured(m.clone()));
                    if standing(metric, &histories[slot]) == Standing::Breached {
                        return Err(Halt::Rollback(breach_reason(stage, metric, &m, &histories[slot])));
                    }
                }
                _ = sleep_until(bake_end), if !bake_done => bake_done = true,
                _ = sleep_until(hold_end + paused), if !window.waiting() => {
                    return Err(Halt::by(stage.on_timeout, timeout_reason(stage, &last_holding, approved)));
                }
                _ = sleep_until(stuck_at.unwrap_or(hold_end) + paused), if stuck_at.is_some() && !stuck_told && !window.waiting() => {
                    stuck_told = true;
                    self.stuck(stage, stuck_reasons(bake_done, approved, &metrics, &histories));
                }
                _ = window.nap(), if window.waiting() => {}
                answer = async { pending.as_mut().expect("guarded").await }, if pending.is_some() => {
                    pending = None;
                    match answer {
                        Answer::Approved { by } => {
                            self.record_result(Event::Approved { stage: stage.number, by }).await;
                            approved = true;
                        }
                        Answer::Rejected { by } => {
                            return Err(Halt::Rollback(format!("{by} refused to approve stage {} ({})", stage.number, stage.weight)));
                        }
                    }
                }
                Some(signal) = self.interrupts.recv() => return Err(self.interrupted(&signal)),
                why = self.ledger.lost() => return Err(Halt::Lost(why)),
            }
        }
    }

    async fn ask_approval(&self, stage: &Stage) -> Pending {
        self.record_result(Event::AwaitingApproval {
            stage: stage.number,
            how: self.approver.how(self.plan.name.as_str(), stage.number),
        })
        .await;
        let approver = self.approver.clone();
        let number = stage.number;
        Box::pin(async move { approver.wait(number).await })
    }

    /// A dry run skips the waits and queries, and says what they would have been.
    fn describe_bake(&self, stage: &Stage) {
        let wait = |what: String| {
            self.events.emit(Event::Action {
                stage: Some(stage.number),
                dry_run: true,
                action: Action::Wait { what },
            })
        };
        for &index in &stage.metrics {
            let metric = &self.plan.metrics[index];
            let probe = &self.probes[index];
            let mut what = format!(
                "measure {} every {}: {}",
                metric.name,
                humantime::format_duration(stage.interval),
                probe.describe(Which::Value)
            );
            if metric.query.has_baseline() {
                what.push_str(&format!("; baseline: {}", probe.describe(Which::Baseline)));
            }
            wait(what);
        }
        if !stage.metrics.is_empty() {
            wait(format!(
                "bake {} (up to {} more if the gates do not pass yet, then on_timeout = \"{}\")",
                humantime::format_duration(stage.bake),
                humantime::format_duration(stage.max_hold),
                stage.on_timeout
            ));
        } else if !stage.bake.is_zero() {
            wait(format!("bake {}", humantime::format_duration(stage.bake)));
        }
        if stage.approval {
            wait(format!(
                "wait for approval before leaving stage {}: {}",
                stage.number,
                self.approver.how(self.plan.name.as_str(), stage.number)
            ));
        }
    }
}

/// One metric's poller.
struct Poller {
    probe: Arc<dyn Probe>,
    metric: Metric,
    interval: Duration,
    timeout: Duration,
    clock: Clock,
}

impl Poller {
    /// Polls forever: the first reading one interval after the weight is applied (the new
    /// version needs traffic before it can be measured), then one per interval.
    async fn poll(self, slot: usize, tx: mpsc::Sender<(usize, Taken)>) {
        let mut ticker = tokio::time::interval_at(Instant::now() + self.interval, self.interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let at = self.clock.now();
            let taken = tokio::time::timeout(self.timeout, take(&*self.probe, &self.metric, at))
                .await
                .unwrap_or_else(|_| {
                    let late = ProbeError::Timeout(self.timeout).to_string();
                    Taken::new(&*self.probe, &self.metric, at, Reading::Error(late))
                });
            if tx.send((slot, taken)).await.is_err() {
                return;
            }
        }
    }
}

fn measurement(
    plan: &Plan,
    stage: usize,
    metric: &Metric,
    taken: &Taken,
    verdict: crate::event::Verdict,
    comparison: Option<Comparison>,
    history: &History,
) -> Measurement {
    let (value, baseline, detail) = match &taken.reading {
        Reading::Value { value, baseline } => (Some(*value), *baseline, None),
        Reading::Samples { .. } => {
            let c = comparison.as_ref();
            (
                c.and_then(|c| c.canary_median),
                c.and_then(|c| c.baseline_median),
                c.and_then(super::judge::too_few),
            )
        }
        Reading::NoData(detail) => (
            None,
            None,
            Some(
                detail
                    .clone()
                    .unwrap_or_else(|| "the source returned no value".to_string()),
            ),
        ),
        Reading::Error(e) => (None, None, Some(e.clone())),
    };
    Measurement {
        stage,
        metric: metric.name.to_string(),
        value,
        baseline,
        verdict,
        detail,
        breach_streak: history.breach_streak(),
        warn_only: metric.mode == MetricMode::Warn,
        shown_as_percent: metric.in_percent(),
        source: plan.sources[metric.source].name.to_string(),
        query: taken.query.clone(),
        baseline_query: taken.baseline_query.clone(),
        evaluated_at: taken.at,
        breaches: history.breaches(),
        comparison: comparison.map(Box::new),
    }
}

fn holding_reasons(metrics: &[&Metric], histories: &[History]) -> Vec<String> {
    metrics
        .iter()
        .zip(histories)
        .filter_map(|(metric, history)| match standing(metric, history) {
            Standing::Holding(why) => Some(format!("{}: {why}", metric.name)),
            _ => None,
        })
        .collect()
}

/// Why a stage is still where it is, for `stuck`.
fn stuck_reasons(
    bake_done: bool,
    approved: bool,
    metrics: &[&Metric],
    histories: &[History],
) -> Vec<String> {
    if !bake_done {
        return vec!["its bake is not over yet".to_string()];
    }
    let holding = holding_reasons(metrics, histories);
    match (holding.is_empty(), approved) {
        (false, _) => holding,
        (true, false) => vec!["waiting for approval".to_string()],
        (true, true) => vec!["waiting for the change window".to_string()],
    }
}

/// The decision in one sentence: the metric, its values, the rule that fired, the stage.
fn breach_reason(stage: &Stage, metric: &Metric, m: &Measurement, history: &History) -> String {
    let show = |v: f64| show_reading(v, metric.in_percent());
    let what = match (&m.comparison, m.value, m.baseline) {
        (Some(c), _, _) if m.verdict == crate::event::Verdict::Breach && c.worse => {
            format!("had a {}", c.describe(show))
        }
        (_, Some(v), Some(b)) if m.comparison.is_none() => {
            format!("was {} against a baseline of {}", show(v), show(b))
        }
        (_, Some(v), _) if m.comparison.is_none() => format!("was {}", show(v)),
        _ => "had no data (on_no_data = \"fail\")".to_string(),
    };
    let condition = match (&metric.judge, &metric.rollback) {
        (Some(judge), _) => format!(" ({})", super::judge::rule(judge)),
        (None, Some(c)) => format!(" (rollback when {c})"),
        (None, None) => String::new(),
    };
    let rule = match fired(metric, history) {
        Some(BreachRule::Budget) => format!(
            ", its breach number {} in this stage (max_breaches = {})",
            history.breaches(),
            metric.max_breaches
        ),
        Some(BreachRule::Streak) if metric.rollback_after > 1 => {
            format!(", {} breaches in a row", history.breach_streak())
        }
        _ => String::new(),
    };
    format!(
        "metric {} {what}{condition}{rule} in stage {} at {}",
        metric.name, stage.number, stage.weight
    )
}

fn timeout_reason(stage: &Stage, holding: &[String], approved: bool) -> String {
    let why = if !holding.is_empty() {
        holding.join("; ")
    } else if !approved {
        "no approval arrived".to_string()
    } else {
        "the gates did not pass".to_string()
    };
    format!(
        "stage {} at {} could not pass within max_hold ({} after its bake): {why}",
        stage.number,
        stage.weight,
        humantime::format_duration(stage.max_hold)
    )
}
