//! Reporters render the engine's events: for a terminal (live progress), for CI logs (plain
//! timestamped lines), for machines (JSON lines), and at the end (a summary table, an evidence
//! file). Each can write into a `String`, so its output is snapshot-tested.

pub mod commands;
pub mod evidence;
pub mod github;
pub mod gitlab;
pub mod json;
pub mod plain;
pub mod plan_json;
pub mod plan_table;
pub mod progress;
pub mod runbook;
pub mod summary;
pub mod text;

use std::io::Write;
use std::sync::{Arc, Mutex};

/// Where a reporter writes: stderr, stdout, or a shared buffer in tests.
pub type Sink = Box<dyn Write + Send>;

/// A `Write` into a shared string, for tests and snapshots.
#[derive(Clone, Default)]
pub struct SharedBuffer(pub Arc<Mutex<Vec<u8>>>);

impl SharedBuffer {
    pub fn contents(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("buffer lock")).into_owned()
    }
}

impl Write for SharedBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("buffer lock").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
