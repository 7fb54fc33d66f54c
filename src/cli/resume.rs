//! `rollout resume PLAN`: continue a paused or interrupted rollout from its last confirmed
//! stage, re-applying that stage's weight (backends apply a weight idempotently).

use std::sync::Arc;

use rollout::engine::Start;
use rollout::plan::Weight;
use rollout::state::lock::is_held;
use rollout::state::{Journal, Pending, RolloutDir, Status};

use super::args::ResumeArgs;
use super::session::{JournalStart, Session};
use super::{Exit, load_valid_plan};

pub fn resume(args: &ResumeArgs, color: bool) -> anyhow::Result<Exit> {
    let Some(plan) = load_valid_plan(&args.plan, color)? else {
        return Ok(Exit::Invalid);
    };
    let name = plan.name.to_string();
    let state_dir = &args.drive.state_dir;
    let dir = RolloutDir::new(state_dir, &name);
    let journal = match super::read_journal(&dir.journal(), Some(&args.plan)) {
        Ok(journal) => journal,
        Err(exit) => return Ok(exit),
    };
    let Some(journal) = journal else {
        eprintln!(
            "error: rollout `{name}` has never run with the state directory {}; nothing to resume",
            state_dir.display()
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
    let running = journal.status.is_active() && is_held(&dir);
    let resumable = journal.status == Status::Paused || (journal.status.is_active() && !running);
    if !resumable {
        let holder = match (running, journal.pid) {
            (true, Some(pid)) => {
                format!(", driven by pid {pid}; wait for it, or stop that process")
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
    super::runtime()?.block_on(async {
        let continued = JournalStart::Continue(Box::new(journal));
        let session = match Session::open(
            Arc::new(plan),
            &args.plan,
            &args.drive,
            "resume",
            false,
            continued,
            color,
        )
        .await?
        {
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
