//! Approval gates: a person says go (or no) before a stage advances.

use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Approved { by: String },
    Rejected { by: String },
}

#[async_trait]
pub trait Approver: Send + Sync {
    /// How a person answers, for the "awaiting approval" message.
    fn how(&self, plan: &str, stage: usize) -> String;
    /// Waits for the answer for this stage. The engine bounds the wait by `max_hold`.
    async fn wait(&self, stage: usize) -> Answer;
}

/// `--yes`: every gate approved up front.
pub struct ApproveAll;

#[async_trait]
impl Approver for ApproveAll {
    fn how(&self, _plan: &str, _stage: usize) -> String {
        "approved up front by --yes".to_string()
    }

    async fn wait(&self, _stage: usize) -> Answer {
        Answer::Approved {
            by: "--yes".to_string(),
        }
    }
}

/// What `rollout approve NAME [--reject]` writes for a waiting run to read.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ApprovalFile {
    pub approve: bool,
    pub by: String,
}

/// Waits for `rollout approve NAME` from another shell or CI job, which writes a file in the
/// state directory; the run consumes it.
pub struct ApprovalByFile {
    pub path: PathBuf,
    pub poll: Duration,
}

impl ApprovalByFile {
    pub fn path_for(state_dir: &std::path::Path, name: &str) -> PathBuf {
        state_dir.join(name).join("approval.json")
    }
}

#[async_trait]
impl Approver for ApprovalByFile {
    fn how(&self, plan: &str, _stage: usize) -> String {
        format!("run `rollout approve {plan}` (or `rollout approve {plan} --reject`)")
    }

    async fn wait(&self, _stage: usize) -> Answer {
        loop {
            if let Ok(text) = tokio::fs::read_to_string(&self.path).await
                && let Ok(file) = serde_json::from_str::<ApprovalFile>(&text)
            {
                let _ = tokio::fs::remove_file(&self.path).await;
                return if file.approve {
                    Answer::Approved { by: file.by }
                } else {
                    Answer::Rejected { by: file.by }
                };
            }
            tokio::time::sleep(self.poll).await;
        }
    }
}
