//! What outlives one process: the journal of each rollout, the lock that keeps two processes
//! from driving the same rollout, and answers to its approval gates. All live in the state
//! directory (`--state-dir`, `ROLLOUT_STATE_DIR`, default `.rollout/`), one folder per rollout
//! name, laid out by `RolloutDir`.

pub mod approvals;
pub mod dir;
pub mod holder;
pub mod journal;
pub mod local;
pub mod lock;
pub mod recorder;
pub mod shared;
pub mod store;

pub use dir::RolloutDir;
pub use holder::Holder;
pub use journal::{Journal, Pending, Status};
pub use local::LocalStore;
pub use lock::{Lock, LockError};
pub use recorder::JournalReporter;
pub use shared::SharedStore;
pub use store::{Hold, Holding, Location, StateStore, StoreError};
