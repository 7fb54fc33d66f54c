//! What outlives one process: the journal of each rollout, the lock that keeps two processes
//! from driving the same rollout, and answers to its approval gates. All live in the state
//! directory (`--state-dir`, `ROLLOUT_STATE_DIR`, default `.rollout/`), one folder per rollout
//! name, laid out by `RolloutDir`.

pub mod approvals;
pub mod dir;
pub mod journal;
pub mod lock;

pub use dir::RolloutDir;
pub use journal::{Journal, JournalReporter, Pending, Status};
pub use lock::{Lock, LockError};
