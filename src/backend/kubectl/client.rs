//! How the backend talks to a cluster.
//!
//! `Api` is the seam: every read and every change any mode makes goes through it, at the level
//! of the cluster's API (get an object, list Deployments, patch an object with a guarded JSON
//! patch, `auth can-i`, version). `KubectlApi` is the real thing: it runs the user's kubectl
//! through the Executor. The in-memory store (`store.rs`) is the other: a dry run's objects,
//! and the unit tests' fake cluster.
//!
//! `Client` is what the modes share on top of the seam: typed reads, the permission check, a
//! guarded change with its conflict loop, and the wait for a Deployment to be rolled out.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::api::{Deployment, List, Object, Target, VersionInfo};
use crate::backend::{BackendError, Cmd, ExecError, Executor, Output};
use crate::plan::KubectlConnection;

/// The limit for one kubectl call; waits for readiness are bounded by `rollout_timeout`.
const KUBECTL_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a Deployment or route is read while waiting for it.
pub const POLL: Duration = Duration::from_millis(500);
/// How many times a change is re-read and re-applied when others keep writing the object.
const CONFLICT_ATTEMPTS: u32 = 5;

/// A kubectl command, without the program and the connection flags.
pub enum Request<'a> {
    Version,
    Get(&'a Target),
    List(&'a str),
    /// A verb on a target (`deployment.apps/inventory`) or on a resource (`deployments.apps`).
    CanI(&'a str, &'a str),
    /// A JSON patch whose first operation tests that the object is still at `guard`, the
    /// resourceVersion the operations were computed from.
    Patch {
        target: &'a Target,
        guard: &'a str,
        ops: &'a [Value],
    },
}

impl Request<'_> {
    pub fn args(&self) -> Vec<String> {
        match self {
            Request::Version => words(&["version", "-o", "json"]),
            Request::Get(target) => words(&[
                "get",
                &target.to_string(),
                "-o",
                "json",
                "--ignore-not-found",
            ]),
            Request::List(resource) => words(&["get", resource, "-o", "json"]),
            Request::CanI(verb, on) => words(&["auth", "can-i", verb, on, "--quiet"]),
            Request::Patch { target, guard, ops } => words(&[
                "patch",
                &target.to_string(),
                "--type=json",
                "-p",
                &Value::Array(guarded(guard, ops)).to_string(),
                "-o",
                "json",
            ]),
        }
    }
}

fn words(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// The operations of a patch, after the `test` of the resourceVersion they were computed from.
pub fn guarded(resource_version: &str, ops: &[Value]) -> Vec<Value> {
    let test =
        json!({"op": "test", "path": "/metadata/resourceVersion", "value": resource_version});
    std::iter::once(test).chain(ops.iter().cloned()).collect()
}

/// Builds kubectl's argv with the plan's connection flags.
#[derive(Debug, Clone)]
pub struct Kubectl {
    connection: KubectlConnection,
}

impl Kubectl {
    pub fn new(connection: &KubectlConnection) -> Kubectl {
        Kubectl {
            connection: connection.clone(),
        }
    }

    /// The full argv: the program, the plan's connection flags, then the command.
    pub fn argv(&self, command: Vec<String>) -> Vec<String> {
        let c = &self.connection;
        let mut argv = vec![c.kubectl.clone()];
        if let Some(kubeconfig) = &c.kubeconfig {
            argv.push("--kubeconfig".into());
            argv.push(kubeconfig.display().to_string());
        }
        if let Some(context) = &c.context {
            argv.push("--context".into());
            argv.push(context.clone());
        }
        argv.push("-n".into());
        argv.push(c.namespace.clone());
        argv.extend(command);
        argv
    }

    pub fn cmd(&self, request: &Request<'_>, purpose: &str) -> Cmd {
        self.cmd_with_args(request.args(), purpose)
    }

    pub fn cmd_with_args(&self, args: Vec<String>, purpose: &str) -> Cmd {
        Cmd {
            argv: self.argv(args),
            env: Vec::new(),
            timeout: KUBECTL_TIMEOUT,
            purpose: purpose.to_string(),
            // `get -o json` of every Deployment in a namespace can run to megabytes.
            stdout_keep: crate::exec::KEEP_DOCUMENT,
        }
    }

    /// The cluster, for messages about reaching it.
    pub fn cluster(&self) -> String {
        match &self.connection.context {
            Some(context) => format!("the cluster of context `{context}`"),
            None => "the cluster of the current context".to_string(),
        }
    }
}

/// What became of a patch.
#[derive(Debug)]
pub enum Patched {
    /// The object as it is after the patch.
    Applied(Value),
    /// The server refused it (a failed `test` among them): the error to report if re-reading
    /// the object shows that no one else changed it.
    Refused(BackendError),
}

/// The cluster as the backend uses it. Every implementation reports each command a real run
/// would run, with its exact argv, through the Executor.
#[async_trait]
pub trait Api: Send + Sync {
    /// Checks that kubectl runs and the cluster answers with its version.
    async fn version(&self) -> Result<(), BackendError>;
    /// Whether the credentials may do `verb` on `on` (a target, or a resource).
    async fn can_i(&self, verb: &str, on: &str) -> Result<bool, BackendError>;
    /// The object, or `None` when it does not exist.
    async fn get(&self, target: &Target, purpose: &str) -> Result<Option<Value>, BackendError>;
    /// Every object of a resource in the namespace.
    async fn list(&self, resource: &str, purpose: &str) -> Result<Vec<Value>, BackendError>;
    /// Applies `ops` to the object if it is still at resourceVersion `guard`.
    async fn patch(
        &self,
        target: &Target,
        guard: &str,
        ops: &[Value],
        purpose: &str,
    ) -> Result<Patched, BackendError>;
    /// Says what the backend checks or waits for by itself (shown in a dry run).
    fn note(&self, what: &str);
}

/// The real cluster, through the user's kubectl.
pub struct KubectlApi {
    kubectl: Kubectl,
    exec: Arc<dyn Executor>,
}

impl KubectlApi {
    pub fn new(connection: &KubectlConnection, exec: Arc<dyn Executor>) -> KubectlApi {
        KubectlApi {
            kubectl: Kubectl::new(connection),
            exec,
        }
    }

    /// Runs kubectl; a missing kubectl is said plainly, with what to do about it.
    async fn run(&self, cmd: &Cmd) -> Result<Output, BackendError> {
        match self.exec.run(cmd).await {
            Ok(output) => Ok(output),
            Err(ExecError::Spawn { program, source }) => Err(BackendError::Precondition(format!(
                "cannot run kubectl (`{program}`): {source}; install kubectl or set `kubectl` in [backend] to its path"
            ))),
            Err(e) => Err(e.into()),
        }
    }

    async fn run_checked(&self, cmd: &Cmd) -> Result<Output, BackendError> {
        let output = self.run(cmd).await?;
        if output.success() {
            Ok(output)
        } else {
            Err(BackendError::failed(cmd, &output))
        }
    }
}

#[async_trait]
impl Api for KubectlApi {
    async fn version(&self) -> Result<(), BackendError> {
        let cmd = self
            .kubectl
            .cmd(&Request::Version, "reach the cluster (preflight)");
        let output = self.run(&cmd).await?;
        let cluster = self.kubectl.cluster();
        if !output.success() {
            return Err(BackendError::Precondition(format!(
                "cannot reach {cluster} ({}): {}",
                output.status_text(),
                output.tail()
            )));
        }
        let version: VersionInfo = parse(&output, &cmd.purpose)?;
        if version.server_version.is_none() {
            return Err(BackendError::Precondition(format!(
                "kubectl did not report {cluster}'s version: {}",
                output.tail()
            )));
        }
        Ok(())
    }

    /// `--quiet` answers by exit status: 0 is yes, 1 is no.
    async fn can_i(&self, verb: &str, on: &str) -> Result<bool, BackendError> {
        let cmd = self
            .kubectl
            .cmd(&Request::CanI(verb, on), &can_i_purpose(verb, on));
        let output = self.run(&cmd).await?;
        match output.code {
            Some(0) => Ok(true),
            // Anything else, or a 1 with a message, is kubectl failing to ask.
            Some(1) if output.stderr.trim().is_empty() => Ok(false),
            _ => Err(BackendError::failed(&cmd, &output)),
        }
    }

    /// `--ignore-not-found` prints nothing for a missing object, so absence is told without
    /// reading kubectl's messages.
    async fn get(&self, target: &Target, purpose: &str) -> Result<Option<Value>, BackendError> {
        let cmd = self.kubectl.cmd(&Request::Get(target), purpose);
        let output = self.run_checked(&cmd).await?;
        if output.stdout.trim().is_empty() {
            return Ok(None);
        }
        parse(&output, purpose).map(Some)
    }

    async fn list(&self, resource: &str, purpose: &str) -> Result<Vec<Value>, BackendError> {
        let cmd = self.kubectl.cmd(&Request::List(resource), purpose);
        let output = self.run_checked(&cmd).await?;
        let list: List<Value> = parse(&output, purpose)?;
        Ok(list.items)
    }

    async fn patch(
        &self,
        target: &Target,
        guard: &str,
        ops: &[Value],
        purpose: &str,
    ) -> Result<Patched, BackendError> {
        let request = Request::Patch { target, guard, ops };
        let cmd = self.kubectl.cmd(&request, purpose);
        let output = self.run(&cmd).await?;
        if output.success() {
            parse(&output, purpose).map(Patched::Applied)
        } else {
            Ok(Patched::Refused(BackendError::failed(&cmd, &output)))
        }
    }

    fn note(&self, what: &str) {
        self.exec.note(what);
    }
}

pub fn can_i_purpose(verb: &str, on: &str) -> String {
    format!("check that `{verb}` is allowed on {on} (preflight)")
}

fn parse<T: DeserializeOwned>(output: &Output, purpose: &str) -> Result<T, BackendError> {
    if output.stdout_dropped > 0 {
        return Err(BackendError::UnexpectedOutput {
            purpose: purpose.to_string(),
            problem: format!(
                "kubectl printed more than rollout reads ({} dropped)",
                crate::exec::human_bytes(output.stdout_dropped)
            ),
        });
    }
    serde_json::from_str(&output.stdout).map_err(|e| not_expected(purpose, e))
}

fn typed<T: DeserializeOwned>(value: Value, purpose: &str) -> Result<T, BackendError> {
    serde_json::from_value(value).map_err(|e| not_expected(purpose, e))
}

fn not_expected(purpose: &str, e: serde_json::Error) -> BackendError {
    BackendError::UnexpectedOutput {
        purpose: purpose.to_string(),
        problem: format!("it is not the JSON expected ({e})"),
    }
}

/// What a change is computed from: the fields it reads, and the version they were read at.
pub trait Guarded {
    fn resource_version(&self) -> &str;
    fn generation(&self) -> i64;
}

/// Whether an object has finished rolling out, or been accepted.
#[derive(Debug, Clone, PartialEq)]
pub enum Readiness {
    Ready,
    /// Not yet, and why.
    Waiting(String),
    /// It will not get there by waiting.
    Failed(String),
}

/// What the modes share on top of the seam.
pub struct Client {
    api: Arc<dyn Api>,
    namespace: String,
    rollout_timeout: Duration,
}

impl Client {
    pub fn new(api: Arc<dyn Api>, namespace: &str, rollout_timeout: Duration) -> Client {
        Client {
            api,
            namespace: namespace.to_string(),
            rollout_timeout,
        }
    }

    pub fn rollout_timeout(&self) -> Duration {
        self.rollout_timeout
    }

    pub fn note(&self, what: &str) {
        self.api.note(what);
    }

    pub async fn check_cluster(&self) -> Result<(), BackendError> {
        self.api.version().await
    }

    /// Asks `auth can-i` for every verb the run needs, and names every one refused.
    pub async fn check_permissions(&self, needs: &[(&str, String)]) -> Result<(), BackendError> {
        let mut refused = Vec::new();
        for (verb, on) in needs {
            if !self.api.can_i(verb, on).await? {
                refused.push(format!("{verb} {on}"));
            }
        }
        if refused.is_empty() {
            return Ok(());
        }
        Err(BackendError::Precondition(format!(
            "kubectl auth can-i says the credentials may not {} in namespace {}",
            refused.join(", "),
            self.namespace
        )))
    }

    pub async fn get<T: DeserializeOwned>(
        &self,
        target: &Target,
        purpose: &str,
    ) -> Result<Option<T>, BackendError> {
        match self.api.get(target, purpose).await? {
            Some(value) => typed(value, purpose).map(Some),
            None => Ok(None),
        }
    }

    pub async fn get_existing<T: DeserializeOwned>(
        &self,
        target: &Target,
        purpose: &str,
    ) -> Result<T, BackendError> {
        self.get(target, purpose).await?.ok_or_else(|| {
            BackendError::Precondition(format!(
                "{target} does not exist in namespace {}",
                self.namespace
            ))
        })
    }

    pub async fn list<T: DeserializeOwned>(
        &self,
        resource: &str,
        purpose: &str,
    ) -> Result<Vec<T>, BackendError> {
        let items = self.api.list(resource, purpose).await?;
        items.into_iter().map(|item| typed(item, purpose)).collect()
    }

    /// Reads the object and what a change is computed from; an object the mode cannot work
    /// with is a precondition not met.
    pub async fn read<T: DeserializeOwned, V>(
        &self,
        target: &Target,
        view: impl Fn(&T) -> Result<V, String>,
    ) -> Result<(V, T), BackendError> {
        let purpose = format!("read {}", target.kind.noun());
        let object: T = self.get_existing(target, &purpose).await?;
        let view = view(&object)
            .map_err(|problem| BackendError::Precondition(format!("{target}: {problem}")))?;
        Ok((view, object))
    }

    /// Makes the object hold a change, and returns the generation to wait for. `change` gives
    /// the operations from the object as read (none when it already holds the change), and they
    /// land only on that version of it: when someone else wrote it in between, it is read again
    /// and the change recomputed. `known` is the object as just read, if it was.
    pub async fn update<T, V>(
        &self,
        target: &Target,
        purpose: &str,
        mut known: Option<V>,
        view: impl Fn(&T) -> Result<V, String> + Send + Sync,
        change: impl Fn(&V) -> Vec<Value> + Send + Sync,
    ) -> Result<i64, BackendError>
    where
        T: DeserializeOwned + Send,
        V: Guarded + Send,
    {
        let mut attempt = 1;
        loop {
            let current = match known.take() {
                Some(current) => current,
                None => self.read(target, &view).await?.0,
            };
            let ops = change(&current);
            if ops.is_empty() {
                return Ok(current.generation());
            }
            let guard = current.resource_version();
            let refusal = match self.api.patch(target, guard, &ops, purpose).await? {
                Patched::Applied(object) => {
                    let object: Object = typed(object, purpose)?;
                    return Ok(object.metadata.generation);
                }
                Patched::Refused(refusal) => refusal,
            };
            let (now, _) = self.read(target, &view).await?;
            if now.resource_version() == guard || attempt >= CONFLICT_ATTEMPTS {
                return Err(refusal);
            }
            attempt += 1;
        }
    }

    /// Polls until the Deployment's status says the rollout of `generation` is complete.
    /// `new_version`: whether it runs the new version, whose failing to become ready is the
    /// release failing its stage; anything else (the stable side, or a cluster that does not
    /// answer) is ours to report.
    pub async fn wait_rolled_out(
        &self,
        name: &str,
        generation: i64,
        new_version: bool,
    ) -> Result<(), BackendError> {
        let timeout = self.rollout_timeout;
        let what = Target::deployment(name);
        self.note(&format!(
            "wait until {what} is rolled out (its status: the new generation observed, every \
             replica updated and available, no ProgressDeadlineExceeded), at most {}",
            humantime::format_duration(timeout)
        ));
        let verdict = |why: String, read: bool| {
            if read && new_version {
                BackendError::NewVersionFailed(why)
            } else {
                BackendError::NotConfirmed(why)
            }
        };
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // A failed read is not a verdict on the rollout: keep asking until the deadline.
            let (last, read) = match self
                .get::<Deployment>(&what, "read the Deployment's rollout status")
                .await
            {
                Ok(Some(d)) => match judge_deployment(&d, generation) {
                    Readiness::Ready => return Ok(()),
                    Readiness::Failed(why) => {
                        return Err(verdict(format!("{what} failed to roll out: {why}"), true));
                    }
                    Readiness::Waiting(why) => (why, true),
                },
                Ok(None) => ("it no longer exists".to_string(), false),
                Err(e) => (e.to_string(), false),
            };
            if tokio::time::Instant::now() >= deadline {
                let why = format!(
                    "{what} did not finish rolling out within {} (rollout_timeout): {last}",
                    humantime::format_duration(timeout)
                );
                return Err(verdict(why, read));
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

/// Whether a Deployment has finished rolling out `generation` (or any later one), judged from
/// its status the way `kubectl rollout status` judges it, and also until a scale-down is done.
pub fn judge_deployment(d: &Deployment, generation: i64) -> Readiness {
    let status = &d.status;
    let wanted = d.metadata.generation.max(generation);
    if status.observed_generation < wanted {
        return Readiness::Waiting(format!(
            "the Deployment controller has not yet seen generation {wanted} (observedGeneration is {})",
            status.observed_generation
        ));
    }
    if let Some(c) = status
        .conditions
        .iter()
        .find(|c| c.kind == "Progressing" && c.reason == "ProgressDeadlineExceeded")
    {
        return Readiness::Failed(format!(
            "its Progressing condition is ProgressDeadlineExceeded (no progress within \
             progressDeadlineSeconds = {}s): {}",
            d.spec.progress_deadline_seconds.unwrap_or(600),
            c.message
        ));
    }
    let replicas = d.spec.replicas.unwrap_or(1);
    if status.updated_replicas < replicas {
        return Readiness::Waiting(format!(
            "{} of {replicas} replicas run the current pod template",
            status.updated_replicas
        ));
    }
    // Where `kubectl rollout status` waits only for old pods beyond the updated ones, this
    // also waits for the surplus of a scale-down: a canary "at 0" still serving would not be.
    if status.replicas > replicas {
        return Readiness::Waiting(format!(
            "{} replicas exist where {replicas} are wanted: the surplus is still terminating",
            status.replicas
        ));
    }
    if status.available_replicas < status.updated_replicas {
        return Readiness::Waiting(format!(
            "{} of {} updated replicas are available",
            status.available_replicas, status.updated_replicas
        ));
    }
    Readiness::Ready
}
