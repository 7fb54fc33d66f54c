//! A cluster kept in memory, behind the same `Api` seam as the real one.
//!
//! A dry run uses it with the objects the plan implies (`InMemory::assumed`): each command a
//! real run would run is reported through the (dry) Executor with its exact argv, and the
//! answers come from these objects, which every patch changes as the API server would. So a
//! later stage computes its patch from the earlier ones, as a real run does, and nothing in
//! the modes' logic knows whether the run is dry.
//!
//! Unit tests use it as a fake cluster (`InMemory::new`, then `Store::insert`), with knobs for
//! what a real cluster does to a run: a verb refused, another writer, a Deployment whose new
//! version never becomes available.
//!
//! Its controller is instant: a Deployment is rolled out as soon as it is written, and a route
//! accepted. It runs no pods and validates nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use serde_json::{Value, json};

use super::api::{DEPLOYMENTS, Kind, Target};
use super::client::{Api, Kubectl, Patched, Request, can_i_purpose, guarded};
use crate::backend::{BackendError, Executor};
use crate::plan::{GatewaySpec, KubectlBackend, KubectlMode, ReplicasSpec};

/// What a dry run shows for values that only the cluster knows.
pub const RESOURCE_VERSION: &str = "<resourceVersion>";
pub const IMAGE_BEFORE: &str = "<image before the run>";

pub struct InMemory {
    kubectl: Kubectl,
    exec: Arc<dyn Executor>,
    store: Mutex<Store>,
}

/// The objects, and how the fake cluster behaves.
#[derive(Debug, Default)]
pub struct Store {
    objects: BTreeMap<Target, Value>,
    /// The objects are a dry run's assumptions: resourceVersions stay a placeholder, and a
    /// position in an array is shown as a placeholder too (`<index of app>`), since the real
    /// object may hold other items before it.
    assumed: bool,
    revision: u64,
    /// `(verb, target)` pairs that `auth can-i` answers no.
    pub refused: BTreeSet<(String, String)>,
    /// Objects that someone else edits just before the next patch to them lands.
    pub interfere: BTreeSet<Target>,
    /// Images whose pods never become available: a Deployment running one with pods is past
    /// its progress deadline at once.
    pub never_ready: BTreeSet<String>,
    /// Every patch applied, in order.
    pub patches: Vec<(Target, Vec<Value>)>,
}

impl InMemory {
    /// An empty cluster for tests; `exec` should be a dry executor, which only reports.
    pub fn new(kubectl: Kubectl, exec: Arc<dyn Executor>, store: Store) -> InMemory {
        debug_assert!(exec.is_dry_run(), "an in-memory cluster runs nothing");
        InMemory {
            kubectl,
            exec,
            store: Mutex::new(store),
        }
    }

    /// The objects a dry run starts from, as the plan implies them: replicas mode, the stable
    /// Deployment at `replicas` pods and the canary at 0, both running an image not yet known
    /// and rolled out; gateway mode, the route sending everything to the stable Service, one
    /// rule naming both Services, accepted by its Gateway.
    pub fn assumed(spec: &KubectlBackend, exec: Arc<dyn Executor>) -> InMemory {
        let mut store = Store {
            assumed: true,
            ..Store::default()
        };
        let namespace = spec.connection.namespace.as_str();
        match &spec.mode {
            KubectlMode::Replicas(mode) => assume_deployments(&mut store, namespace, mode),
            KubectlMode::Gateway(mode) => assume_route(&mut store, namespace, mode),
        }
        InMemory::new(Kubectl::new(&spec.connection), exec, store)
    }

    pub fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().expect("the store's lock")
    }

    /// Reports the command as the executor reports any: a dry executor shows it.
    async fn report(&self, args: Vec<String>, purpose: &str) -> Result<(), BackendError> {
        let cmd = self.kubectl.cmd_with_args(args, purpose);
        self.exec.run(&cmd).await?;
        Ok(())
    }
}

fn assume_deployments(store: &mut Store, namespace: &str, mode: &ReplicasSpec) {
    for (name, replicas) in [
        (&mode.stable_deployment, mode.replicas),
        (&mode.canary_deployment, 0),
    ] {
        store.insert_reconciled(json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "replicas": replicas,
                "template": {"spec": {"containers": [{"name": mode.container, "image": IMAGE_BEFORE}]}},
            },
        }));
    }
}

fn assume_route(store: &mut Store, namespace: &str, mode: &GatewaySpec) {
    store.insert_reconciled(json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": mode.route, "namespace": namespace},
        "spec": {"rules": [{"backendRefs": [
            {"name": mode.stable_service, "port": 80, "weight": 100},
            {"name": mode.canary_service, "port": 80, "weight": 0},
        ]}]},
        "status": {"parents": [{"parentRef": {"name": "<gateway>"}, "conditions": []}]},
    }));
    for service in [&mode.stable_service, &mode.canary_service] {
        store.insert_reconciled(json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": service, "namespace": namespace},
            "spec": {},
        }));
    }
}

impl Store {
    /// A fake cluster whose objects have real resourceVersions.
    #[cfg(test)]
    pub fn new() -> Store {
        Store::default()
    }

    /// Adds an object, given as `kubectl get -o json` prints it (`kind` and `metadata.name`
    /// say where it goes), with the status it carries.
    #[cfg(test)]
    pub fn insert(&mut self, object: Value) {
        self.put(object, false);
    }

    /// Adds an object with the status its controller would give it by now.
    pub fn insert_reconciled(&mut self, object: Value) {
        self.put(object, true);
    }

    fn put(&mut self, mut object: Value, reconcile: bool) {
        let kind = match object["kind"].as_str() {
            Some("Deployment") => Kind::Deployment,
            Some("HTTPRoute") => Kind::HttpRoute,
            Some("Service") => Kind::Service,
            other => panic!("the in-memory cluster does not keep {other:?}"),
        };
        let name = object["metadata"]["name"].as_str().unwrap_or_default();
        let target = Target::new(kind, name);
        let meta = &mut object["metadata"];
        if meta.get("generation").is_none() {
            meta["generation"] = json!(1);
        }
        meta["resourceVersion"] = json!(self.next_revision());
        if reconcile {
            self.reconcile(target.kind, &mut object);
        }
        self.objects.insert(target, object);
    }

    pub fn get(&self, target: &Target) -> Option<&Value> {
        self.objects.get(target)
    }

    fn next_revision(&mut self) -> String {
        if self.assumed {
            return RESOURCE_VERSION.to_string();
        }
        self.revision += 1;
        self.revision.to_string()
    }

    /// Someone else's edit: an annotation, which changes the resourceVersion and nothing else.
    fn edit_by_someone_else(&mut self, target: &Target) {
        let revision = self.next_revision();
        if let Some(object) = self.objects.get_mut(target) {
            object["metadata"]["annotations"]["example.com/edited-by"] = json!("someone-else");
            object["metadata"]["resourceVersion"] = json!(revision);
        }
    }

    /// Applies a patch as the API server does: all of it or nothing, `status` untouched, the
    /// generation bumped when `spec` changes, a new resourceVersion when anything does.
    fn patch(&mut self, target: &Target, ops: &[Value]) -> Result<Value, String> {
        if self.interfere.remove(target) {
            self.edit_by_someone_else(target);
        }
        let before = self
            .objects
            .get(target)
            .ok_or_else(|| format!("{target} not found"))?
            .clone();
        let mut after = before.clone();
        apply_json_patch(&mut after, ops)?;
        // `status` is a subresource: a write to the object leaves it as it was.
        match (before.get("status"), after.as_object_mut()) {
            (Some(status), Some(members)) => {
                members.insert("status".into(), status.clone());
            }
            (None, Some(members)) => {
                members.remove("status");
            }
            (_, None) => {
                return Err(format!(
                    "the patch makes {target} something other than an object"
                ));
            }
        }
        if after == before {
            return Ok(before);
        }
        if after["spec"] != before["spec"] {
            let generation = before["metadata"]["generation"].as_i64().unwrap_or(1);
            after["metadata"]["generation"] = json!(generation + 1);
        }
        after["metadata"]["resourceVersion"] = json!(self.next_revision());
        self.reconcile(target.kind, &mut after);
        self.patches.push((target.clone(), ops.to_vec()));
        self.objects.insert(target.clone(), after.clone());
        Ok(after)
    }

    /// The controllers, done at once: a Deployment rolled out (or, running a never-ready image,
    /// past its progress deadline), a route accepted at its generation.
    fn reconcile(&self, kind: Kind, object: &mut Value) {
        let generation = object["metadata"]["generation"].clone();
        match kind {
            Kind::Deployment => {
                let replicas = object["spec"]["replicas"].as_u64().unwrap_or(1);
                let stuck = replicas > 0 && self.runs_never_ready_image(object);
                let (available, condition) = if stuck {
                    (
                        0,
                        json!({"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                               "message": "ReplicaSet has timed out progressing."}),
                    )
                } else {
                    (
                        replicas,
                        json!({"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable",
                                      "message": "ReplicaSet has successfully progressed."}),
                    )
                };
                object["status"] = json!({
                    "observedGeneration": generation,
                    "replicas": replicas,
                    "updatedReplicas": replicas,
                    "readyReplicas": available,
                    "availableReplicas": available,
                    "conditions": [condition],
                });
            }
            Kind::HttpRoute => {
                if let Some(parents) = object["status"]["parents"].as_array_mut() {
                    for parent in parents {
                        parent["conditions"] = json!([
                            {"type": "Accepted", "status": "True", "reason": "Accepted", "message": "", "observedGeneration": generation},
                            {"type": "ResolvedRefs", "status": "True", "reason": "ResolvedRefs", "message": "", "observedGeneration": generation},
                        ]);
                    }
                }
            }
            Kind::Service => {}
        }
    }

    fn runs_never_ready_image(&self, deployment: &Value) -> bool {
        let containers = &deployment["spec"]["template"]["spec"]["containers"];
        containers.as_array().is_some_and(|containers| {
            containers
                .iter()
                .filter_map(|c| c["image"].as_str())
                .any(|image| self.never_ready.contains(image))
        })
    }

    /// The operations as a dry run shows them: a position in an array of the assumed objects
    /// is a placeholder naming the item (`<index of app>`), or its kind (`<rule>`).
    fn shown(&self, target: &Target, ops: Vec<Value>) -> Vec<Value> {
        let Some(object) = self.objects.get(target).filter(|_| self.assumed) else {
            return ops;
        };
        ops.into_iter()
            .map(|mut op| {
                if let Some(path) = op["path"].as_str() {
                    op["path"] = json!(shown_pointer(object, path));
                }
                op
            })
            .collect()
    }
}

fn shown_pointer(object: &Value, pointer: &str) -> String {
    let mut shown = String::new();
    let mut node = Some(object);
    let mut key = "";
    for token in pointer.split('/').skip(1) {
        let item = node.and_then(|n| match n {
            Value::Array(items) => token.parse::<usize>().ok().and_then(|i| items.get(i)),
            other => other.get(unescape(token)),
        });
        shown.push('/');
        match (node, item) {
            (Some(Value::Array(_)), Some(item)) => match item["name"].as_str() {
                Some(name) => shown.push_str(&format!("<index of {name}>")),
                None => shown.push_str(&format!("<{}>", key.trim_end_matches('s'))),
            },
            _ => shown.push_str(token),
        }
        key = token;
        node = item;
    }
    shown
}

fn unescape(token: &str) -> String {
    token.replace("~1", "/").replace("~0", "~")
}

/// RFC 6902, for the operations the backend writes (`test`, `add`, `replace`, `remove`): all
/// of them or none.
pub fn apply_json_patch(object: &mut Value, ops: &[Value]) -> Result<(), String> {
    let mut patched = object.clone();
    for op in ops {
        let path = op["path"].as_str().ok_or("an operation without a path")?;
        let value = &op["value"];
        match op["op"].as_str().unwrap_or_default() {
            "test" if patched.pointer(path) == Some(value) => {}
            "test" => return Err(format!("the test of {path} failed")),
            "replace" => {
                *patched
                    .pointer_mut(path)
                    .ok_or_else(|| format!("no {path} to replace"))? = value.clone();
            }
            "add" => add(&mut patched, path, value.clone())?,
            "remove" => remove(&mut patched, path)?,
            other => return Err(format!("unsupported operation {other:?}")),
        }
    }
    *object = patched;
    Ok(())
}

fn parent_of<'v>(object: &'v mut Value, path: &str) -> Result<(&'v mut Value, String), String> {
    let (parent, last) = path.rsplit_once('/').ok_or("a path must start with /")?;
    let parent = object
        .pointer_mut(parent)
        .ok_or_else(|| format!("no {parent} to change"))?;
    Ok((parent, unescape(last)))
}

fn add(object: &mut Value, path: &str, value: Value) -> Result<(), String> {
    let (parent, last) = parent_of(object, path)?;
    match parent {
        Value::Object(members) => {
            members.insert(last, value);
        }
        Value::Array(items) if last == "-" => items.push(value),
        Value::Array(items) => match last.parse::<usize>() {
            Ok(i) if i <= items.len() => items.insert(i, value),
            _ => return Err(format!("{path} is out of the array")),
        },
        _ => return Err(format!("{path} is inside neither an object nor an array")),
    }
    Ok(())
}

fn remove(object: &mut Value, path: &str) -> Result<(), String> {
    let (parent, last) = parent_of(object, path)?;
    let removed = match parent {
        Value::Object(members) => members.remove(&last).is_some(),
        Value::Array(items) => match last.parse::<usize>() {
            Ok(i) if i < items.len() => {
                items.remove(i);
                true
            }
            _ => false,
        },
        _ => false,
    };
    removed
        .then_some(())
        .ok_or_else(|| format!("no {path} to remove"))
}

#[async_trait]
impl Api for InMemory {
    async fn version(&self) -> Result<(), BackendError> {
        self.report(Request::Version.args(), "reach the cluster (preflight)")
            .await
    }

    async fn can_i(&self, verb: &str, on: &str) -> Result<bool, BackendError> {
        self.report(Request::CanI(verb, on).args(), &can_i_purpose(verb, on))
            .await?;
        Ok(!self
            .store()
            .refused
            .contains(&(verb.to_string(), on.to_string())))
    }

    async fn get(&self, target: &Target, purpose: &str) -> Result<Option<Value>, BackendError> {
        self.report(Request::Get(target).args(), purpose).await?;
        Ok(self.store().get(target).cloned())
    }

    async fn list(&self, resource: &str, purpose: &str) -> Result<Vec<Value>, BackendError> {
        self.report(Request::List(resource).args(), purpose).await?;
        let store = self.store();
        let kind = (resource == DEPLOYMENTS).then_some(Kind::Deployment);
        Ok(store
            .objects
            .iter()
            .filter(|(target, _)| Some(target.kind) == kind)
            .map(|(_, object)| object.clone())
            .collect())
    }

    async fn patch(
        &self,
        target: &Target,
        guard: &str,
        ops: &[Value],
        purpose: &str,
    ) -> Result<Patched, BackendError> {
        let shown = self.store().shown(target, ops.to_vec());
        let request = Request::Patch {
            target,
            guard,
            ops: &shown,
        };
        let args = request.args();
        self.report(args.clone(), purpose).await?;
        let result = self.store().patch(target, &guarded(guard, ops));
        Ok(match result {
            Ok(object) => Patched::Applied(object),
            Err(problem) => Patched::Refused(BackendError::CommandFailed {
                purpose: purpose.to_string(),
                command: crate::plan::Argv::new(self.kubectl.argv(args))
                    .map_or_else(String::new, |argv| argv.to_string()),
                status: "exit status 1".into(),
                output: format!("the in-memory cluster refused the patch: {problem}"),
            }),
        })
    }

    fn note(&self, what: &str) {
        self.exec.note(what);
    }
}
