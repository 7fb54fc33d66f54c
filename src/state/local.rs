//! The default store: a folder on this machine (`.rollout/`), one folder per rollout laid out
//! by `RolloutDir`. Its hold is a kernel file lock, released however the process ends, so a
//! live holder can never be taken over and a dead one never blocks anyone.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use super::RolloutDir;
use super::approvals::ApprovalFile;
use super::holder::Holder;
use super::journal::{Journal, JournalError};
use super::lock::{Lock, LockError, is_held, recorded_holder};
use super::store::{Hold, Holding, StateStore, StoreError, Warn};
use crate::exec::{ExecError, write_atomically, write_atomically_with};

pub struct LocalStore {
    root: PathBuf,
}

impl LocalStore {
    pub fn new(root: &Path) -> LocalStore {
        LocalStore {
            root: root.to_path_buf(),
        }
    }

    fn dir(&self, name: &str) -> RolloutDir {
        RolloutDir::new(&self.root, name)
    }
}

/// A file problem: a local folder does not come back by waiting, so it is not transient.
fn refused(e: impl std::fmt::Display) -> StoreError {
    StoreError::Refused(e.to_string())
}

/// Runs file work off the async runtime's threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|e| Err(refused(e)))
}

#[async_trait]
impl StateStore for LocalStore {
    fn location(&self) -> String {
        format!("the state folder {}", self.root.display())
    }

    fn url(&self) -> String {
        self.root.display().to_string()
    }

    fn is_shared(&self) -> bool {
        false
    }

    async fn journal(&self, name: &str) -> Result<Option<Journal>, StoreError> {
        let path = self.dir(name).journal();
        blocking(move || {
            Journal::load(&path).map_err(|e| match e {
                JournalError::Damaged { path, source } => StoreError::Damaged {
                    what: path.display().to_string(),
                    message: source.to_string(),
                },
                // Unreadable (a directory in its place, say) is as good as damaged: the way
                // out is the same.
                JournalError::Read { path, source } => StoreError::Damaged {
                    what: path.display().to_string(),
                    message: source.to_string(),
                },
                other => refused(other),
            })
        })
        .await
    }

    async fn set_aside_journal(&self, name: &str) -> Result<String, StoreError> {
        let dir = self.dir(name);
        blocking(move || {
            Journal::set_aside(&dir)
                .map(|aside| aside.display().to_string())
                .map_err(refused)
        })
        .await
    }

    async fn holding(&self, name: &str) -> Result<Option<Holding>, StoreError> {
        let dir = self.dir(name);
        blocking(move || {
            Ok(recorded_holder(&dir).map(|holder| Holding {
                holder,
                live: is_held(&dir),
                until: None,
            }))
        })
        .await
    }

    async fn hold(
        &self,
        name: &str,
        holder: Holder,
        _force: bool,
        _lease: Duration,
        _warn: Warn,
    ) -> Result<Arc<dyn Hold>, StoreError> {
        let dir = self.dir(name);
        let locked = dir.clone();
        let lock = blocking(move || {
            Lock::acquire(&locked, holder).map_err(|e| match e {
                LockError::Held { name, holder } => StoreError::Held {
                    name,
                    holder,
                    shared: false,
                },
                other => refused(other),
            })
        })
        .await?;
        Ok(Arc::new(LocalHold {
            taken_over_from: lock.taken_over_from.clone(),
            lock: Mutex::new(Some(lock)),
            dir,
        }))
    }

    async fn answer(&self, name: &str, answer: &ApprovalFile) -> Result<(), StoreError> {
        let path = self.dir(name).approval();
        let text = serde_json::to_string(answer).expect("an answer serializes");
        blocking(move || write_atomically(&path, text.as_bytes()).map_err(refused)).await
    }

    async fn take_answer(&self, name: &str) -> Result<Option<ApprovalFile>, StoreError> {
        let path = self.dir(name).approval();
        blocking(move || {
            let Ok(text) = std::fs::read_to_string(&path) else {
                return Ok(None);
            };
            let _ = std::fs::remove_file(&path);
            // A half-written or foreign file is no answer.
            Ok(serde_json::from_str(&text).ok())
        })
        .await
    }

    async fn clear_answer(&self, name: &str) -> Result<(), StoreError> {
        let path = self.dir(name).approval();
        blocking(move || match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(refused(ExecError::Io {
                op: "remove",
                path,
                source: e,
            })),
            _ => Ok(()),
        })
        .await
    }

    async fn names(&self) -> Result<Vec<String>, StoreError> {
        let root = self.root.clone();
        blocking(move || {
            let entries = match std::fs::read_dir(&root) {
                Ok(entries) => entries,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
                Err(e) => return Err(refused(format!("cannot list {}: {e}", root.display()))),
            };
            let mut names: Vec<String> = entries
                .filter_map(|entry| entry.ok())
                .filter(|entry| entry.path().join("journal.json").exists())
                .filter_map(|entry| entry.file_name().into_string().ok())
                .collect();
            names.sort();
            Ok(names)
        })
        .await
    }
}

struct LocalHold {
    lock: Mutex<Option<Lock>>,
    taken_over_from: Option<Holder>,
    dir: RolloutDir,
}

#[async_trait]
impl Hold for LocalHold {
    fn taken_over_from(&self) -> Option<Holder> {
        self.taken_over_from.clone()
    }

    /// The lock makes this process the only writer: no version to check.
    async fn write_journal(&self, journal: &Journal, durable: bool) -> Result<(), StoreError> {
        let (path, text) = (
            self.dir.journal(),
            serde_json::to_string_pretty(journal).expect("the journal serializes"),
        );
        blocking(move || write_atomically_with(&path, text.as_bytes(), durable).map_err(refused))
            .await
    }

    fn may_act(&self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn lost(&self) -> StoreError {
        std::future::pending().await
    }

    async fn release(&self) {
        self.lock.lock().expect("lock slot").take();
    }
}
