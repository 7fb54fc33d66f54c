//! Events in words: the one place that says what each event means to a person. The plain,
//! progress and summary reporters all use it.

use crate::event::Verdict;
use crate::event::{Event, Measurement, OutcomeKind};
use crate::exec::Action;
use crate::plan::Audience;

/// How much a person asked to see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verbosity {
    Quiet,
    Normal,
    Verbose,
}

impl Verbosity {
    /// From `--quiet` and `--verbose`; quiet wins when both are given.
    pub fn from_flags(quiet: bool, verbose: bool) -> Verbosity {
        match (quiet, verbose) {
            (true, _) => Verbosity::Quiet,
            (_, true) => Verbosity::Verbose,
            _ => Verbosity::Normal,
        }
    }
}

/// A value as people read it: a few significant digits, no float noise.
pub fn value(v: f64) -> String {
    crate::plan::model::show_number(v)
}

pub fn percent(p: f64) -> String {
    format!("{p}%")
}

pub fn duration(d: std::time::Duration) -> String {
    // Whole seconds (or milliseconds under a second) keep logs readable.
    let rounded = if d.as_secs() >= 1 {
        std::time::Duration::from_secs(d.as_secs())
    } else {
        std::time::Duration::from_millis(d.as_millis() as u64)
    };
    humantime::format_duration(rounded).to_string()
}

pub fn measurement(m: &Measurement) -> String {
    let mut text = format!("{} ", m.metric);
    let shown = |v: f64| crate::plan::show_reading(v, m.shown_as_percent);
    if let Some(c) = &m.comparison {
        text.push_str(&c.describe(shown));
    } else {
        match m.value {
            Some(v) => text.push_str(&format!("= {}", shown(v))),
            None => text.push_str("has no value"),
        }
        if let Some(b) = m.baseline {
            text.push_str(&format!(" (baseline {})", shown(b)));
        }
    }
    text.push_str(": ");
    text.push_str(m.verdict.as_str());
    if m.verdict == Verdict::Breach && !m.warn_only {
        text.push_str(&format!(" ({} in a row)", m.breach_streak));
    }
    if m.warn_only {
        text.push_str(" [warn only]");
    }
    if let Some(detail) = &m.detail {
        text.push_str(&format!(" ({detail})"));
    }
    text
}

fn action(dry_run: bool, action: &Action) -> String {
    match (dry_run, action) {
        (true, Action::Run { argv, purpose }) => {
            format!("would run ({purpose}): {}", argv_text(argv))
        }
        (false, Action::Run { argv, purpose }) => format!("run ({purpose}): {}", argv_text(argv)),
        (dry, Action::Write { path, contents }) => {
            let verb = if dry { "would write" } else { "write" };
            let body: Vec<String> = contents.lines().map(|l| format!("    | {l}")).collect();
            format!("{verb} {path}:\n{}", body.join("\n"))
        }
        (
            dry,
            Action::Call {
                service,
                operation,
                params,
            },
        ) => {
            let verb = if dry { "would call" } else { "call" };
            format!("{verb} {service} {operation} {params}")
        }
        (_, Action::Wait { what }) => format!("would {what}"),
    }
}

pub fn argv_text(argv: &[String]) -> String {
    crate::plan::Argv::new(argv.to_vec()).map_or_else(String::new, |a| a.to_string())
}

/// The line (possibly several) for an event at this verbosity, or `None` to stay silent.
pub fn line(event: &Event, verbosity: Verbosity) -> Option<String> {
    let normal = verbosity >= Verbosity::Normal;
    let text = match event {
        Event::Started {
            name,
            strategy,
            backend,
            stages,
            dry_run,
        } => {
            let dry = if *dry_run {
                " (dry run: nothing will be changed)"
            } else {
                ""
            };
            let plural = if *stages == 1 { "" } else { "s" };
            format!(
                "rollout {name}: {strategy} in {stages} stage{plural} through the {backend}{dry}"
            )
        }
        Event::StageStarted {
            stage,
            stages,
            weight,
            previous_weight,
        } if normal => {
            format!(
                "stage {stage}/{stages}: {} -> {}",
                percent(*previous_weight),
                percent(*weight)
            )
        }
        Event::WeightApplied {
            stage,
            weight,
            audience,
        } if normal => match audience {
            Audience::Traffic => format!(
                "stage {stage}: {} of traffic on the new version",
                percent(*weight)
            ),
            Audience::Users => format!(
                "stage {stage}: {} of users get the new version",
                percent(*weight)
            ),
        },
        Event::SegmentsApplied { stage, segments } if normal => {
            format!(
                "stage {stage}: segment{} {} also on the new version, whatever the weight",
                if segments.len() == 1 { "" } else { "s" },
                segments.join(", ")
            )
        }
        Event::MirrorApplied {
            stage,
            percent: share,
        } if normal => format!(
            "stage {stage}: {} of requests also copied to the new version; clients get only the stable version's answers",
            percent(*share)
        ),
        Event::Action {
            dry_run: true,
            action: a,
            ..
        } => action(true, a),
        Event::Action {
            dry_run: false,
            action: a,
            ..
        } if verbosity == Verbosity::Verbose => action(false, a),
        Event::HookFinished { argv, ok: true, .. } if normal => {
            format!("hook `{}` succeeded", argv_text(argv))
        }
        Event::HookFinished {
            argv,
            ok: false,
            detail,
            ..
        } => {
            format!("hook `{}` failed: {detail}", argv_text(argv))
        }
        Event::BakeStarted {
            stage,
            bake,
            interval,
            max_hold,
            metrics,
        } if normal => {
            let what = if metrics.is_empty() {
                "no metrics gate it".to_string()
            } else {
                format!(
                    "measuring {} every {}",
                    metrics.join(", "),
                    duration(*interval)
                )
            };
            format!(
                "stage {stage}: baking {}, {what} (max hold {})",
                duration(*bake),
                duration(*max_hold)
            )
        }
        Event::Measured(m) if normal || m.verdict == Verdict::Breach => {
            format!("  {}", measurement(m))
        }
        Event::Holding { stage, reasons } if normal => {
            format!("stage {stage}: bake over, holding: {}", reasons.join("; "))
        }
        Event::Stuck {
            stage,
            weight,
            after,
            reasons,
        } => format!(
            "stage {stage}: stuck at {} for {}: {}",
            percent(*weight),
            duration(*after),
            reasons.join("; ")
        ),
        Event::WindowClosed {
            stage: 0,
            window,
            opens,
            ..
        } => format!(
            "the change window ({window}) is closed: nothing starts until it opens, {opens}"
        ),
        Event::WindowClosed {
            stage,
            weight,
            window,
            opens,
            ..
        } if normal => format!(
            "stage {stage}: ready to advance, but the change window ({window}) is closed: holding at {} and still measuring until it opens, {opens}",
            percent(*weight)
        ),
        Event::AwaitingApproval { stage, how } => {
            format!("stage {stage}: waiting for approval: {how}")
        }
        Event::Approved { stage, by } => format!("stage {stage}: approved by {by}"),
        Event::StagePassed {
            stage,
            weight,
            elapsed,
        } if normal => {
            format!(
                "stage {stage} passed at {} after {}",
                percent(*weight),
                duration(*elapsed)
            )
        }
        Event::Interrupted { signal, action } => {
            format!("received {signal}: {action} (on_interrupt)")
        }
        Event::RollingBack { reason } => format!("rolling back: {reason}"),
        Event::Warning { message } => format!("warning: {message}"),
        Event::Finished(outcome) => {
            let head = match outcome.kind {
                OutcomeKind::Promoted if outcome.reason.starts_with("Dry run") => "DONE",
                OutcomeKind::Promoted => "PROMOTED",
                OutcomeKind::Failed => "FAILED",
                OutcomeKind::RolledBack => "ROLLED BACK",
                OutcomeKind::Paused => "PAUSED",
                OutcomeKind::RollbackFailed => "ROLLBACK FAILED",
                OutcomeKind::Undecided => "UNDECIDED",
            };
            format!("{head}: {}", outcome.reason)
        }
        _ => return None,
    };
    Some(text)
}

/// Text from outside in a Markdown table cell: one line, no column breaks.
pub(crate) fn markdown_cell(text: &str) -> String {
    text.replace('|', "\\|").replace(['\r', '\n'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_read_well() {
        assert_eq!(value(0.030000000000000002), "0.03");
        assert_eq!(value(212.5), "212.5");
        assert_eq!(value(0.00012346), "0.0001235");
        assert_eq!(value(123456.7), "123457");
        assert_eq!(value(0.0), "0");
        assert_eq!(value(-1.5), "-1.5");
    }
}
