//! Approval gates: a person says go (or no) before a stage advances. The engine waits on an
//! `Approver`; where the answer comes from (a terminal, `rollout approve` through the state
//! folder, `--yes`) is the caller's business.

use async_trait::async_trait;

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
