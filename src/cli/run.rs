//! `rollout run`: drive a rollout from its first stage.

use std::sync::Arc;

use rollout::engine::Start;
use rollout::state::{RolloutDir, Status};

use super::args::RunArgs;
use super::session::{JournalStart, Session};
use super::{Exit, load_valid_plan};

pub fn run(args: &RunArgs, color: bool) -> anyhow::Result<Exit> {
    let Some(plan) = load_valid_plan(&args.plan, color)? else {
        return Ok(Exit::Invalid);
    };
    if !args.dry_run
        && let Some(exit) = refuse_over_unfinished(&plan, args)?
    {
        return Ok(exit);
    }
    super::runtime()?.block_on(async {
        let plan = Arc::new(plan);
        let session = match Session::open(
            plan,
            &args.plan,
            &args.drive,
            "run",
            args.dry_run,
            JournalStart::New,
            color,
        )
        .await?
        {
            Ok(session) => session,
            Err(exit) => return Ok(exit),
        };
        let outcome = session.drive(Start::Fresh).await?;
        Ok(outcome.exit)
    })
}

/// A paused or interrupted rollout must be resumed or rolled back, not silently restarted
/// from stage 1 over traffic that is still split.
fn refuse_over_unfinished(
    plan: &rollout::plan::Plan,
    args: &RunArgs,
) -> anyhow::Result<Option<Exit>> {
    let dir = RolloutDir::new(&args.drive.state_dir, plan.name.as_str());
    let journal = match super::read_journal(&dir.journal(), Some(&args.plan)) {
        Ok(journal) => journal,
        Err(exit) => return Ok(Some(exit)),
    };
    let Some(journal) = journal else {
        return Ok(None);
    };
    let unfinished = matches!(journal.status, Status::Paused | Status::RollbackFailed)
        || (journal.status.is_active() && !rollout::state::lock::is_held(&dir));
    if !unfinished {
        return Ok(None);
    }
    let plan_arg = args.plan.display();
    eprintln!(
        "error: rollout `{}` is unfinished ({}); run `rollout status {}` to see where traffic is, then `rollout resume {plan_arg}` or `rollout rollback {plan_arg}`",
        plan.name,
        super::status::describe_status(&journal, false),
        plan.name
    );
    Ok(Some(Exit::Invalid))
}
