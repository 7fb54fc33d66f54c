//! Flag hygiene: a flag rolled out to everyone should leave the code. After a flag rollout is
//! promoted, `rollout status` says how long the flag has been fully on, and `rollout validate`
//! warns when that is longer than the backend's `cleanup_after`.
//!
//! `validate` touches no network, so it looks only at a local journal: the state folder `run`
//! would use by default (`ROLLOUT_STATE`/`ROLLOUT_STATE_DIR` when they name a folder, else the
//! plan's `[state] url` when it is a folder, else `.rollout/`). A rollout kept in a shared store
//! (s3://, gs://, az://) is not looked up: `rollout status` tells that one.

use std::time::{Duration, SystemTime};

use rollout::plan::{Diagnostic, Plan, SourceFile};
use rollout::state::{Journal, Location, RolloutDir, Status};

use super::args::StateArgs;

/// When the flag became fully on: the moment the rollout was promoted.
fn promoted_at(journal: &Journal) -> Option<SystemTime> {
    if journal.status != Status::Promoted {
        return None;
    }
    humantime::parse_rfc3339_weak(&journal.since).ok()
}

/// One line for `rollout status`: how long the plan's flag has been fully on.
pub fn status_line(journal: &Journal, plan: &Plan) -> Option<String> {
    let flag = plan.backend.flag()?;
    let since = promoted_at(journal)?;
    let on_for = SystemTime::now().duration_since(since).unwrap_or_default();
    let on_for = Duration::from_secs(on_for.as_secs() / 3600 * 3600);
    let shown = if on_for.is_zero() {
        "less than an hour".to_string()
    } else {
        humantime::format_duration(on_for).to_string()
    };
    let due = since + flag.cleanup_after();
    let advice = if SystemTime::now() >= due {
        "past its cleanup_after: remove it from the code".to_string()
    } else {
        format!(
            "remove it from the code by {} (cleanup_after)",
            humantime::format_rfc3339_seconds(due)
        )
    };
    Some(format!(
        "{} fully on for {shown} (since {}); {advice}",
        flag.flag_name(),
        journal.since
    ))
}

/// The warning `rollout validate` adds for a promoted flag older than `cleanup_after`, from
/// the local journal when there is one.
pub fn stale_flag(file: &SourceFile, plan: &Plan) -> Option<Diagnostic> {
    let flag = plan.backend.flag()?;
    let no_args = StateArgs {
        state: None,
        state_dir: None,
    };
    let Ok(Location::Local(dir)) = super::state::location(&no_args, Some(plan)) else {
        return None;
    };
    let journal = Journal::load(&RolloutDir::new(&dir, plan.name.as_str()).journal()).ok()??;
    let since = promoted_at(&journal)?;
    if SystemTime::now() < since + flag.cleanup_after() {
        return None;
    }
    let span = flag_span(&file.text);
    Some(
        Diagnostic::warning(
            "backend.flag",
            span,
            format!(
                "the {} has been fully on since {}, longer than cleanup_after ({})",
                flag.flag_name(),
                journal.since,
                humantime::format_duration(flag.cleanup_after())
            ),
        )
        .label("rolled out to everyone: time to remove it")
        .help(format!(
            "remove the flag from the code and from its backend, then delete this plan; the journal in {} says when it was promoted",
            dir.display()
        )),
    )
}

/// Where the plan names its flag (`flag = "..."` under `[backend]`), for the caret.
fn flag_span(text: &str) -> std::ops::Range<usize> {
    let backend = text.find("[backend]").unwrap_or(0);
    let mut offset = backend;
    for line in text[backend..].split_inclusive('\n') {
        let trimmed = line.trim_start();
        if trimmed.starts_with("flag ") || trimmed.starts_with("flag=") {
            let value = line.find('=').map_or(0, |i| i + 1);
            let start = offset + value + (line[value..].len() - line[value..].trim_start().len());
            return start..offset + line.trim_end().len();
        }
        offset += line.len();
    }
    backend..backend
}
