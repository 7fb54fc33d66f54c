//! GitLab CI: the plain log, with each stage in a collapsible section
//! (`\e[0Ksection_start:TIME:NAME[collapsed=true]\r\e[0KHEADER` ... `section_end`), so a long
//! bake folds away and the decision stays in sight below the sections.

use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use super::Sink;
use super::plain::PlainReporter;
use crate::event::{Event, Reporter, Stamped};

pub struct GitlabReporter {
    /// The same stream `plain` writes to: the markers go between its lines.
    out: Mutex<Sink>,
    plain: PlainReporter,
    /// The section open now, by name.
    open: Mutex<Option<String>>,
}

impl GitlabReporter {
    pub fn new(out: Sink, plain: PlainReporter) -> Self {
        GitlabReporter {
            out: Mutex::new(out),
            plain,
            open: Mutex::new(None),
        }
    }

    fn end_section(&self, time: SystemTime) {
        let Some(name) = self.open.lock().expect("reporter lock").take() else {
            return;
        };
        let mut out = self.out.lock().expect("reporter lock");
        let _ = write!(out, "\x1b[0Ksection_end:{}:{name}\r\x1b[0K\n", unix(time));
        let _ = out.flush();
    }

    fn start_section(&self, time: SystemTime, name: String, header: &str) {
        let mut out = self.out.lock().expect("reporter lock");
        let _ = write!(
            out,
            "\x1b[0Ksection_start:{}:{name}[collapsed=true]\r\x1b[0K{header}\n",
            unix(time)
        );
        let _ = out.flush();
        *self.open.lock().expect("reporter lock") = Some(name);
    }
}

fn unix(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Reporter for GitlabReporter {
    fn report(&self, stamped: &Stamped) {
        match &stamped.event {
            Event::StageStarted {
                stage,
                stages,
                weight,
                previous_weight,
            } => {
                self.end_section(stamped.time);
                let header = format!("Stage {stage}/{stages}: {previous_weight}% -> {weight}%");
                self.start_section(stamped.time, format!("rollout_stage_{stage}"), &header);
            }
            // What ends the run stands outside every section.
            Event::RollingBack { .. } | Event::Finished(_) | Event::Interrupted { .. } => {
                self.end_section(stamped.time);
            }
            _ => {}
        }
        self.plain.report(stamped);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::event::{Measurement, Outcome, OutcomeKind, Verdict};
    use crate::report::SharedBuffer;
    use crate::report::text::Verbosity;

    fn at(secs: u64, event: Event) -> Stamped {
        Stamped {
            time: UNIX_EPOCH + Duration::from_secs(1_790_000_000 + secs),
            event,
        }
    }

    #[test]
    fn each_stage_is_a_collapsed_section_and_the_decision_stands_outside() {
        let buffer = SharedBuffer::default();
        let plain = PlainReporter::new(Box::new(buffer.clone()), Verbosity::Normal, true);
        let reporter = GitlabReporter::new(Box::new(buffer.clone()), plain);
        let events = [
            at(
                0,
                Event::StageStarted {
                    stage: 1,
                    stages: 2,
                    weight: 10.0,
                    previous_weight: 0.0,
                },
            ),
            at(
                1,
                Event::WeightApplied {
                    stage: 1,
                    weight: 10.0,
                    audience: crate::plan::Audience::Traffic,
                },
            ),
            at(
                61,
                Event::StagePassed {
                    stage: 1,
                    weight: 10.0,
                    elapsed: Duration::from_secs(60),
                },
            ),
            at(
                61,
                Event::StageStarted {
                    stage: 2,
                    stages: 2,
                    weight: 100.0,
                    previous_weight: 10.0,
                },
            ),
            at(
                71,
                Event::Measured(Measurement {
                    stage: 2,
                    metric: "errors".into(),
                    value: Some(9.0),
                    baseline: None,
                    verdict: Verdict::Breach,
                    detail: None,
                    breach_streak: 1,
                    warn_only: false,
                    shown_as_percent: false,
                    source: "prom".into(),
                    query: "GET /api/v1/query?query=q".into(),
                    baseline_query: None,
                    evaluated_at: std::time::UNIX_EPOCH,
                    breaches: 1,
                    comparison: None,
                }),
            ),
            at(
                71,
                Event::RollingBack {
                    reason: "metric errors was 9".into(),
                },
            ),
            at(
                72,
                Event::Finished(Outcome::new(
                    OutcomeKind::RolledBack,
                    "Rolled back because metric errors was 9.".into(),
                    Some(0.0),
                )),
            ),
        ];
        for event in &events {
            reporter.report(event);
        }
        assert_eq!(
            buffer.contents(),
            "\
\x1b[0Ksection_start:1790000000:rollout_stage_1[collapsed=true]\r\x1b[0KStage 1/2: 0% -> 10%
2026-09-21T14:13:20Z stage 1/2: 0% -> 10%
2026-09-21T14:13:21Z stage 1: 10% of traffic on the new version
2026-09-21T14:14:21Z stage 1 passed at 10% after 1m
\x1b[0Ksection_end:1790000061:rollout_stage_1\r\x1b[0K
\x1b[0Ksection_start:1790000061:rollout_stage_2[collapsed=true]\r\x1b[0KStage 2/2: 10% -> 100%
2026-09-21T14:14:21Z stage 2/2: 10% -> 100%
2026-09-21T14:14:31Z   errors = 9: breach (1 in a row)
\x1b[0Ksection_end:1790000071:rollout_stage_2\r\x1b[0K
2026-09-21T14:14:31Z rolling back: metric errors was 9
2026-09-21T14:14:32Z ROLLED BACK: Rolled back because metric errors was 9.
"
        );
    }
}
