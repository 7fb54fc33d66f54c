//! `--report FILE`: the full evidence of a run as one JSON document: every measurement (time,
//! value, baseline, verdict) and every decision with its reason.

use std::path::Path;
use std::sync::Mutex;

use serde::Serialize;

use crate::event::{Event, Reporter, Stamped};

#[derive(Default)]
pub struct EvidenceCollector {
    events: Mutex<Vec<Stamped>>,
}

#[derive(Serialize)]
struct Evidence<'a> {
    plan: &'a str,
    plan_sha256: &'a str,
    outcome: Option<&'a crate::event::Outcome>,
    measurements: Vec<&'a Stamped>,
    events: &'a [Stamped],
}

impl Reporter for EvidenceCollector {
    fn report(&self, event: &Stamped) {
        self.events
            .lock()
            .expect("collector lock")
            .push(event.clone());
    }
}

impl EvidenceCollector {
    pub fn to_json(&self, plan: &str, plan_sha256: &str) -> String {
        let events = self.events.lock().expect("collector lock");
        let outcome = events.iter().rev().find_map(|e| match &e.event {
            Event::Finished(outcome) => Some(outcome),
            _ => None,
        });
        let evidence = Evidence {
            plan,
            plan_sha256,
            outcome,
            measurements: events
                .iter()
                .filter(|e| matches!(e.event, Event::Measured(_)))
                .collect(),
            events: &events,
        };
        serde_json::to_string_pretty(&evidence).expect("evidence serializes")
    }

    pub fn write(
        &self,
        path: &Path,
        plan: &str,
        plan_sha256: &str,
    ) -> Result<(), crate::exec::ExecError> {
        crate::exec::write_atomically(path, self.to_json(plan, plan_sha256).as_bytes())
    }
}
