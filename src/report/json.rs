//! `--output json`: one JSON object per event per line on stdout. Schema: docs/events.md.

use std::sync::Mutex;

use super::Sink;
use crate::event::{Reporter, Stamped};

pub struct JsonReporter {
    out: Mutex<Sink>,
}

impl JsonReporter {
    pub fn new(out: Sink) -> Self {
        JsonReporter {
            out: Mutex::new(out),
        }
    }
}

impl Reporter for JsonReporter {
    fn report(&self, event: &Stamped) {
        let mut out = self.out.lock().expect("reporter lock");
        if let Ok(line) = serde_json::to_string(event) {
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
    }
}
