//! The layout of a rollout's local state folder, in one place: `STATE_DIR/NAME/` holds the
//! journal (`journal.json`), the lock (`lock`), a waiting approval's answer (`approval.json`)
//! and journals set aside because they could not be read (`journal.damaged-TIME.json`).

use std::path::{Path, PathBuf};

/// One rollout's folder in a state directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolloutDir {
    state_dir: PathBuf,
    name: String,
}

impl RolloutDir {
    pub fn new(state_dir: &Path, name: &str) -> RolloutDir {
        RolloutDir {
            state_dir: state_dir.to_path_buf(),
            name: name.to_string(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The state directory itself (`--state-dir`), for messages.
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    pub fn path(&self) -> PathBuf {
        self.state_dir.join(&self.name)
    }

    /// Whether this rollout has ever been driven with this state directory.
    pub fn exists(&self) -> bool {
        self.path().is_dir()
    }

    pub fn journal(&self) -> PathBuf {
        self.path().join("journal.json")
    }

    pub fn lock(&self) -> PathBuf {
        self.path().join("lock")
    }

    pub fn approval(&self) -> PathBuf {
        self.path().join("approval.json")
    }

    /// Where an unreadable journal is moved, named by when (`stamp`, without colons).
    pub fn damaged_journal(&self, stamp: &str) -> PathBuf {
        self.path().join(format!("journal.damaged-{stamp}.json"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_of_a_rollout_is_in_its_folder() {
        let dir = RolloutDir::new(Path::new(".rollout"), "shop");
        assert_eq!(dir.journal(), Path::new(".rollout/shop/journal.json"));
        assert_eq!(dir.lock(), Path::new(".rollout/shop/lock"));
        assert_eq!(dir.approval(), Path::new(".rollout/shop/approval.json"));
        assert_eq!(
            dir.damaged_journal("2026-11-30T120000Z"),
            Path::new(".rollout/shop/journal.damaged-2026-11-30T120000Z.json")
        );
    }
}
