//! `run` outside the plan's change window: refused before anything is touched, saying when the
//! window next opens (unless `--wait-for-window`).

use std::time::Duration;

use rollout::plan::Plan;

use super::Exit;

pub fn refuse_outside(plan: &Plan) -> Option<Exit> {
    let window = plan.window.as_ref()?;
    let now = jiff::Timestamp::now();
    if window.is_open(now) {
        return None;
    }
    let when = match window.next_open(now) {
        Some(at) => {
            let wait = Duration::try_from(at.duration_since(now)).unwrap_or_default();
            // Whole minutes: the seconds of a wait of hours say nothing.
            let wait = Duration::from_secs(wait.as_secs().div_ceil(60) * 60);
            format!(
                "it next opens {} (in {})",
                window.show(at),
                humantime::format_duration(wait)
            )
        }
        None => "it does not open within the next year".to_string(),
    };
    eprintln!(
        "error: rollout `{}` is outside its change window ({window}): {when}. Nothing was changed; \
         run it again then, or with --wait-for-window to wait for the window here",
        plan.name
    );
    Some(Exit::Invalid)
}
