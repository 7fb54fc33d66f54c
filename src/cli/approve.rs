//! `rollout approve NAME [--reject]`: answer a waiting approval gate, from any shell, CI job or
//! machine that uses the same state.

use rollout::plan::Name;
use rollout::state::StoreError;
use rollout::state::approvals::ApprovalFile;

use super::Exit;
use super::args::ApproveArgs;

/// Leaves the answer where the waiting run looks for it (its state store).
pub fn approve(args: &ApproveArgs) -> anyhow::Result<Exit> {
    let Some(name) = Name::parse(&args.name) else {
        eprintln!(
            "error: `{}` is not a rollout name (lowercase letters, digits and `-`)",
            args.name
        );
        return Ok(Exit::Invalid);
    };
    super::runtime()?.block_on(async {
        let store = match super::state::open(&args.state, None) {
            Ok(store) => store,
            Err(exit) => return Ok(exit),
        };
        match store.journal(name.as_str()).await {
            Ok(Some(_)) | Err(StoreError::Damaged { .. }) => {}
            Ok(None) => {
                eprintln!(
                    "error: no rollout named `{name}` has run with {} (are --state, ROLLOUT_STATE or ROLLOUT_STATE_DIR the same as the run's?)",
                    store.location()
                );
                return Ok(Exit::Invalid);
            }
            Err(e) => return Ok(super::state::failed(&e)),
        }
        let by = args
            .by
            .clone()
            .or_else(|| std::env::var("USER").ok())
            .unwrap_or_else(|| "someone".to_string());
        let answer = ApprovalFile {
            approve: !args.reject,
            by,
        };
        if let Err(e) = store.answer(name.as_str(), &answer).await {
            return Ok(super::state::failed(&e));
        }
        let verb = if args.reject { "refused" } else { "approved" };
        eprintln!("{verb} the waiting stage of `{name}` as {}", answer.by);
        Ok(Exit::Success)
    })
}
