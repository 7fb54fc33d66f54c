//! One timestamped line per event, no control characters: for CI logs and pipes.

use std::sync::Mutex;

use super::Sink;
use super::text::{Verbosity, line};
use crate::engine::event::{Reporter, Stamped};

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
