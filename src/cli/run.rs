//! `rollout run`: drive a rollout from its first stage.

use std::sync::Arc;

use rollout::engine::Start;
use rollout::plan::Plan;
use rollout::state::{StateStore, Status};

use super::args::RunArgs;
use super::session::{JournalStart, Opening, Session};
use super::{Exit, load_valid_plan};

pub fn run(args: &RunArgs, color: bool) -> anyhow::Result<Exit> {
    let Some(plan) = load_valid_plan(&args.plan, color)? else {
        return Ok(Exit::Invalid);
    };
    if !args.dry_run
        && !args.wait_for_window
        && let Some(exit) = super::window::refuse_outside(&plan)
    {
        return Ok(exit);
    }
    super::runtime()?.block_on(async {
        let store = match super::state::open(&args.drive.state, Some(&plan)) {
            Ok(store) => store,
            Err(exit) => return Ok(exit),
        };
        if !args.dry_run
            && let Some(exit) = refuse_over_unfinished(&plan, args, store.as_ref()).await
        {
            return Ok(exit);
        }
        let opening = Opening {
            plan_path: &args.plan,
            drive: &args.drive,
            command: "run",
            dry_run: args.dry_run,
            journal: JournalStart::New,
            store,
            force: false,
            color,
        };
        let session = match Session::open(Arc::new(plan), opening).await? {
            Ok(session) => session,
            Err(exit) => return Ok(exit),
        };
        let outcome = session.drive(Start::Fresh).await?;
        Ok(outcome.exit)
    })
}

/// A paused or interrupted rollout must be resumed or rolled back, not silently restarted
/// from stage 1 over traffic that is still split.
async fn refuse_over_unfinished(
    plan: &Plan,
    args: &RunArgs,
    store: &dyn StateStore,
) -> Option<Exit> {
    let name = plan.name.as_str();
    let journal = match super::read_journal(store, name, Some(&args.plan)).await {
        Ok(journal) => journal?,
        Err(exit) => return Some(exit),
    };
    let live = match store.holding(name).await {
        Ok(holding) => holding.is_some_and(|h| h.live),
        Err(e) => return Some(super::state::failed(&e)),
    };
    let unfinished = matches!(journal.status, Status::Paused | Status::RollbackFailed)
        || (journal.status.is_active() && !live);
    if !unfinished {
        return None;
    }
    let plan_arg = args.plan.display();
    eprintln!(
        "error: rollout `{name}` is unfinished ({}); run `rollout status {name}` to see where traffic is, then `rollout resume {plan_arg}` or `rollout rollback {plan_arg}`",
        super::status::describe_status(&journal, false),
    );
    Some(Exit::Invalid)
}
