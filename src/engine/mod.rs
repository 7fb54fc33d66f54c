//! The rollout engine: a state machine over the plan's stages.
//!
//! For each stage it applies the weight through the backend (which confirms it), runs the
//! stage's hooks, then bakes while polling the gating metrics, and advances only on enough
//! valid, passing evidence. A breach rolls back at once; a stage that cannot conclude within
//! `max_hold` does what `on_timeout` says; an interrupt does what `on_interrupt` says.
//! The engine never prints: it emits events.

mod bake;
mod hooks;
pub mod judge;
pub mod mann_whitney;
pub mod verdict;
mod window;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::approval::Approver;
use crate::backend::{Backend, BackendError, Executor, Recovery, WeightChange};
use crate::event::{Emitter, Event, Ledger, LedgerError, Outcome, OutcomeKind};
use crate::metrics::Probe;
use crate::plan::{Audience, HaltAction, HookEvent, Plan, Stage, Weight};

pub use window::{Clock, system_clock};

/// How many times a rollback is tried before the run gives up and says traffic is unknown.
const ROLLBACK_ATTEMPTS: u32 = 3;
const ROLLBACK_PAUSE: Duration = Duration::from_secs(2);

fn change_at(stage: usize, weight: Weight, previous: Weight) -> WeightChange {
    WeightChange {
        stage,
        weight,
        previous,
        segments: crate::plan::SegmentSet::EMPTY,
        mirror: None,
    }
}

/// Why a run stops short of promotion.
#[derive(Debug, Clone, PartialEq)]
enum Halt {
    /// Return traffic to stable: a breach, a failed hook, a refused approval, ...
    Rollback(String),
    /// Leave traffic where it is, deliberately.
    Pause(String),
    /// Something broke (backend or I/O): return traffic to stable, then report a failure.
    Failure(String),
    /// Another process holds the rollout now: touch nothing more.
    Lost(String),
}

impl Halt {
    /// A stage's weight could not be set: the new version failing to become ready is the
    /// release failing its stage (roll back, exit 3); anything else is the tool failing to
    /// operate its backend (exit 1).
    fn from_weight_error(stage: &Stage, e: BackendError) -> Halt {
        match e {
            BackendError::NewVersionFailed(why) => Halt::Rollback(format!(
                "the new version failed in stage {} ({}): {why}",
                stage.number, stage.weight
            )),
            e => Halt::Failure(format!(
                "stage {} could not set {}: {e}",
                stage.number,
                what_stage_sets(stage)
            )),
        }
    }
}

/// "the weight to 0%, with segments and a mirror of 10%": what a stage asks of the backend.
fn what_stage_sets(stage: &Stage) -> String {
    let mut what = format!("the weight to {}", stage.weight);
    match (!stage.segments.is_empty(), stage.mirror) {
        (true, Some(share)) => what.push_str(&format!(", with segments and a mirror of {share}")),
        (true, None) => what.push_str(", with segments"),
        (false, Some(share)) => what.push_str(&format!(", with a mirror of {share}")),
        (false, None) => {}
    }
    what
}

impl Halt {
    fn by(action: HaltAction, reason: String) -> Halt {
        match action {
            HaltAction::Rollback => Halt::Rollback(reason),
            HaltAction::Pause => Halt::Pause(reason),
        }
    }
}

/// Where a run begins.
#[derive(Debug, Clone, PartialEq)]
pub enum Start {
    Fresh,
    /// Continue a paused or interrupted rollout: re-apply the stage at `stage_index` (0-based;
    /// idempotent for the backend) with traffic believed to be at `weight`, and go on.
    Resume {
        stage_index: usize,
        weight: Weight,
    },
    /// Finish a rollback that an earlier process began.
    FinishRollback {
        reason: String,
    },
}

/// Everything a run needs, wired up by the caller (the CLI, or a test).
pub struct Engine {
    pub plan: Arc<Plan>,
    pub backend: Box<dyn Backend>,
    /// One probe per metric of the plan, in the same order.
    pub probes: Vec<Arc<dyn Probe>>,
    pub exec: Arc<dyn Executor>,
    pub events: Emitter,
    /// Where every step is put on record before it is taken (the journal).
    pub ledger: Arc<dyn Ledger>,
    pub approver: Arc<dyn Approver>,
    /// Each received SIGINT/SIGTERM, by name.
    pub interrupts: mpsc::UnboundedReceiver<String>,
    pub dry_run: bool,
    pub start: Start,
    /// `rollout rollback`: the rollback is what was asked for, so a confirmed one is a success.
    pub requested_rollback: bool,
    /// The wall clock, for the plan's change window.
    pub clock: Clock,
}

struct State {
    weight: Weight,
    stage: usize,
}

impl Engine {
    pub async fn run(mut self) -> Outcome {
        let plan = self.plan.clone();
        if let Err(e) = self.commit(self.started()).await {
            return self.unrecorded_start(e).await;
        }
        if self.start == Start::Fresh {
            let at = change_at(0, Weight::ZERO, Weight::ZERO);
            self.plan_hooks(HookEvent::Started, at, None).await;
        }
        if let Err(e) = self.backend.preflight().await {
            let outcome = Outcome::new(
                OutcomeKind::Failed,
                format!("The preflight check failed, so nothing was changed: {e}."),
                None,
            );
            return self.finish(outcome).await;
        }
        if let Some(state) = self.backend.saved_state()
            && let Err(e) = self.commit(Event::BackendState { state }).await
        {
            return self.unrecorded_start(e).await;
        }
        // Nothing starts outside the change window (not even a weight-0 stage's migrations).
        if self.start == Start::Fresh
            && !self.dry_run
            && let Err(halt) = self.wait_for_window().await
        {
            let state = State {
                weight: Weight::ZERO,
                stage: 0,
            };
            return self.halt(halt, &state).await;
        }
        let (first, mut state) = match self.start.clone() {
            Start::Fresh => (
                0,
                State {
                    weight: Weight::ZERO,
                    stage: 0,
                },
            ),
            Start::Resume {
                stage_index,
                weight,
            } => (
                stage_index,
                State {
                    weight,
                    stage: stage_index,
                },
            ),
            Start::FinishRollback { reason } => {
                let state = State {
                    weight: Weight::FULL,
                    stage: 0,
                };
                return self.halt(Halt::Rollback(reason), &state).await;
            }
        };
        for stage in &plan.stages[first.min(plan.stages.len())..] {
            if let Err(halt) = self.run_stage(stage, &mut state).await {
                return self.halt(halt, &state).await;
            }
        }
        if let Err(e) = self.backend.promote().await {
            let halt = Halt::Failure(format!("promoting the new version failed: {e}"));
            return self.halt(halt, &state).await;
        }
        self.plan_hooks(
            HookEvent::Promoted,
            change_at(state.stage, Weight::FULL, Weight::FULL),
            None,
        )
        .await;
        let reason = if self.dry_run {
            "Dry run complete: every stage was walked through and nothing was changed.".to_string()
        } else {
            match self.plan.backend.audience() {
                Audience::Traffic => format!(
                    "Every stage passed its gates and {} of traffic is on the new version.",
                    Weight::FULL
                ),
                Audience::Users => format!(
                    "Every stage passed its gates and {} of users get the new version.",
                    Weight::FULL
                ),
            }
        };
        let outcome = Outcome::new(OutcomeKind::Promoted, reason, Some(100.0));
        self.finish(outcome).await
    }

    async fn run_stage(&mut self, stage: &Stage, state: &mut State) -> Result<(), Halt> {
        self.check_interrupt()?;
        let change = WeightChange {
            stage: stage.number,
            weight: stage.weight,
            previous: state.weight,
            segments: stage.segments,
            mirror: stage.mirror,
        };
        let intent = Event::StageStarted {
            stage: stage.number,
            stages: self.plan.stages.len(),
            weight: stage.weight.percent(),
            previous_weight: state.weight.percent(),
        };
        match self.commit(intent).await {
            Ok(()) => {}
            Err(LedgerError::Lost(why)) => return Err(Halt::Lost(why)),
            // Nothing was changed for this stage: traffic is where the last one left it.
            Err(e) => {
                return Err(Halt::Failure(format!(
                    "stage {} was not started because {e}",
                    stage.number
                )));
            }
        }
        self.plan_hooks(HookEvent::StageStarted, change, None).await;
        state.stage = stage.number;
        // From here on the backend may be at the new weight, whatever the result says.
        state.weight = stage.weight;
        if let Err(e) = self.backend.set_weight(change).await {
            return Err(Halt::from_weight_error(stage, e));
        }
        self.record_result(Event::WeightApplied {
            stage: stage.number,
            weight: stage.weight.percent(),
            audience: self.plan.backend.audience(),
        })
        .await;
        if !stage.segments.is_empty() {
            let plan = &self.plan;
            let names = stage.segments.iter().filter_map(|i| plan.segments.get(i));
            self.events.emit(Event::SegmentsApplied {
                stage: stage.number,
                segments: names.map(|s| s.name.to_string()).collect(),
            });
        }
        if let Some(share) = stage.mirror {
            self.events.emit(Event::MirrorApplied {
                stage: stage.number,
                percent: share.percent(),
            });
        }
        self.check_interrupt()?;
        for hook in &stage.hooks {
            let env = hooks::stage_env(&self.plan, change);
            if let Err(failure) =
                hooks::run(&*self.exec, &self.events, hook, env, Some(stage.number)).await
            {
                return Err(Halt::Rollback(format!(
                    "stage {}'s hook `{}` failed: {failure}",
                    stage.number, hook.run
                )));
            }
            self.check_interrupt()?;
        }
        let started = tokio::time::Instant::now();
        self.bake(stage).await?;
        self.record_result(Event::StagePassed {
            stage: stage.number,
            weight: stage.weight.percent(),
            elapsed: started.elapsed(),
        })
        .await;
        self.plan_hooks(HookEvent::StagePassed, change, None).await;
        Ok(())
    }

    /// An interrupt received while the engine was busy (a backend change, a hook) is acted on
    /// as soon as that step is done: steps are never abandoned half-way.
    fn check_interrupt(&mut self) -> Result<(), Halt> {
        match self.interrupts.try_recv() {
            Ok(signal) => Err(self.interrupted(&signal)),
            Err(_) => Ok(()),
        }
    }

    fn interrupted(&self, signal: &str) -> Halt {
        let action = self.plan.on_interrupt;
        self.events.emit(Event::Interrupted {
            signal: signal.to_string(),
            action: action.to_string(),
        });
        Halt::by(
            action,
            format!("the run was interrupted by {signal} (on_interrupt = \"{action}\")"),
        )
    }

    async fn halt(mut self, halt: Halt, state: &State) -> Outcome {
        let (reason, failure) = match halt {
            Halt::Pause(reason) => {
                self.plan_hooks(
                    HookEvent::Paused,
                    change_at(state.stage, state.weight, state.weight),
                    Some(&reason),
                )
                .await;
                let outcome = Outcome::new(
                    OutcomeKind::Paused,
                    format!(
                        "Paused at {} in stage {}: {reason}. Run `rollout resume` or `rollout rollback` to continue.",
                        state.weight, state.stage
                    ),
                    Some(state.weight.percent()),
                );
                return self.finish(outcome).await;
            }
            Halt::Lost(why) => return self.lost(why, state),
            Halt::Rollback(reason) => (reason, false),
            Halt::Failure(reason) => (reason, true),
        };
        let intent = Event::RollingBack {
            reason: reason.clone(),
        };
        match self.commit(intent).await {
            Ok(()) => {}
            Err(LedgerError::Lost(why)) => return self.lost(why, state),
            Err(e) => return self.unrecorded_rollback(e, &reason, state),
        }
        if let Err(e) = self.rollback_with_retries().await {
            let reason = format!(
                "Rolling back failed after {ROLLBACK_ATTEMPTS} attempts ({e}); traffic is in an unknown state and a person must act. The rollback was started because {reason}."
            );
            let at = change_at(state.stage, state.weight, state.weight);
            self.plan_hooks(HookEvent::RollbackFailed, at, Some(&reason))
                .await;
            let outcome = Outcome::new(OutcomeKind::RollbackFailed, reason, None);
            return self.finish(outcome).await;
        }
        self.plan_hooks(
            HookEvent::RolledBack,
            change_at(state.stage, Weight::ZERO, state.weight),
            Some(&reason),
        )
        .await;
        let outcome = if failure {
            Outcome::new(
                OutcomeKind::Failed,
                format!("Could not proceed: {reason}. Traffic was returned to the stable version."),
                Some(0.0),
            )
        } else {
            Outcome::new(
                OutcomeKind::RolledBack,
                format!("Rolled back to the stable version because {reason}."),
                Some(0.0),
            )
        };
        self.finish(outcome).await
    }

    /// `rollout rollback`: return traffic to stable now, from whatever state the rollout is in.
    /// `recovery` is given when no journal says what the run changed (it ran elsewhere, or its
    /// journal is damaged): the backend then works out the stable state from the plan and from
    /// what it reports now, or says what it needs, before anything is changed.
    pub async fn rollback_now(mut self, reason: String, recovery: Option<Recovery>) -> Outcome {
        if let Err(e) = self.commit(self.started()).await {
            return self.unrecorded_start(e).await;
        }
        if let Some(recovery) = recovery {
            match self.backend.recover(&recovery).await {
                Ok(notes) => {
                    for message in notes {
                        self.events.emit(Event::Warning { message });
                    }
                }
                Err(e) => {
                    let outcome = Outcome::new(
                        OutcomeKind::RollbackFailed,
                        format!(
                            "Cannot roll back without the journal, so nothing was changed: {e}."
                        ),
                        None,
                    );
                    return self.finish(outcome).await;
                }
            }
        }
        let state = State {
            weight: Weight::FULL,
            stage: 0,
        };
        // The exit code is decided before the outcome is told, so the `finished` event and
        // the process agree.
        self.requested_rollback = true;
        self.halt(Halt::Rollback(reason), &state).await
    }

    fn started(&self) -> Event {
        Event::Started {
            name: self.plan.name.to_string(),
            strategy: self.plan.strategy.to_string(),
            backend: self.backend.describe(),
            stages: self.plan.stages.len(),
            dry_run: self.dry_run,
        }
    }

    /// Puts a step on record, then tells the reporters; `Err` when it could not be recorded,
    /// and then nobody is told it happened.
    async fn commit(&self, event: Event) -> Result<(), LedgerError> {
        let stamped = self.events.stamp(event);
        let mut attempt = 1;
        loop {
            match self.ledger.record(&stamped).await {
                Ok(()) => break,
                Err(e @ LedgerError::Lost(_)) => return Err(e),
                Err(e) => {
                    // A passing fault (a briefly full disk, a store that blinks) must not end
                    // a rollout; the ledger says how long it is worth waiting.
                    let Some(pause) = self.ledger.retry_after(attempt) else {
                        return Err(e);
                    };
                    if attempt == 1 {
                        self.events.emit(Event::Warning {
                            message: format!("{e}; trying again before going on"),
                        });
                    }
                    tokio::time::sleep(pause).await;
                    attempt += 1;
                }
            }
        }
        self.events.emit_stamped(&stamped);
        Ok(())
    }

    /// A result that is already true whether or not the record says so: a failure to record it
    /// is a warning (the next intent will not be taken unrecorded).
    async fn record_result(&self, event: Event) {
        if let Err(e) = self.commit(event.clone()).await {
            self.events.emit(Event::Warning {
                message: format!("{e}; `rollout status` may show an earlier step"),
            });
            self.events.emit(event);
        }
    }

    /// The run could not even put its start on record: nothing was changed.
    async fn unrecorded_start(&self, e: LedgerError) -> Outcome {
        let outcome = Outcome::new(
            OutcomeKind::Failed,
            format!("Could not start, so nothing was changed: {e}."),
            None,
        );
        self.finish(outcome).await
    }

    /// Another process holds the rollout now (or may, any moment): this one changes nothing
    /// more, runs no hooks, and says so. Its journal is no longer its to write.
    fn lost(&self, why: String, state: &State) -> Outcome {
        let outcome = Outcome::new(
            OutcomeKind::Failed,
            format!(
                "Stopped without changing traffic any more: {why}. When this process last acted, \
                 {} was on the new version (stage {}); `rollout status` shows where the rollout \
                 stands now",
                state.weight, state.stage
            ),
            None,
        );
        self.events.emit(Event::Finished(outcome.clone()));
        outcome
    }

    /// A rollback that cannot be put on record is not started: a later `rollout` would
    /// believe traffic is still where the record says. Traffic stays where the run left it,
    /// and the outcome says exactly where that is.
    fn unrecorded_rollback(&self, e: LedgerError, reason: &str, state: &State) -> Outcome {
        let outcome = Outcome::new(
            OutcomeKind::Failed,
            format!(
                "Could not proceed: {reason}, but rolling back was not started because {e}. \
                 Traffic was left where it was: {} on the new version (stage {}). Make the state \
                 folder writable again, then run `rollout rollback` (or `rollout resume`)",
                state.weight, state.stage
            ),
            Some(state.weight.percent()),
        );
        self.events.emit(Event::Finished(outcome.clone()));
        outcome
    }

    async fn rollback_with_retries(&mut self) -> Result<(), crate::backend::BackendError> {
        let mut attempt = 1;
        loop {
            match self.backend.rollback().await {
                Ok(()) => return Ok(()),
                Err(e) if attempt >= ROLLBACK_ATTEMPTS => return Err(e),
                Err(e) => {
                    self.events.emit(Event::Warning {
                        message: format!("rollback attempt {attempt} failed, retrying: {e}"),
                    });
                    tokio::time::sleep(ROLLBACK_PAUSE * attempt).await;
                    attempt += 1;
                }
            }
        }
    }

    async fn plan_hooks(&self, on: HookEvent, at: WeightChange, reason: Option<&str>) {
        hooks::run_plan_hooks(&*self.exec, &self.events, &self.plan, on, at, reason).await;
    }

    async fn finish(&self, mut outcome: Outcome) -> Outcome {
        if self.requested_rollback && outcome.kind == OutcomeKind::RolledBack {
            outcome.exit = crate::exit::Exit::Success;
        }
        if let Err(e) = self.commit(Event::Finished(outcome.clone())).await {
            self.events.emit(Event::Warning {
                message: format!(
                    "{e}: the outcome below is not on record, and `rollout status` will show an earlier step"
                ),
            });
            self.events.emit(Event::Finished(outcome.clone()));
        }
        outcome
    }
}
