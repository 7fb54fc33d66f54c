//! `rollout rollback PLAN`: return traffic to stable now, from any state, including after a
//! crash. Exit 0 when it did, 5 when it could not.

use std::sync::Arc;

use rollout::engine::event::OutcomeKind;
use rollout::state::Journal;

use super::Exit;
use super::args::RollbackArgs;
use super::load_valid_plan;
use super::session::{JournalStart, Session};

pub fn rollback(args: &RollbackArgs, color: bool) -> anyhow::Result<Exit> {
    let Some(plan) = load_valid_plan(&args.plan, color)? else {
        return Ok(Exit::Invalid);
    };
    let path = Journal::path(&args.drive.state_dir, plan.name.as_str());
    let journal = Journal::load(&path)?;
    let start = match journal {
        Some(journal) => JournalStart::Continue(Box::new(journal)),
        None => JournalStart::New,
    };
    super::runtime()?.block_on(async {
        let session = match Session::open(
            Arc::new(plan),
            &args.plan,
            &args.drive,
            "rollback",
            false,
            start,
            color,
        )
        .await?
        {
            Ok(session) => session,
            Err(exit) => return Ok(exit),
        };
        let outcome = session
            .roll_back("it was requested with `rollout rollback`".to_string())
            .await?;
        Ok(match outcome.kind {
            OutcomeKind::RolledBack => Exit::Promoted,
            _ => Exit::RollbackFailed,
        })
    })
}
