//! `rollout rollback PLAN`: return traffic to stable now, from any state, including after a
//! crash, from another machine, or with a damaged journal. Exit 0 when it did (and confirmed
//! it), 5 when it could not, 1 when it could not even start.

use std::sync::Arc;

use rollout::backend::Recovery;
use rollout::state::{Journal, StateStore, StoreError};

use super::Exit;
use super::args::RollbackArgs;
use super::load_valid_plan;
use super::session::{JournalStart, Opening, Session};

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
    super::runtime()?.block_on(async {
        let store = match super::state::open(&args.drive.state, Some(&plan)) {
            Ok(store) => store,
            Err(exit) => return Ok(exit),
        };
        let journal = match journal_or_plan_alone(store.as_ref(), plan.name.as_str()).await {
            Ok(journal) => journal,
            Err(exit) => return Ok(exit),
        };
        // Without the backend's journaled state, the backend works out the stable state itself.
        let recovery = match &journal {
            Some(journal) if journal.backend_state.is_some() => None,
            _ => Some(Recovery {
                task_definition: args.task_definition.clone(),
            }),
        };
        let opening = Opening {
            plan_path: &args.plan,
            drive: &args.drive,
            command: "rollback",
            dry_run: false,
            journal: match journal {
                Some(journal) => JournalStart::Continue(Box::new(journal)),
                None => JournalStart::New,
            },
            store,
            force: args.force,
            color,
        };
        let session = match Session::open(Arc::new(plan), opening).await? {
            Ok(session) => session,
            Err(exit) => return Ok(exit),
        };
        let reason = "it was requested with `rollout rollback`".to_string();
        let outcome = session.roll_back(reason, recovery).await?;
        Ok(outcome.exit)
    })
}

/// The journal, if it can be read. An emergency rollback must not depend on it: a damaged one
/// is moved aside (and kept), and the plan says what stable is.
async fn journal_or_plan_alone(
    store: &dyn StateStore,
    name: &str,
) -> Result<Option<Journal>, Exit> {
    match store.journal(name).await {
        Ok(journal) => Ok(journal),
        Err(e @ StoreError::Damaged { .. }) => {
            let aside = match store.set_aside_journal(name).await {
                Ok(aside) => aside,
                Err(move_error) => {
                    eprintln!("error: {e}, and it cannot be moved aside: {move_error}");
                    return Err(Exit::CouldNotProceed);
                }
            };
            eprintln!(
                "warning: {e}; it was moved to {aside} and traffic is returned to stable from the plan alone"
            );
            Ok(None)
        }
        Err(e) => Err(super::state::failed(&e)),
    }
}
