//! `rollout rollback PLAN`: return traffic to stable now, from any state, including after a
//! crash, from another machine, or with a damaged journal. Exit 0 when it did (and confirmed
//! it), 5 when it could not, 1 when it could not even start.

use std::sync::Arc;

use rollout::backend::Recovery;
use rollout::state::{Journal, RolloutDir};

use super::Exit;
use super::args::RollbackArgs;
use super::load_valid_plan;
use super::session::{JournalStart, Session};

pub fn rollback(args: &RollbackArgs, color: bool) -> anyhow::Result<Exit> {
    let Some(plan) = load_valid_plan(&args.plan, color)? else {
        return Ok(Exit::Invalid);
    };
    if args.task_definition.is_some() && !matches!(plan.backend, rollout::plan::Backend::Ecs(_)) {
        eprintln!(
            "error: --task-definition is for plans on the ecs backend; {} uses the {} backend",
            args.plan.display(),
            plan.backend.type_name()
        );
        return Ok(Exit::Invalid);
    }
    let dir = RolloutDir::new(&args.drive.state_dir, plan.name.as_str());
    let journal = match Journal::load(&dir.journal()) {
        Ok(journal) => journal,
        Err(e) => {
            // An emergency rollback must not depend on the journal: the plan says what stable is.
            let aside = match Journal::set_aside(&dir) {
                Ok(aside) => aside,
                Err(move_error) => {
                    eprintln!("error: {e}, and it cannot be moved aside: {move_error}");
                    return Ok(Exit::CouldNotProceed);
                }
            };
            eprintln!(
                "warning: {e}; it was moved to {} and traffic is returned to stable from the plan alone",
                aside.display()
            );
            None
        }
    };
    // Without the backend's journaled state, the backend works out the stable state itself.
    let recovery = match &journal {
        Some(journal) if journal.backend_state.is_some() => None,
        _ => Some(Recovery {
            task_definition: args.task_definition.clone(),
        }),
    };
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
        let reason = "it was requested with `rollout rollback`".to_string();
        let outcome = session.roll_back(reason, recovery).await?;
        Ok(outcome.exit)
    })
}
