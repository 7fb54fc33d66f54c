//! One process at a time per rollout name.
//!
//! The lock is an advisory file lock (`flock` on Linux, through std's `File::try_lock`) on `STATE_DIR/NAME/lock`, held for as long as the process
//! lives: the kernel releases it when the process dies, however it dies, so a lock left by a
//! dead process can never block anyone. The file also says who holds it (pid, start time,
//! command), so a refused command can name the holder.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::PathBuf;

use super::RolloutDir;

use thiserror::Error;

use super::holder::Holder;

#[derive(Debug, Error)]
pub enum LockError {
    #[error(
        "rollout `{name}` is already being driven by {}; wait for it, or stop that process",
        .holder.describe()
    )]
    Held { name: String, holder: Box<Holder> },
    #[error("cannot lock {}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Held while alive; dropping it (or the process dying) releases the lock.
#[derive(Debug)]
pub struct Lock {
    _file: File,
    /// Who held the lock before, if that process died without releasing it properly.
    pub taken_over_from: Option<Holder>,
}

impl Lock {
    pub fn acquire(dir: &RolloutDir, holder: Holder) -> Result<Lock, LockError> {
        let (path, name) = (dir.lock(), dir.name());
        let io = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(dir.path()).map_err(io)?;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        let mut previous = String::new();
        let _ = file.read_to_string(&mut previous);
        let previous: Option<Holder> = serde_json::from_str(&previous).ok();
        if let Err(e) = file.try_lock() {
            let std::fs::TryLockError::WouldBlock = e else {
                return Err(io(std::io::Error::from(e)));
            };
            let holder = previous.unwrap_or(Holder {
                pid: 0,
                started_at: "an unknown time".to_string(),
                command: "(unknown)".to_string(),
                host: String::new(),
                ci_job: None,
            });
            return Err(LockError::Held {
                name: name.to_string(),
                holder: Box::new(holder),
            });
        }
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        file.write_all(
            serde_json::to_string(&holder)
                .expect("serializes")
                .as_bytes(),
        )
        .map_err(io)?;
        file.sync_all().map_err(io)?;
        // A holder recorded in the file but not holding the lock died without cleaning up.
        let taken_over_from = previous.filter(|p| p.pid != holder.pid);
        Ok(Lock {
            _file: file,
            taken_over_from,
        })
    }
}

/// Who the lock file names (the live holder, or the last one that did not let go).
pub fn recorded_holder(dir: &RolloutDir) -> Option<Holder> {
    let text = std::fs::read_to_string(dir.lock()).ok()?;
    serde_json::from_str(&text).ok()
}

/// Whether some live process holds the rollout's lock (without taking it).
pub fn is_held(dir: &RolloutDir) -> bool {
    let Ok(file) = File::open(dir.lock()) else {
        return false;
    };
    // A shared lock we get is released when the file is closed, at once.
    matches!(
        file.try_lock_shared(),
        Err(std::fs::TryLockError::WouldBlock)
    )
}

impl Drop for Lock {
    fn drop(&mut self) {
        // Leave the file: a later holder reads it. Clearing the content marks a clean release,
        // so the next holder does not report a takeover. The flock goes with the descriptor.
        let _ = self._file.set_len(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holder_for(command: &str) -> Holder {
        Holder::this_process(command)
    }

    #[test]
    fn a_second_holder_is_refused_and_named() {
        let dir = tempfile::tempdir().unwrap();
        let first = Lock::acquire(&RolloutDir::new(dir.path(), "shop"), holder_for("run")).unwrap();
        assert_eq!(first.taken_over_from, None);
        // flock is per open file description: a second open in the same process conflicts too.
        let err =
            Lock::acquire(&RolloutDir::new(dir.path(), "shop"), holder_for("resume")).unwrap_err();
        let LockError::Held { holder, .. } = &err else {
            panic!("{err}")
        };
        assert_eq!(holder.pid, std::process::id());
        assert_eq!(holder.command, "run");
        assert!(
            err.to_string()
                .contains("already being driven by `rollout run`"),
            "{err}"
        );
        drop(first);
        let again =
            Lock::acquire(&RolloutDir::new(dir.path(), "shop"), holder_for("rollback")).unwrap();
        assert_eq!(
            again.taken_over_from, None,
            "a clean release is not a takeover"
        );
    }

    #[test]
    fn a_lock_left_by_a_dead_process_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("shop")).unwrap();
        let dead = Holder {
            pid: 999_999,
            started_at: "2026-01-01T00:00:00Z".into(),
            command: "run".into(),
            host: String::new(),
            ci_job: None,
        };
        std::fs::write(
            RolloutDir::new(dir.path(), "shop").lock(),
            serde_json::to_string(&dead).unwrap(),
        )
        .unwrap();
        let lock =
            Lock::acquire(&RolloutDir::new(dir.path(), "shop"), holder_for("resume")).unwrap();
        assert_eq!(lock.taken_over_from, Some(dead));
    }
}
