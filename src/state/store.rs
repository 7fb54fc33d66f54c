//! Where rollouts keep their state, behind one trait: a local folder (the default, which needs
//! nothing), or an object store shared by every machine that operates the rollout (S3 and
//! S3-compatible stores, GCS, Azure).
//!
//! Per rollout name a store keeps its journal, who holds it (a lock, or a lease on a shared
//! store), and a pending answer to an approval gate. A process that drives a rollout first
//! takes hold of it (`StateStore::hold`); every journal write it then makes goes through that
//! hold, conditional on the version it last wrote, so that a process that has lost the rollout
//! to another cannot write, and so cannot act.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use thiserror::Error;

use super::approvals::ApprovalFile;
use super::holder::Holder;
use super::journal::Journal;

/// Opens the store at a location.
pub fn open(location: &Location) -> Result<Arc<dyn StateStore>, StoreError> {
    Ok(match location {
        Location::Local(path) => Arc::new(super::LocalStore::new(path)),
        Location::Shared(url) => Arc::new(super::SharedStore::open(url)?),
    })
}

/// A state location, parsed from `--state`, `ROLLOUT_STATE`, `[state] url` or the default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Local(PathBuf),
    /// `s3://`, `gs://` or `az://`, with the bucket (or container) and an optional prefix.
    Shared(String),
}

impl Location {
    pub fn parse(text: &str) -> Result<Location, StoreError> {
        match text.split_once("://") {
            None if !text.is_empty() => Ok(Location::Local(PathBuf::from(text))),
            Some(("file", path)) if !path.is_empty() => Ok(Location::Local(PathBuf::from(path))),
            Some(("s3" | "gs" | "az", rest)) if !rest.trim_matches('/').is_empty() => {
                Ok(Location::Shared(text.trim_end_matches('/').to_string()))
            }
            _ => Err(StoreError::Setup(format!(
                "`{text}` is not a state location: use a folder path, file://PATH, \
                 s3://BUCKET/PREFIX, gs://BUCKET/PREFIX or az://CONTAINER/PREFIX"
            ))),
        }
    }
}

#[derive(Debug, Clone, Error, PartialEq)]
pub enum StoreError {
    /// The store could not be reached or did not answer in time: it may work again.
    #[error("the state store {location} does not answer: {message}")]
    Unreachable { location: String, message: String },
    /// The store answered no for a reason that will not pass by itself (credentials,
    /// permissions, a missing bucket, a local file that cannot be written).
    #[error("{0}")]
    Refused(String),
    /// A configuration mistake: nothing was touched.
    #[error("{0}")]
    Setup(String),
    /// The journal is there but cannot be read.
    #[error("the journal {what} is damaged: {message}")]
    Damaged { what: String, message: String },
    /// Another live process holds the rollout.
    #[error("rollout `{name}` is already being driven by {}; wait for it, or stop that process{}", .holder.describe(), if *.shared { " (`--force` takes it over anyway)" } else { "" })]
    Held {
        name: String,
        holder: Box<Holder>,
        shared: bool,
    },
    /// This process had the rollout and lost it: another took it over (its lease had expired).
    #[error("this process lost rollout `{name}` to {}", .holder.as_ref().map_or("another process".to_string(), |h| h.describe()))]
    Lost {
        name: String,
        holder: Option<Box<Holder>>,
    },
    /// This process could not renew its lease in time (the store did not answer): another may
    /// take the rollout over at any moment, so it must not act any more.
    #[error(
        "this process could not renew its lease on rollout `{name}` before it ran out ({message})"
    )]
    LeaseExpired { name: String, message: String },
}

impl StoreError {
    /// Whether waiting and trying again may help.
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unreachable { .. })
    }
}

/// Who holds a rollout right now, as a store sees it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Holding {
    pub holder: Holder,
    /// A live process holds it: its lock is held, or its lease has not run out.
    pub live: bool,
    /// Shared stores: when the lease runs out (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
}

#[async_trait]
pub trait StateStore: Send + Sync {
    /// Where the state is, for people ("the state store s3://b/p"); never holds a credential.
    fn location(&self) -> String;

    /// The same as `--state` takes it, for commands rollout suggests.
    fn url(&self) -> String;

    /// Whether other machines may operate the same rollouts (a lease rather than a lock).
    fn is_shared(&self) -> bool;

    /// The rollout's journal; `Ok(None)` when it never ran with this store.
    async fn journal(&self, name: &str) -> Result<Option<Journal>, StoreError>;

    /// Moves a journal that cannot be read out of the way, keeping it; says where it went.
    async fn set_aside_journal(&self, name: &str) -> Result<String, StoreError>;

    /// Who holds the rollout, if anyone is on record.
    async fn holding(&self, name: &str) -> Result<Option<Holding>, StoreError>;

    /// Takes hold of the rollout for this process. A live holder refuses it (`Held`), unless
    /// `force` on a shared store. `lease` is how long a shared store's lease lasts between
    /// renewals; `warn` receives what the holder must tell people later (a renewal that failed).
    async fn hold(
        &self,
        name: &str,
        holder: Holder,
        force: bool,
        lease: Duration,
        warn: Warn,
    ) -> Result<Arc<dyn Hold>, StoreError>;

    /// Leaves an answer for the rollout's waiting approval gate (`rollout approve`).
    async fn answer(&self, name: &str, answer: &ApprovalFile) -> Result<(), StoreError>;

    /// Takes the waiting answer, if there is one, so that it counts once.
    async fn take_answer(&self, name: &str) -> Result<Option<ApprovalFile>, StoreError>;

    /// Forgets an answer left from an earlier run.
    async fn clear_answer(&self, name: &str) -> Result<(), StoreError>;

    /// Every rollout name the store holds state for, sorted.
    async fn names(&self) -> Result<Vec<String>, StoreError>;
}

/// Receives what a hold must tell people while the run goes on.
pub type Warn = Arc<dyn Fn(String) + Send + Sync>;

/// This process's hold on one rollout: a lock or a lease, with the fenced journal writes.
#[async_trait]
pub trait Hold: Send + Sync {
    /// The holder before this process, when it took over from one that had not let go.
    fn taken_over_from(&self) -> Option<Holder>;

    /// Writes the journal, conditional on the version this process last wrote: `Lost` when
    /// another process wrote since. `durable` asks for it to survive a power cut (local).
    async fn write_journal(&self, journal: &Journal, durable: bool) -> Result<(), StoreError>;

    /// Whether this process may still act: it holds the rollout, and (shared stores) its
    /// lease will not run out before the step it is about to take is done.
    fn may_act(&self) -> Result<(), StoreError>;

    /// Resolves once the rollout is lost (never, for a local lock).
    async fn lost(&self) -> StoreError;

    /// Lets go: the next process need not wait for a lease to run out.
    async fn release(&self);
}
