//! Answers to approval gates left in a rollout's state by `rollout approve NAME`, from another
//! shell, CI job or machine, for the waiting run to read.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::store::StateStore;
use crate::approval::{Answer, Approver};

/// What `rollout approve NAME [--reject]` leaves for a waiting run to read.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ApprovalFile {
    pub approve: bool,
    pub by: String,
}

/// Waits for `rollout approve NAME` with the same state (a local folder or a shared store); the
/// run takes the answer, so it counts once.
pub struct StoreApprover {
    pub store: Arc<dyn StateStore>,
    pub name: String,
    /// How often the store is looked at: an answer is seen within this long.
    pub poll: Duration,
}

#[async_trait]
impl Approver for StoreApprover {
    fn how(&self, plan: &str, _stage: usize) -> String {
        let state = if self.store.is_shared() {
            format!(" --state {}", self.store.url())
        } else {
            String::new()
        };
        format!("run `rollout approve {plan}{state}` (or `rollout approve {plan}{state} --reject`)")
    }

    async fn wait(&self, _stage: usize) -> Answer {
        loop {
            // A store that does not answer now may answer at the next look; the engine bounds
            // the whole wait by max_hold.
            if let Ok(Some(file)) = self.store.take_answer(&self.name).await {
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
