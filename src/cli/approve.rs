use rollout::plan::Name;
use rollout::state::RolloutDir;
use rollout::state::approvals::ApprovalFile;

use super::Exit;
use super::args::ApproveArgs;

/// Leaves the answer where the waiting run looks for it (`STATE_DIR/NAME/approval.json`).
pub fn approve(args: &ApproveArgs) -> anyhow::Result<Exit> {
    let Some(name) = Name::parse(&args.name) else {
        eprintln!(
            "error: `{}` is not a rollout name (lowercase letters, digits and `-`)",
            args.name
        );
        return Ok(Exit::Invalid);
    };
    let dir = RolloutDir::new(&args.state_dir, name.as_str());
    if !dir.exists() {
        eprintln!(
            "error: no rollout named `{name}` has run with the state directory {} (is ROLLOUT_STATE_DIR or --state-dir the same as the run's?)",
            args.state_dir.display()
        );
        return Ok(Exit::Invalid);
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
    rollout::exec::write_atomically(&dir.approval(), serde_json::to_string(&answer)?.as_bytes())?;
    let verb = if args.reject { "refused" } else { "approved" };
    eprintln!("{verb} the waiting stage of `{name}` as {}", answer.by);
    Ok(Exit::Success)
}
