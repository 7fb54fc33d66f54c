//! Answers to approval gates left in a rollout's state folder by `rollout approve NAME`, from
//! another shell or CI job, for the waiting run to read.

use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::approval::{Answer, Approver};

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
