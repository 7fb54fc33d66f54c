//! The table printed when a run ends: each stage, its time, each metric's last value and
//! verdict, and the final decision in one sentence.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::SystemTime;

use comfy_table::{Cell, Table};

use super::text;
use crate::engine::event::{Event, Measurement, Outcome, Reporter, Stamped};

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
    use crate::engine::event::OutcomeKind::*;
    match outcome.kind {
        Promoted => "promoted",
        Failed => "failed",
        RolledBack => "rolled back",
        Paused => "paused",
        RollbackFailed => "rollback failed",
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
