//! What outlives one process: the journal of each rollout and the lock that keeps two
//! processes from driving the same rollout. Both live in the state directory
//! (`--state-dir`, `ROLLOUT_STATE_DIR`, default `.rollout/`), one subdirectory per rollout name.

pub mod journal;
pub mod lock;

pub use journal::{Journal, JournalReporter, Pending, Status};
pub use lock::{Lock, LockError};
