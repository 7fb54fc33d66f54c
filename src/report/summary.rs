//! The table printed when a run ends: each stage, its time, each metric's last value and
//! verdict, and the final decision in one sentence.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::SystemTime;

use comfy_table::{Cell, Table};

use super::text;
use crate::event::{Event, Measurement, Outcome, Reporter, Stamped};

#[derive(Default)]
struct StageRow {
    started: Option<SystemTime>,
    ended: Option<SystemTime>,
    passed: bool,
    last: BTreeMap<String, Measurement>,
}

pub struct SummaryCollector {
    /// (stage number, weight) of every stage in the plan, reached or not.
    stages: Vec<(usize, f64)>,
    state: Mutex<(BTreeMap<usize, StageRow>, Option<Outcome>)>,
}

impl SummaryCollector {
    pub fn new(stages: Vec<(usize, f64)>) -> Self {
        SummaryCollector {
            stages,
            state: Mutex::new((BTreeMap::new(), None)),
        }
    }

    pub fn render(&self) -> String {
        let state = self.state.lock().expect("summary lock");
        let (rows, outcome) = &*state;
        let mut table = Table::new();
        table.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
        table.set_header([
            "Stage",
            "Weight",
            "Time",
            "Metrics (last measurement)",
            "Result",
        ]);
        for (number, weight) in &self.stages {
            let row = rows.get(number);
            let time = row
                .and_then(|r| r.ended?.duration_since(r.started?).ok())
                .map_or_else(|| "-".to_string(), text::duration);
            let metrics: Vec<String> = row
                .map(|r| r.last.values().map(text::measurement).collect())
                .unwrap_or_default();
            let result = match row {
                None => "not reached".to_string(),
                Some(r) if r.passed => "passed".to_string(),
                Some(_) => outcome
                    .as_ref()
                    .map_or("running", |o| kind_word(o))
                    .to_string(),
            };
            table.add_row(vec![
                Cell::new(number),
                Cell::new(text::percent(*weight)),
                Cell::new(time),
                Cell::new(metrics.join("\n")),
                Cell::new(result),
            ]);
        }
        let decision = outcome.as_ref().map_or_else(
            || "the run did not finish".to_string(),
            |o| o.reason.clone(),
        );
        format!("{table}\nDecision: {decision}\n")
    }
}

fn kind_word(outcome: &Outcome) -> &'static str {
    use crate::event::OutcomeKind::*;
    match outcome.kind {
        Promoted => "promoted",
        Failed => "failed",
        RolledBack => "rolled back",
        Paused => "paused",
        RollbackFailed => "rollback failed",
        Undecided => "undecided",
    }
}

impl Reporter for SummaryCollector {
    fn report(&self, stamped: &Stamped) {
        let mut state = self.state.lock().expect("summary lock");
        let (rows, outcome) = &mut *state;
        match &stamped.event {
            Event::StageStarted { stage, .. } => {
                rows.entry(*stage).or_default().started = Some(stamped.time);
            }
            Event::Measured(m) => {
                let row = rows.entry(m.stage).or_default();
                row.last.insert(m.metric.clone(), m.clone());
            }
            Event::StagePassed { stage, .. } => {
                let row = rows.entry(*stage).or_default();
                row.passed = true;
                row.ended = Some(stamped.time);
            }
            Event::Finished(o) => {
                for row in rows.values_mut().filter(|r| r.ended.is_none()) {
                    row.ended = Some(stamped.time);
                }
                *outcome = Some(o.clone());
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use crate::event::OutcomeKind;
    use crate::event::Verdict;

    fn at(secs: u64, event: Event) -> Stamped {
        Stamped {
            time: UNIX_EPOCH + Duration::from_secs(secs),
            event,
        }
    }

    fn measured(stage: usize, metric: &str, value: f64, verdict: Verdict) -> Event {
        Event::Measured(Measurement {
            stage,
            metric: metric.into(),
            value: Some(value),
            baseline: None,
            verdict,
            detail: None,
            breach_streak: u32::from(verdict == Verdict::Breach),
            warn_only: false,
            shown_as_percent: metric == "errors",
            source: "prom".into(),
            query: "GET /api/v1/query?query=q".into(),
            baseline_query: None,
            evaluated_at: std::time::UNIX_EPOCH,
            breaches: 0,
            comparison: None,
        })
    }

    #[test]
    fn a_table_of_stages_and_the_decision() {
        let summary = SummaryCollector::new(vec![(1, 10.0), (2, 50.0), (3, 100.0)]);
        let events = [
            at(
                0,
                Event::StageStarted {
                    stage: 1,
                    stages: 3,
                    weight: 10.0,
                    previous_weight: 0.0,
                },
            ),
            at(30, measured(1, "errors", 0.001, Verdict::Pass)),
            at(30, measured(1, "latency", 120.0, Verdict::Pass)),
            at(
                62,
                Event::StagePassed {
                    stage: 1,
                    weight: 10.0,
                    elapsed: Duration::from_secs(62),
                },
            ),
            at(
                62,
                Event::StageStarted {
                    stage: 2,
                    stages: 3,
                    weight: 50.0,
                    previous_weight: 10.0,
                },
            ),
            at(92, measured(2, "errors", 0.2, Verdict::Breach)),
            at(
                93,
                Event::Finished(Outcome::new(
                    OutcomeKind::RolledBack,
                    "Rolled back because errors was 0.2.".into(),
                    Some(0.0),
                )),
            ),
        ];
        for event in &events {
            summary.report(event);
        }
        assert_eq!(
            summary.render(),
            "\
┌───────┬────────┬───────┬───────────────────────────────────┬─────────────┐
│ Stage ┆ Weight ┆ Time  ┆ Metrics (last measurement)        ┆ Result      │
╞═══════╪════════╪═══════╪═══════════════════════════════════╪═════════════╡
│ 1     ┆ 10%    ┆ 1m 2s ┆ errors = 0.1%: pass               ┆ passed      │
│       ┆        ┆       ┆ latency = 120: pass               ┆             │
│ 2     ┆ 50%    ┆ 31s   ┆ errors = 20%: breach (1 in a row) ┆ rolled back │
│ 3     ┆ 100%   ┆ -     ┆                                   ┆ not reached │
└───────┴────────┴───────┴───────────────────────────────────┴─────────────┘
Decision: Rolled back because errors was 0.2.
"
        );
    }
}
