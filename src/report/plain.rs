//! One timestamped line per event, no control characters: for CI logs and pipes.

use std::sync::Mutex;

use super::Sink;
use super::text::{Verbosity, line};
use crate::event::{Reporter, Stamped};

pub struct PlainReporter {
    out: Mutex<Sink>,
    verbosity: Verbosity,
    /// Off for dry runs, where nothing waits and the times say nothing.
    timestamps: bool,
}

impl PlainReporter {
    pub fn new(out: Sink, verbosity: Verbosity, timestamps: bool) -> Self {
        PlainReporter {
            out: Mutex::new(out),
            verbosity,
            timestamps,
        }
    }
}

impl Reporter for PlainReporter {
    fn report(&self, event: &Stamped) {
        let Some(text) = line(&event.event, self.verbosity) else {
            return;
        };
        let stamp = if self.timestamps {
            format!("{} ", humantime::format_rfc3339_seconds(event.time))
        } else {
            String::new()
        };
        let mut out = self.out.lock().expect("reporter lock");
        // Continuation lines (file contents) are indented under the stamp.
        let mut lines = text.lines();
        let first = lines.next().unwrap_or("");
        let _ = writeln!(out, "{stamp}{}", strip_controls(first));
        for rest in lines {
            let _ = writeln!(
                out,
                "{:width$}{}",
                "",
                strip_controls(rest),
                width = stamp.len()
            );
        }
        let _ = out.flush();
    }
}

/// Text from outside (command output, server messages) must not smuggle escape sequences into
/// a log.
fn strip_controls(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() && c != '\t' { '?' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use crate::event::Verdict;
    use crate::event::{Event, Measurement, Outcome, OutcomeKind};
    use crate::exec::Action;
    use crate::report::SharedBuffer;

    fn at(secs: u64, event: Event) -> Stamped {
        Stamped {
            time: UNIX_EPOCH + Duration::from_secs(1_790_000_000 + secs),
            event,
        }
    }

    fn run_events() -> Vec<Stamped> {
        vec![
            at(0, Event::Started { name: "shop".into(), strategy: "canary".into(), backend: "nginx upstream `app`".into(), stages: 2, dry_run: false }),
            at(0, Event::StageStarted { stage: 1, stages: 2, weight: 10.0, previous_weight: 0.0 }),
            at(0, Event::Action { stage: None, dry_run: false, action: Action::Run { argv: vec!["nginx".into(), "-t".into()], purpose: "nginx config test".into() } }),
            at(1, Event::WeightApplied { stage: 1, weight: 10.0, audience: crate::plan::Audience::Traffic }),
            at(1, Event::BakeStarted { stage: 1, bake: Duration::from_secs(60), interval: Duration::from_secs(10), max_hold: Duration::from_secs(300), metrics: vec!["errors".into()] }),
            at(11, Event::Measured(Measurement { stage: 1, metric: "errors".into(), value: Some(0.2), baseline: Some(0.01), verdict: Verdict::Breach, detail: None, breach_streak: 1, warn_only: false, shown_as_percent: false, source: "prom".into(), query: "GET /api/v1/query?query=q".into(), baseline_query: None, evaluated_at: std::time::UNIX_EPOCH, breaches: 0, comparison: None })),
            at(11, Event::RollingBack { reason: "metric errors was 0.2 in stage 1 at 10%".into() }),
            at(12, Event::Finished(Outcome::new(OutcomeKind::RolledBack, "Rolled back to the stable version because metric errors was 0.2 in stage 1 at 10%.".into(), Some(0.0)))),
        ]
    }

    fn render(verbosity: Verbosity) -> String {
        let buffer = SharedBuffer::default();
        let reporter = PlainReporter::new(Box::new(buffer.clone()), verbosity, true);
        for event in run_events() {
            reporter.report(&event);
        }
        buffer.contents()
    }

    #[test]
    fn one_timestamped_line_per_event() {
        assert_eq!(
            render(Verbosity::Normal),
            "\
2026-09-21T14:13:20Z rollout shop: canary in 2 stages through the nginx upstream `app`
2026-09-21T14:13:20Z stage 1/2: 0% -> 10%
2026-09-21T14:13:21Z stage 1: 10% of traffic on the new version
2026-09-21T14:13:21Z stage 1: baking 1m, measuring errors every 10s (max hold 5m)
2026-09-21T14:13:31Z   errors = 0.2 (baseline 0.01): breach (1 in a row)
2026-09-21T14:13:31Z rolling back: metric errors was 0.2 in stage 1 at 10%
2026-09-21T14:13:32Z ROLLED BACK: Rolled back to the stable version because metric errors was 0.2 in stage 1 at 10%.
"
        );
    }

    #[test]
    fn quiet_keeps_breaches_and_the_decision_verbose_adds_commands() {
        let quiet = render(Verbosity::Quiet);
        assert_eq!(quiet.lines().count(), 4, "{quiet}");
        assert!(quiet.contains("breach") && quiet.contains("ROLLED BACK"));
        let verbose = render(Verbosity::Verbose);
        assert!(
            verbose.contains("run (nginx config test): nginx -t"),
            "{verbose}"
        );
    }

    #[test]
    fn control_characters_from_outside_never_reach_the_log() {
        let buffer = SharedBuffer::default();
        let reporter = PlainReporter::new(Box::new(buffer.clone()), Verbosity::Normal, false);
        reporter.report(&at(
            0,
            Event::Warning {
                message: "hook said \u{1b}[31mred\u{7}".into(),
            },
        ));
        assert_eq!(buffer.contents(), "warning: hook said ?[31mred?\n");
    }
}
