//! The Kubernetes objects as far as the backend reads them, and how it names them on kubectl's
//! command line.
//!
//! Every field has a default: the API server leaves zero counts and unset fields out of the
//! JSON it prints, and anything the backend does not read is ignored.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde_json::Value;

/// The kinds the backend touches, each named by its resource and group so that kubectl cannot
/// resolve it to a same-named kind of another group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Deployment,
    HttpRoute,
    Service,
}

impl Kind {
    pub fn resource(self) -> &'static str {
        match self {
            Kind::Deployment => "deployment.apps",
            Kind::HttpRoute => "httproute.gateway.networking.k8s.io",
            Kind::Service => "service",
        }
    }

    /// Used in the purposes of commands ("read the Deployment").
    pub fn noun(self) -> &'static str {
        match self {
            Kind::Deployment => "the Deployment",
            Kind::HttpRoute => "the HTTPRoute",
            Kind::Service => "the Service",
        }
    }
}

/// One object in the plan's namespace, as kubectl takes it: `deployment.apps/inventory`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Target {
    pub kind: Kind,
    pub name: String,
}

impl Target {
    pub fn new(kind: Kind, name: &str) -> Target {
        Target {
            kind,
            name: name.to_string(),
        }
    }

    pub fn deployment(name: &str) -> Target {
        Target::new(Kind::Deployment, name)
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.kind.resource(), self.name)
    }
}

/// The resource that `list` names: every Deployment of the namespace.
pub const DEPLOYMENTS: &str = "deployments.apps";

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct VersionInfo {
    pub server_version: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct List<T> {
    pub items: Vec<T>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Meta {
    pub name: String,
    pub namespace: String,
    pub resource_version: String,
    pub generation: i64,
}

/// Any object, read only for its metadata (what a patch returns).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Object {
    pub metadata: Meta,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Deployment {
    pub metadata: Meta,
    pub spec: DeploymentSpec,
    pub status: DeploymentStatus,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct DeploymentSpec {
    /// Absent means 1, as the API server defaults it.
    pub replicas: Option<u32>,
    pub progress_deadline_seconds: Option<u32>,
    pub template: PodTemplate,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct PodTemplate {
    pub metadata: TemplateMeta,
    pub spec: PodSpec,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct TemplateMeta {
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct PodSpec {
    pub containers: Vec<Container>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Container {
    pub name: String,
    pub image: String,
}

/// Zero counts are left out of the JSON by the API server, hence the defaults.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct DeploymentStatus {
    pub observed_generation: i64,
    pub replicas: u32,
    pub updated_replicas: u32,
    pub available_replicas: u32,
    pub conditions: Vec<Condition>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub kind: String,
    pub status: String,
    pub reason: String,
    pub message: String,
    pub observed_generation: Option<i64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct HttpRoute {
    pub metadata: Meta,
    pub spec: RouteSpec,
    pub status: RouteStatus,
}

/// The rules as the server has them, every field kept: rollout copies rules whole.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct RouteSpec {
    pub rules: Vec<Value>,
}

impl RouteSpec {
    /// The fields of rule `i` the backend reads; a rule that is not an object has none.
    pub fn rule(&self, i: usize) -> RouteRule {
        serde_json::from_value(self.rules[i].clone()).unwrap_or_default()
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct RouteRule {
    pub backend_refs: Vec<BackendRef>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct BackendRef {
    pub name: String,
    pub group: Option<String>,
    pub kind: Option<String>,
    pub namespace: Option<String>,
    pub weight: Option<u32>,
}

impl BackendRef {
    /// A Service in the route's own namespace; `group`, `kind` and `namespace` left out mean
    /// exactly that.
    pub fn is_service_in(&self, namespace: &str) -> bool {
        self.group.as_deref().unwrap_or("").is_empty()
            && self.kind.as_deref().unwrap_or("Service") == "Service"
            && self.namespace.as_deref().is_none_or(|n| n == namespace)
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct RouteStatus {
    pub parents: Vec<RouteParentStatus>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct RouteParentStatus {
    pub parent_ref: ParentRef,
    pub conditions: Vec<Condition>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ParentRef {
    pub name: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Service {
    pub spec: ServiceSpec,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ServiceSpec {
    pub selector: Option<BTreeMap<String, String>>,
}
