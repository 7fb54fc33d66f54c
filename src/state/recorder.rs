//! Keeps a rollout's journal in step with its engine, through this process's hold on the
//! rollout: each step is written before the engine acts on it (`Ledger`), fenced by the store;
//! measurements are kept in memory and written now and then.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use super::journal::{Journal, now};
use super::store::{Hold, StoreError};
use crate::event::{Event, Ledger, LedgerError, Reporter, Stamped};

pub struct JournalReporter {
    hold: Arc<dyn Hold>,
    journal: Arc<Mutex<Journal>>,
    /// One write at a time, each of the journal as it is when the write starts: a slow write
    /// of older measurements must never land after a newer step.
    writing: Arc<tokio::sync::Mutex<()>>,
    /// Measurements alone are written at most this often.
    measurement_gap: Duration,
    last_save: Mutex<std::time::Instant>,
    /// Whether a failed write of measurements was already reported.
    warned: Arc<AtomicBool>,
    /// A local journal is given up on after a few tries; a shared one is waited for as long as
    /// the lease allows.
    shared: bool,
}

/// How many times a local journal write is tried before the step is given up.
const LOCAL_ATTEMPTS: u32 = 3;

impl JournalReporter {
    /// Writes the journal at once: the run is on record (and, on a shared store, whoever held
    /// it before is fenced out) before anything is touched.
    pub async fn create(
        hold: Arc<dyn Hold>,
        journal: Journal,
        measurement_gap: Duration,
        shared: bool,
    ) -> Result<Self, StoreError> {
        hold.write_journal(&journal, true).await?;
        Ok(JournalReporter {
            hold,
            journal: Arc::new(Mutex::new(journal)),
            writing: Arc::new(tokio::sync::Mutex::new(())),
            measurement_gap,
            last_save: Mutex::new(std::time::Instant::now()),
            warned: Arc::new(AtomicBool::new(false)),
            shared,
        })
    }

    pub fn hold(&self) -> Arc<dyn Hold> {
        self.hold.clone()
    }

    /// Records a note in the journal's reason: used when the process is about to exit outside
    /// the engine (a third Ctrl-C during a rollback). The pid stays, so that `status` can name
    /// the process that stopped.
    pub async fn abandon(&self, why: &str) {
        let _writing = self.writing.lock().await;
        let snapshot = {
            let mut journal = self.journal.lock().expect("journal lock");
            journal.reason = Some(why.to_string());
            journal.updated_at = now();
            journal.clone()
        };
        if let Err(e) = self.hold.write_journal(&snapshot, true).await {
            eprintln!("error: cannot update the journal: {e}");
        }
    }

    /// Writes measurements in the background: the engine never waits for them.
    fn save_measurements(&self) {
        let (hold, journal, writing, warned) = (
            self.hold.clone(),
            self.journal.clone(),
            self.writing.clone(),
            self.warned.clone(),
        );
        tokio::spawn(async move {
            let _writing = writing.lock().await;
            let snapshot = journal.lock().expect("journal lock").clone();
            if let Err(e) = hold.write_journal(&snapshot, false).await
                && !warned.swap(true, Ordering::Relaxed)
            {
                eprintln!(
                    "warning: cannot write the latest measurements and running commands to the journal: {e} (said once)"
                );
            }
        });
    }
}

fn ledger_error(e: StoreError) -> LedgerError {
    match e {
        StoreError::Lost { .. } | StoreError::LeaseExpired { .. } => {
            LedgerError::Lost(e.to_string())
        }
        e => LedgerError::Unwritable(e.to_string()),
    }
}

#[async_trait]
impl Ledger for JournalReporter {
    /// The journal in memory takes the step only once the store holds it, so that a failed
    /// write leaves both saying the same.
    async fn record(&self, event: &Stamped) -> Result<(), LedgerError> {
        let _writing = self.writing.lock().await;
        let mut next = self.journal.lock().expect("journal lock").clone();
        next.apply(event);
        self.hold
            .write_journal(&next, true)
            .await
            .map_err(ledger_error)?;
        // Measurements may have arrived meanwhile: apply the step, do not replace the journal.
        self.journal.lock().expect("journal lock").apply(event);
        // Recorded, but the step is taken only if this process will still hold the rollout.
        self.hold.may_act().map_err(ledger_error)
    }

    fn retry_after(&self, attempt: u32) -> Option<Duration> {
        if self.shared {
            self.hold.may_act().ok()?;
            return Some(Duration::from_secs(1));
        }
        (attempt < LOCAL_ATTEMPTS).then(|| Duration::from_millis(500) * attempt)
    }

    async fn lost(&self) -> String {
        self.hold.lost().await.to_string()
    }
}

impl Reporter for JournalReporter {
    fn report(&self, event: &Stamped) {
        if Journal::is_step(&event.event) {
            // Already recorded through the ledger, before it was reported.
            return;
        }
        if !self.journal.lock().expect("journal lock").apply(event) {
            return;
        }
        // A child that may act must be on record at once: if rollout dies now, the next
        // process must find it.
        let urgent = matches!(event.event, Event::ChildStarted { .. });
        let mut last_save = self.last_save.lock().expect("journal lock");
        if !urgent && last_save.elapsed() < self.measurement_gap {
            // Kept in memory; the next step or a later measurement writes it.
            return;
        }
        *last_save = std::time::Instant::now();
        drop(last_save);
        if urgent && !self.shared {
            // Local: written before the command can do much, synchronously.
            let snapshot = self.journal.lock().expect("journal lock").clone();
            let hold = self.hold.clone();
            let written = tokio::task::block_in_place(|| {
                tokio::runtime::Handle::current()
                    .block_on(async move { hold.write_journal(&snapshot, true).await })
            });
            if let Err(e) = written {
                eprintln!("warning: cannot record a running command in the journal: {e}");
            }
            return;
        }
        self.save_measurements();
    }
}
