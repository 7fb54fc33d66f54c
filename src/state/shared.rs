//! State shared by every machine that operates a rollout, in an object store (S3 and
//! S3-compatible stores, GCS, Azure), through the `object_store` crate. Under its prefix, per
//! rollout: `NAME/journal.json`, `NAME/lease.json`, `NAME/approval.json`.
//!
//! The lock is a **lease**: created with a conditional put (If-None-Match), renewed by its
//! holder every third of its length with a put conditional on the version it last wrote
//! (If-Match), and taken over by another process only once it has run out (by that process's
//! clock) or with `--force`. Every journal write is conditional on the version the holder last
//! wrote (**fencing**): a process frozen past its lease, whose rollout was taken over, finds its
//! next write refused and stops without acting. Clocks of the machines involved are assumed to
//! agree to within a third of a lease.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{
    ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, RetryConfig, UpdateVersion,
};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::time::Instant;

use super::approvals::ApprovalFile;
use super::holder::Holder;
use super::journal::Journal;
use super::store::{Hold, Holding, StateStore, StoreError, Warn};

/// The longest one store request may take, retries included, before the store counts as not
/// answering: a lease renewal must come back well within a lease.
const OP_TIMEOUT: Duration = Duration::from_secs(10);

pub struct SharedStore {
    store: Arc<dyn ObjectStore>,
    url: String,
}

/// `NAME/lease.json`: who holds the rollout, and until when.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Lease {
    holder: Holder,
    /// When the holder last renewed it, by its own clock.
    renewed_at: String,
    lease_ms: u64,
    /// Let go on purpose: the next process need not wait for it to run out.
    #[serde(default)]
    released: bool,
}

impl Lease {
    fn new(holder: Holder, lease: Duration) -> Lease {
        Lease {
            holder,
            renewed_at: stamp(SystemTime::now()),
            lease_ms: lease.as_millis() as u64,
            released: false,
        }
    }

    fn runs_out(&self) -> Option<SystemTime> {
        let renewed = humantime::parse_rfc3339(&self.renewed_at).ok()?;
        Some(renewed + Duration::from_millis(self.lease_ms))
    }

    fn is_live(&self, now: SystemTime) -> bool {
        !self.released && self.runs_out().is_some_and(|end| now < end)
    }
}

fn stamp(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

impl SharedStore {
    /// Opens `s3://BUCKET/PREFIX`, `gs://BUCKET/PREFIX` or `az://CONTAINER/PREFIX`, with
    /// credentials, region and endpoint from the standard environment of each cloud
    /// (`AWS_ENDPOINT_URL`, `AWS_REGION`, ...).
    pub fn open(url: &str) -> Result<SharedStore, StoreError> {
        let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
        let bucket = rest.split('/').next().unwrap_or_default();
        let prefix = rest[bucket.len()..].trim_matches('/');
        let retry = RetryConfig {
            max_retries: 3,
            retry_timeout: OP_TIMEOUT,
            ..RetryConfig::default()
        };
        let bucket_url = format!("{scheme}://{bucket}");
        let setup = |e: object_store::Error| {
            StoreError::Setup(format!("cannot use the state store {url}: {e}"))
        };
        // Each cloud's builder reads that cloud's standard environment; they share no trait.
        macro_rules! from_env {
            ($builder:ty) => {
                Arc::new(
                    <$builder>::from_env()
                        .with_url(bucket_url)
                        .with_retry(retry)
                        .build()
                        .map_err(setup)?,
                ) as Arc<dyn ObjectStore>
            };
        }
        let store = match scheme {
            "s3" => from_env!(object_store::aws::AmazonS3Builder),
            "gs" => from_env!(object_store::gcp::GoogleCloudStorageBuilder),
            "az" => from_env!(object_store::azure::MicrosoftAzureBuilder),
            _ => {
                return Err(StoreError::Setup(format!(
                    "`{url}` is not an s3://, gs:// or az:// URL"
                )));
            }
        };
        let store: Arc<dyn ObjectStore> = if prefix.is_empty() {
            store
        } else {
            Arc::new(PrefixStore::new(store, Path::from(prefix)))
        };
        Ok(SharedStore::with_store(store, url))
    }

    /// Over any object store (an in-memory one in tests).
    pub fn with_store(store: Arc<dyn ObjectStore>, url: &str) -> SharedStore {
        SharedStore {
            store,
            url: url.trim_end_matches('/').to_string(),
        }
    }

    async fn take(
        &self,
        name: &str,
        holder: Holder,
        force: bool,
        lease: Duration,
        warn: Warn,
    ) -> Result<Arc<SharedHold>, StoreError> {
        let ops = self.ops();
        let (lease_tag, taken_over_from) = take_lease(&ops, name, &holder, force, lease).await?;
        // The journal's current version is where this holder's fenced writes start; its first
        // write fences out whoever held the rollout before.
        let journal_tag = ops
            .get(&Ops::key(name, "journal.json"))
            .await?
            .and_then(|(_, tag)| tag);
        Ok(SharedHold::start(
            ops,
            name,
            holder,
            lease,
            lease_tag,
            journal_tag,
            taken_over_from,
            warn,
        ))
    }

    fn ops(&self) -> Ops {
        Ops {
            store: self.store.clone(),
            url: self.url.clone(),
        }
    }
}

/// The store's requests, each bounded in time, with errors in the store's own terms.
#[derive(Clone)]
struct Ops {
    store: Arc<dyn ObjectStore>,
    url: String,
}

/// What a conditional put came to.
enum Put {
    Done(Option<String>),
    /// The condition did not hold: someone else wrote first.
    Refused,
}

impl Ops {
    fn key(name: &str, file: &str) -> Path {
        Path::from(format!("{name}/{file}"))
    }

    fn shown(&self, key: &Path) -> String {
        format!("{}/{key}", self.url)
    }

    fn error(&self, e: object_store::Error) -> StoreError {
        use object_store::Error as E;
        match e {
            E::PermissionDenied { .. } | E::Unauthenticated { .. } => StoreError::Refused(format!(
                "the state store {} refused the credentials: {e} (they come from the cloud's \
                 standard environment, e.g. AWS_ACCESS_KEY_ID and AWS_PROFILE)",
                self.url
            )),
            e => StoreError::Unreachable {
                location: self.url.clone(),
                message: e.to_string(),
            },
        }
    }

    async fn bounded<T>(
        &self,
        op: impl std::future::Future<Output = Result<T, object_store::Error>>,
    ) -> Result<Result<T, object_store::Error>, StoreError> {
        tokio::time::timeout(OP_TIMEOUT, op)
            .await
            .map_err(|_| StoreError::Unreachable {
                location: self.url.clone(),
                message: format!(
                    "no answer within {}",
                    humantime::format_duration(OP_TIMEOUT)
                ),
            })
    }

    /// The object and its version; `None` when there is none.
    async fn get(&self, key: &Path) -> Result<Option<(Vec<u8>, Option<String>)>, StoreError> {
        let read = async {
            let got = self.store.get(key).await?;
            let e_tag = got.meta.e_tag.clone();
            Ok((got.bytes().await?.to_vec(), e_tag))
        };
        match self.bounded(read).await? {
            Ok(found) => Ok(Some(found)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.error(e)),
        }
    }

    /// Creates the object when `version` is `None`, else replaces it if it is still at that
    /// version; `Refused` when the condition did not hold.
    async fn put(
        &self,
        key: &Path,
        bytes: Vec<u8>,
        version: Option<String>,
    ) -> Result<Put, StoreError> {
        let mode = match version {
            None => PutMode::Create,
            Some(e_tag) => PutMode::Update(UpdateVersion {
                e_tag: Some(e_tag),
                version: None,
            }),
        };
        let put = self
            .store
            .put_opts(key, PutPayload::from(bytes), PutOptions::from(mode));
        match self.bounded(put).await? {
            Ok(done) => Ok(Put::Done(done.e_tag)),
            Err(object_store::Error::AlreadyExists { .. })
            | Err(object_store::Error::Precondition { .. }) => Ok(Put::Refused),
            Err(e) => Err(self.error(e)),
        }
    }

    /// Writes whatever is there (answers, which carry no history).
    async fn overwrite(&self, key: &Path, bytes: Vec<u8>) -> Result<(), StoreError> {
        let put = self.store.put(key, PutPayload::from(bytes));
        self.bounded(put).await?.map_err(|e| self.error(e))?;
        Ok(())
    }

    async fn delete(&self, key: &Path) -> Result<(), StoreError> {
        match self.bounded(self.store.delete(key)).await? {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.error(e)),
        }
    }

    async fn lease(&self, name: &str) -> Result<Option<(Lease, Option<String>)>, StoreError> {
        let key = Ops::key(name, "lease.json");
        let Some((bytes, e_tag)) = self.get(&key).await? else {
            return Ok(None);
        };
        let lease = serde_json::from_slice(&bytes).map_err(|e| StoreError::Damaged {
            what: self.shown(&key),
            message: e.to_string(),
        })?;
        Ok(Some((lease, e_tag)))
    }
}

fn to_json(value: &impl Serialize) -> Vec<u8> {
    serde_json::to_vec_pretty(value).expect("state serializes")
}

#[async_trait]
impl StateStore for SharedStore {
    fn location(&self) -> String {
        format!("the state store {}", self.url)
    }

    fn url(&self) -> String {
        self.url.clone()
    }

    fn is_shared(&self) -> bool {
        true
    }

    async fn journal(&self, name: &str) -> Result<Option<Journal>, StoreError> {
        let ops = self.ops();
        let key = Ops::key(name, "journal.json");
        let Some((bytes, _)) = ops.get(&key).await? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| StoreError::Damaged {
                what: ops.shown(&key),
                message: e.to_string(),
            })
    }

    async fn set_aside_journal(&self, name: &str) -> Result<String, StoreError> {
        let ops = self.ops();
        let key = Ops::key(name, "journal.json");
        let stamp = stamp(SystemTime::now()).replace(':', "");
        let aside = Ops::key(name, &format!("journal.damaged-{stamp}.json"));
        let copy = self.store.copy(&key, &aside);
        ops.bounded(copy).await?.map_err(|e| ops.error(e))?;
        ops.delete(&key).await?;
        Ok(ops.shown(&aside))
    }

    async fn holding(&self, name: &str) -> Result<Option<Holding>, StoreError> {
        let Some((lease, _)) = self.ops().lease(name).await? else {
            return Ok(None);
        };
        Ok(Some(Holding {
            live: lease.is_live(SystemTime::now()),
            until: lease.runs_out().map(stamp),
            holder: lease.holder,
        }))
    }

    async fn hold(
        &self,
        name: &str,
        holder: Holder,
        force: bool,
        lease: Duration,
        warn: Warn,
    ) -> Result<Arc<dyn Hold>, StoreError> {
        let hold = self.take(name, holder, force, lease, warn).await?;
        Ok(hold)
    }

    async fn answer(&self, name: &str, answer: &ApprovalFile) -> Result<(), StoreError> {
        let key = Ops::key(name, "approval.json");
        self.ops().overwrite(&key, to_json(answer)).await
    }

    async fn take_answer(&self, name: &str) -> Result<Option<ApprovalFile>, StoreError> {
        let ops = self.ops();
        let key = Ops::key(name, "approval.json");
        let Some((bytes, _)) = ops.get(&key).await? else {
            return Ok(None);
        };
        ops.delete(&key).await?;
        Ok(serde_json::from_slice(&bytes).ok())
    }

    async fn clear_answer(&self, name: &str) -> Result<(), StoreError> {
        self.ops().delete(&Ops::key(name, "approval.json")).await
    }

    async fn names(&self) -> Result<Vec<String>, StoreError> {
        use futures_util::TryStreamExt;
        let ops = self.ops();
        let listed = ops
            .bounded(self.store.list(None).try_collect::<Vec<_>>())
            .await?
            .map_err(|e| ops.error(e))?;
        let mut names: Vec<String> = listed
            .iter()
            .filter_map(|meta| {
                let key = meta.location.as_ref();
                key.strip_suffix("/journal.json")
                    .filter(|name| !name.contains('/'))
                    .map(str::to_string)
            })
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }
}

/// Takes the lease: creates it, or replaces one that ran out (or, with `force`, a live one),
/// each conditional on what was read, so of two processes trying at once one wins.
async fn take_lease(
    ops: &Ops,
    name: &str,
    holder: &Holder,
    force: bool,
    lease: Duration,
) -> Result<(Option<String>, Option<Holder>), StoreError> {
    let key = Ops::key(name, "lease.json");
    let ours = to_json(&Lease::new(holder.clone(), lease));
    for _ in 0..5 {
        let (version, before) = match ops.lease(name).await? {
            None => (None, None),
            Some((current, tag)) => {
                if current.is_live(SystemTime::now()) && !force {
                    return Err(StoreError::Held {
                        name: name.to_string(),
                        holder: Box::new(current.holder),
                        shared: true,
                    });
                }
                let before = (!current.released).then_some(current.holder);
                (Some(tag.unwrap_or_default()), before)
            }
        };
        if let Put::Done(tag) = ops.put(&key, ours.clone(), version).await? {
            return Ok((tag, before));
        }
        // Someone else changed the lease between our read and our write: look again.
    }
    Err(StoreError::Unreachable {
        location: ops.url.clone(),
        message: format!("the lease on `{name}` kept changing while rollout tried to take it"),
    })
}

/// This process's lease on a rollout, renewed in the background, with fenced journal writes.
struct SharedHold {
    ops: Ops,
    name: String,
    holder: Holder,
    lease: Duration,
    lease_tag: tokio::sync::Mutex<Option<String>>,
    journal_tag: tokio::sync::Mutex<Option<String>>,
    /// Until when the lease is surely this process's: the start of the last renewal that
    /// succeeded, plus a lease.
    valid_until: Mutex<Instant>,
    lost: watch::Sender<Option<StoreError>>,
    taken_over_from: Option<Holder>,
    warn: Warn,
    renewer: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl SharedHold {
    #[allow(clippy::too_many_arguments)]
    fn start(
        ops: Ops,
        name: &str,
        holder: Holder,
        lease: Duration,
        lease_tag: Option<String>,
        journal_tag: Option<String>,
        taken_over_from: Option<Holder>,
        warn: Warn,
    ) -> Arc<SharedHold> {
        let hold = Arc::new(SharedHold {
            ops,
            name: name.to_string(),
            holder,
            lease,
            lease_tag: tokio::sync::Mutex::new(lease_tag),
            journal_tag: tokio::sync::Mutex::new(journal_tag),
            valid_until: Mutex::new(Instant::now() + lease),
            lost: watch::channel(None).0,
            taken_over_from,
            warn,
            renewer: Mutex::new(None),
        });
        let renewing = Arc::downgrade(&hold);
        let task = tokio::spawn(async move { renew(renewing).await });
        *hold.renewer.lock().expect("renewer slot") = Some(task);
        hold
    }

    /// Stops renewing, as a process frozen by SIGSTOP would.
    #[cfg(test)]
    fn freeze(&self) {
        if let Some(task) = self.renewer.lock().expect("renewer slot").take() {
            task.abort();
        }
    }

    fn lose(&self, why: StoreError) {
        self.lost.send_if_modified(|lost| {
            let first = lost.is_none();
            if first {
                *lost = Some(why);
            }
            first
        });
    }

    /// Who holds the rollout now, for the message of a refused write.
    async fn lost_to(&self) -> StoreError {
        let holder = match self.ops.lease(&self.name).await {
            Ok(Some((lease, _))) if lease.holder != self.holder => Some(Box::new(lease.holder)),
            _ => None,
        };
        StoreError::Lost {
            name: self.name.clone(),
            holder,
        }
    }

    async fn renew_once(&self) -> Result<(), StoreError> {
        let started = Instant::now();
        let mut tag = self.lease_tag.lock().await;
        let lease = Lease::new(self.holder.clone(), self.lease);
        let key = Ops::key(&self.name, "lease.json");
        match self.ops.put(&key, to_json(&lease), tag.clone()).await? {
            Put::Done(new) => {
                *tag = new;
                *self.valid_until.lock().expect("lease clock") = started + self.lease;
                Ok(())
            }
            Put::Refused => Err(self.lost_to().await),
        }
    }
}

/// Renews the lease every third of its length while the hold lives. A renewal refused means
/// the rollout was taken over; a store that does not answer is retried every second until the
/// lease would run out, and then this process must stop acting.
async fn renew(hold: std::sync::Weak<SharedHold>) {
    let mut failing = false;
    loop {
        let Some(pause) = hold.upgrade().map(|h| {
            if failing {
                Duration::from_secs(1).min(h.lease / 3)
            } else {
                h.lease / 3
            }
        }) else {
            return;
        };
        tokio::time::sleep(pause).await;
        let Some(hold) = hold.upgrade() else {
            return;
        };
        if hold.lost.borrow().is_some() {
            return;
        }
        match hold.renew_once().await {
            Ok(()) => {
                if failing {
                    (hold.warn)(format!(
                        "the lease on rollout `{}` is renewed again",
                        hold.name
                    ));
                }
                failing = false;
            }
            Err(e @ StoreError::Lost { .. }) => {
                hold.lose(e);
                return;
            }
            Err(e) => {
                let left = hold
                    .valid_until
                    .lock()
                    .expect("lease clock")
                    .saturating_duration_since(Instant::now());
                if left.is_zero() {
                    hold.lose(StoreError::LeaseExpired {
                        name: hold.name.clone(),
                        message: e.to_string(),
                    });
                    return;
                }
                if !failing {
                    (hold.warn)(format!(
                        "cannot renew the lease on rollout `{}`: {e}; retrying every second. Traffic \
                         stays where it is until the store answers (at most {} more; then this \
                         process stops without acting)",
                        hold.name,
                        humantime::format_duration(Duration::from_secs(left.as_secs()))
                    ));
                }
                failing = true;
            }
        }
    }
}

#[async_trait]
impl Hold for SharedHold {
    fn taken_over_from(&self) -> Option<Holder> {
        self.taken_over_from.clone()
    }

    async fn write_journal(&self, journal: &Journal, _durable: bool) -> Result<(), StoreError> {
        if let Some(lost) = self.lost.borrow().clone() {
            return Err(lost);
        }
        let key = Ops::key(&self.name, "journal.json");
        let bytes = to_json(journal);
        let mut tag = self.journal_tag.lock().await;
        match self.ops.put(&key, bytes.clone(), tag.clone()).await? {
            Put::Done(new) => {
                *tag = new;
                Ok(())
            }
            Put::Refused => {
                // A write whose answer was lost and then retried is refused by its own first
                // attempt: what is there now is what this process wrote, and it still holds
                // the lease.
                let lost = self.lost_to().await;
                if let StoreError::Lost { holder: None, .. } = lost
                    && let Some((there, there_tag)) = self.ops.get(&key).await?
                    && there == bytes
                {
                    *tag = there_tag;
                    return Ok(());
                }
                self.lose(lost.clone());
                Err(lost)
            }
        }
    }

    fn may_act(&self) -> Result<(), StoreError> {
        if let Some(lost) = self.lost.borrow().clone() {
            return Err(lost);
        }
        // A renewal is due every third of a lease; this much left means at most one has
        // failed, and the step about to be taken starts well inside the lease.
        let left = self
            .valid_until
            .lock()
            .expect("lease clock")
            .saturating_duration_since(Instant::now());
        if left < self.lease / 3 {
            return Err(StoreError::LeaseExpired {
                name: self.name.clone(),
                message: format!(
                    "{} of the lease left, and the store has not answered a renewal",
                    humantime::format_duration(Duration::from_millis(left.as_millis() as u64))
                ),
            });
        }
        Ok(())
    }

    async fn lost(&self) -> StoreError {
        let mut lost = self.lost.subscribe();
        let why = match lost.wait_for(Option::is_some).await {
            Ok(why) => why.clone(),
            Err(_) => None,
        };
        match why {
            Some(why) => why,
            None => std::future::pending().await,
        }
    }

    async fn release(&self) {
        if let Some(task) = self.renewer.lock().expect("renewer slot").take() {
            task.abort();
        }
        if self.lost.borrow().is_some() {
            return;
        }
        let tag = self.lease_tag.lock().await;
        let mut lease = Lease::new(self.holder.clone(), self.lease);
        lease.released = true;
        let key = Ops::key(&self.name, "lease.json");
        // Best effort: a lease not released runs out by itself.
        let _ = self.ops.put(&key, to_json(&lease), tag.clone()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;

    fn store() -> SharedStore {
        SharedStore::with_store(Arc::new(InMemory::new()), "s3://test/rollouts")
    }

    fn holder(pid: u32, command: &str) -> Holder {
        Holder {
            pid,
            started_at: "2026-11-30T10:00:00Z".into(),
            command: command.into(),
            host: "test".into(),
            ci_job: None,
        }
    }

    fn quiet() -> Warn {
        Arc::new(|_| {})
    }

    fn journal() -> Journal {
        Journal::new("shop", std::path::Path::new("plan.toml"), "abc", 3)
    }

    async fn hold(
        store: &SharedStore,
        pid: u32,
        force: bool,
        lease: Duration,
    ) -> Result<Arc<dyn Hold>, StoreError> {
        store
            .hold("shop", holder(pid, "run"), force, lease, quiet())
            .await
    }

    #[tokio::test]
    async fn a_live_lease_refuses_a_second_holder_and_names_the_first() {
        let store = store();
        let first = hold(&store, 1, false, Duration::from_secs(30))
            .await
            .unwrap();
        assert_eq!(first.taken_over_from(), None);
        let Err(StoreError::Held { holder, shared, .. }) =
            hold(&store, 2, false, Duration::from_secs(30)).await
        else {
            panic!("a second holder was let in")
        };
        assert_eq!((holder.pid, shared), (1, true));
        let holding = store.holding("shop").await.unwrap().unwrap();
        assert!(holding.live);
        assert_eq!(holding.holder.pid, 1);
    }

    #[tokio::test]
    async fn a_takeover_fences_out_the_old_holder() {
        let store = store();
        let first = hold(&store, 1, false, Duration::from_secs(30))
            .await
            .unwrap();
        first.write_journal(&journal(), true).await.unwrap();
        // --force takes over a live lease; the old holder's next write is refused.
        let second = hold(&store, 2, true, Duration::from_secs(30))
            .await
            .unwrap();
        assert_eq!(second.taken_over_from().map(|h| h.pid), Some(1));
        second.write_journal(&journal(), true).await.unwrap();
        let Err(StoreError::Lost { holder, .. }) = first.write_journal(&journal(), true).await
        else {
            panic!("the old holder could still write")
        };
        assert_eq!(holder.map(|h| h.pid), Some(2));
        assert!(matches!(first.may_act(), Err(StoreError::Lost { .. })));
        assert!(matches!(first.lost().await, StoreError::Lost { .. }));
        // The new holder is unaffected.
        second.write_journal(&journal(), true).await.unwrap();
        second.may_act().unwrap();
    }

    #[tokio::test]
    async fn a_lease_that_runs_out_can_be_taken_and_its_holder_learns_it_lost() {
        let store = store();
        let lease = Duration::from_millis(300);
        let first = store
            .take("shop", holder(1, "run"), false, lease, quiet())
            .await
            .unwrap();
        first.write_journal(&journal(), true).await.unwrap();
        // Frozen: no more renewals (as under SIGSTOP).
        first.freeze();
        tokio::time::sleep(lease + Duration::from_millis(50)).await;
        assert!(!store.holding("shop").await.unwrap().unwrap().live);
        let second = hold(&store, 2, false, lease).await.unwrap();
        assert_eq!(second.taken_over_from().map(|h| h.pid), Some(1));
        second.write_journal(&journal(), true).await.unwrap();
        // Thawed, the first may not act: its lease ran out by its own clock too, and its
        // writes are refused.
        assert!(first.may_act().is_err());
        assert!(matches!(
            first.write_journal(&journal(), true).await,
            Err(StoreError::Lost { .. })
        ));
    }

    #[tokio::test]
    async fn a_released_lease_is_free_at_once_and_no_takeover() {
        let store = store();
        let first = hold(&store, 1, false, Duration::from_secs(30))
            .await
            .unwrap();
        first.release().await;
        assert!(!store.holding("shop").await.unwrap().unwrap().live);
        let second = hold(&store, 2, false, Duration::from_secs(30))
            .await
            .unwrap();
        assert_eq!(second.taken_over_from(), None);
    }

    #[tokio::test]
    async fn of_many_processes_racing_for_a_rollout_one_wins() {
        let store = Arc::new(store());
        let mut racers = tokio::task::JoinSet::new();
        for pid in 0..16 {
            let store = store.clone();
            racers.spawn(async move { hold(&store, pid, false, Duration::from_secs(30)).await });
        }
        let mut won = 0;
        while let Some(result) = racers.join_next().await {
            match result.unwrap() {
                Ok(_) => won += 1,
                Err(StoreError::Held { .. }) => {}
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(won, 1);
    }

    #[tokio::test]
    async fn journals_answers_and_names() {
        let store = store();
        assert_eq!(store.journal("shop").await.unwrap(), None);
        let held = hold(&store, 1, false, Duration::from_secs(30))
            .await
            .unwrap();
        held.write_journal(&journal(), true).await.unwrap();
        assert_eq!(store.journal("shop").await.unwrap(), Some(journal()));
        assert_eq!(store.names().await.unwrap(), ["shop"]);
        let answer = ApprovalFile {
            approve: true,
            by: "alice".into(),
        };
        store.answer("shop", &answer).await.unwrap();
        assert_eq!(store.take_answer("shop").await.unwrap(), Some(answer));
        assert_eq!(
            store.take_answer("shop").await.unwrap(),
            None,
            "counted once"
        );
    }

    #[tokio::test]
    async fn a_damaged_journal_is_set_aside_and_kept() {
        let store = store();
        let key = Ops::key("shop", "journal.json");
        store.store.put(&key, PutPayload::from("{")).await.unwrap();
        assert!(matches!(
            store.journal("shop").await,
            Err(StoreError::Damaged { .. })
        ));
        let aside = store.set_aside_journal("shop").await.unwrap();
        assert!(
            aside.starts_with("s3://test/rollouts/shop/journal.damaged-"),
            "{aside}"
        );
        assert_eq!(store.journal("shop").await.unwrap(), None);
    }
}
