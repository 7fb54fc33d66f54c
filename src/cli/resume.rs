//! `rollout resume PLAN`: continue a paused or interrupted rollout from its last confirmed
//! stage, re-applying that stage's weight (backends apply a weight idempotently).

use std::sync::Arc;

use rollout::engine::Start;
use rollout::plan::Weight;
use rollout::state::{Journal, Pending, Status};

use super::args::ResumeArgs;
use super::session::{JournalStart, Opening, Session};
use super::{Exit, load_valid_plan};

pub fn resume(args: &ResumeArgs, color: bool) -> anyhow::Result<Exit> {
    let Some(plan) = load_valid_plan(&args.plan, color)? else {
        return Ok(Exit::Invalid);
    };
    super::runtime()?.block_on(async {
        let store = match super::state::open(&args.drive.state, Some(&plan)) {
            Ok(store) => store,
            Err(exit) => return Ok(exit),
        };
        let name = plan.name.to_string();
        let journal = match super::read_journal(store.as_ref(), &name, Some(&args.plan)).await {
            Ok(journal) => journal,
            Err(exit) => return Ok(exit),
        };
        let Some(journal) = journal else {
            eprintln!(
                "error: rollout `{name}` has never run with {}; nothing to resume",
                store.location()
            );
            return Ok(Exit::Invalid);
        };
        if journal.plan_sha256 != plan.fingerprint && !args.force {
            eprintln!(
                "error: {} changed since rollout `{name}` started (sha256 {} then, {} now); resuming would mix two plans. \
                 Check the change, then `rollout resume {} --force`, or `rollout rollback {}`",
                args.plan.display(),
                short(&journal.plan_sha256),
                short(&plan.fingerprint),
                args.plan.display(),
                args.plan.display()
            );
            return Ok(Exit::Invalid);
        }
        let holding = match store.holding(&name).await {
            Ok(holding) => holding,
            Err(e) => return Ok(super::state::failed(&e)),
        };
        let live = holding.as_ref().filter(|h| h.live);
        let running = journal.status.is_active() && live.is_some();
        // A live holder on a shared store may be taken over with --force.
        let forced = running && args.force && store.is_shared();
        let resumable =
            journal.status == Status::Paused || (journal.status.is_active() && !running) || forced;
        if !resumable {
            let holder = match live {
                Some(h) if running => {
                    format!(", driven by {}; wait for it, or stop that process", h.holder.describe())
                }
                _ => String::new(),
            };
            eprintln!(
                "error: rollout `{name}` cannot be resumed: it is {}{holder}",
                super::status::describe_status(&journal, running)
            );
            // A live holder is the lock's refusal (exit 1); a finished rollout is a usage error.
            return Ok(if running {
                Exit::CouldNotProceed
            } else {
                Exit::Invalid
            });
        }
        let start = start_point(&journal, plan.stages.len());
        let opening = Opening {
            plan_path: &args.plan,
            drive: &args.drive,
            command: "resume",
            dry_run: false,
            journal: JournalStart::Continue(Box::new(journal)),
            store,
            force: args.force,
            color,
        };
        let session = match Session::open(Arc::new(plan), opening).await? {
            Ok(session) => session,
            Err(exit) => return Ok(exit),
        };
        let outcome = session.drive(start).await?;
        Ok(outcome.exit)
    })
}

/// Where to pick up: a rollback under way is finished; otherwise the last confirmed stage is
/// applied again (or the first, if none was confirmed).
fn start_point(journal: &Journal, stages: usize) -> Start {
    if let Some(Pending::Rollback { reason }) = &journal.pending {
        return Start::FinishRollback {
            reason: reason.clone(),
        };
    }
    if journal.status == Status::RollingBack {
        let reason = journal
            .reason
            .clone()
            .unwrap_or_else(|| "an earlier rollback was interrupted".to_string());
        return Start::FinishRollback { reason };
    }
    let believed = match &journal.pending {
        Some(Pending::SetWeight { from, .. }) => *from,
        _ => journal.weight.unwrap_or(0.0),
    };
    Start::Resume {
        stage_index: journal
            .stage
            .saturating_sub(1)
            .min(stages.saturating_sub(1)),
        weight: Weight::new(believed).unwrap_or(Weight::ZERO),
    }
}

fn short(sha: &str) -> &str {
    &sha[..sha.len().min(12)]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn journal(stage: usize, weight: Option<f64>, pending: Option<Pending>) -> Journal {
        let mut journal = Journal::new("shop", std::path::Path::new("plan.toml"), "abc", 3);
        journal.stage = stage;
        journal.weight = weight;
        journal.pending = pending;
        journal
    }

    fn resume(stage_index: usize, weight: f64) -> Start {
        Start::Resume {
            stage_index,
            weight: Weight::new(weight).unwrap(),
        }
    }

    #[test]
    fn resume_picks_up_at_the_last_confirmed_stage() {
        let paused = Journal {
            status: Status::Paused,
            ..journal(2, Some(50.0), None)
        };
        assert_eq!(start_point(&paused, 3), resume(1, 50.0));
        // Nothing confirmed yet: the first stage, from stable.
        assert_eq!(start_point(&journal(0, Some(0.0), None), 3), resume(0, 0.0));
    }

    #[test]
    fn a_change_under_way_is_redone_from_the_weight_it_started_at() {
        let pending = Pending::SetWeight {
            stage: 3,
            weight: 100.0,
            from: 50.0,
        };
        // Stage 3 may or may not have applied: stage 2 is applied again, believed at 50%.
        assert_eq!(
            start_point(&journal(2, Some(50.0), Some(pending)), 3),
            resume(1, 50.0)
        );
    }

    #[test]
    fn a_rollback_under_way_is_finished() {
        let pending = Pending::Rollback {
            reason: "errors breached".into(),
        };
        assert_eq!(
            start_point(&journal(2, Some(50.0), Some(pending)), 3),
            Start::FinishRollback {
                reason: "errors breached".into()
            }
        );
        let rolling_back = Journal {
            status: Status::RollingBack,
            reason: None,
            ..journal(2, Some(50.0), None)
        };
        assert_eq!(
            start_point(&rolling_back, 3),
            Start::FinishRollback {
                reason: "an earlier rollback was interrupted".into()
            }
        );
    }

    #[test]
    fn a_plan_with_fewer_stages_resumes_at_its_last() {
        assert_eq!(
            start_point(&journal(5, Some(80.0), None), 3),
            resume(2, 80.0)
        );
    }
}
