//! The kubectl backend's logic against recorded documents and the in-memory cluster; the real
//! kubectl against an emulated API server is tests/integration/e2e_kubectl.rs.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::api::{Deployment, HttpRoute, Service, Target};
use super::client::{Client, Kubectl, Readiness, Request, judge_deployment};
use super::gateway::{
    Gateway, RouteView, RouteWant, RuleView, gateway_weights, route_patch, route_view,
};
use super::replicas::{
    Before, DeploymentWant, OriginalDeployment, Replicas, deployment_patch, deployment_view,
    split_replicas,
};
use super::store::{InMemory, Store};
use super::{Original, build_for};
use crate::backend::{Backend, BackendError, Recovery, WeightChange};
use crate::exec::{Action, DryRunExecutor, Report};
use crate::plan::{
    GatewaySpec, KubectlBackend, KubectlConnection, KubectlMode, ReplicasSpec, Weight,
};

const OLD_IMAGE: &str = "registry.example.com/shop/inventory:4.1.3";
const NEW_IMAGE: &str = "registry.example.com/shop/inventory:4.2.0";

/// A document recorded from `kubectl get -o json`, under tests/fixtures/kubectl/.
fn fixture<T: DeserializeOwned>(name: &str) -> T {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/kubectl")
        .join(name);
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()))
}

fn weight(p: f64) -> Weight {
    Weight::new(p).unwrap()
}

fn change(stage: usize, to: f64, from: f64) -> WeightChange {
    WeightChange {
        stage,
        weight: weight(to),
        previous: weight(from),
        segments: crate::plan::SegmentSet::EMPTY,
        mirror: None,
    }
}

fn connection() -> KubectlConnection {
    KubectlConnection {
        kubectl: "kubectl".into(),
        kubeconfig: Some(PathBuf::from("/etc/rollout/kube config")),
        context: Some("prod-eu-west-1".into()),
        namespace: "shop".into(),
    }
}

fn replicas_spec() -> ReplicasSpec {
    ReplicasSpec {
        stable_deployment: "inventory".into(),
        canary_deployment: "inventory-canary".into(),
        replicas: 10,
        container: "app".into(),
        image: NEW_IMAGE.into(),
    }
}

fn gateway_spec() -> GatewaySpec {
    GatewaySpec {
        route: "search-api".into(),
        stable_service: "search-api-stable".into(),
        canary_service: "search-api-canary".into(),
        mirror_methods: vec!["GET".into(), "HEAD".into()],
    }
}

/// What an executor reported: each command's argv (`kubectl` and the connection flags left
/// out) and each note, in order.
#[derive(Clone, Default)]
struct Said(Arc<Mutex<Vec<String>>>);

impl Said {
    fn executor(&self) -> Arc<DryRunExecutor> {
        let said = self.0.clone();
        Arc::new(DryRunExecutor {
            observer: Arc::new(move |report| {
                let Report::Action { action, .. } = report else {
                    return;
                };
                let line = match action {
                    Action::Run { argv, .. } => argv[7..].join(" "),
                    Action::Wait { what } => format!("note: {what}"),
                    other => panic!("kubectl does not {other:?}"),
                };
                said.lock().unwrap().push(line);
            }),
        })
    }

    fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }

    fn patches(&self) -> Vec<String> {
        self.lines()
            .into_iter()
            .filter(|l| l.starts_with("patch "))
            .collect()
    }
}

/// A fake cluster holding `objects`, and what it is told.
fn cluster(objects: Vec<Value>, adjust: impl FnOnce(&mut Store)) -> (Arc<InMemory>, Said) {
    let mut store = Store::new();
    for object in objects {
        store.insert(object);
    }
    adjust(&mut store);
    let said = Said::default();
    let fake = InMemory::new(Kubectl::new(&connection()), said.executor(), store);
    (Arc::new(fake), said)
}

fn client(fake: &Arc<InMemory>) -> Client {
    Client::new(fake.clone(), "shop", Duration::from_secs(300))
}

fn replicas(fake: &Arc<InMemory>) -> Replicas {
    Replicas::new(replicas_spec(), client(fake), "namespace shop".into())
}

fn deployments() -> Vec<Value> {
    vec![
        fixture("deployment-stable.json"),
        fixture("deployment-canary-scaled-to-zero.json"),
    ]
}

/// A Deployment in the fake cluster: its pod count and the image of `app`.
fn held(fake: &InMemory, name: &str) -> (u64, String) {
    let store = fake.store();
    let d = store.get(&Target::deployment(name)).expect("it exists");
    let image = d["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "app")
        .unwrap()["image"]
        .as_str()
        .unwrap()
        .to_string();
    (d["spec"]["replicas"].as_u64().unwrap(), image)
}

// ---- replicas mode on the fake cluster -------------------------------------------------------

#[tokio::test]
async fn pods_move_by_weight_the_growing_side_first_and_promotion_ends_on_stable() {
    let (fake, said) = cluster(deployments(), |_| {});
    let mut backend = replicas(&fake);
    backend.preflight().await.unwrap();
    backend.set_weight(change(1, 25.0, 0.0)).await.unwrap();
    assert_eq!(held(&fake, "inventory"), (8, OLD_IMAGE.into()));
    assert_eq!(held(&fake, "inventory-canary"), (2, NEW_IMAGE.into()));
    backend.set_weight(change(2, 100.0, 25.0)).await.unwrap();
    backend.promote().await.unwrap();
    assert_eq!(held(&fake, "inventory"), (10, NEW_IMAGE.into()));
    assert_eq!(held(&fake, "inventory-canary"), (0, NEW_IMAGE.into()));
    let order: Vec<String> = fake
        .store()
        .patches
        .iter()
        .map(|(target, ops)| format!("{} {}", target.name, ops[1..].len()))
        .collect();
    // The canary grows (image and count) before the stable shrinks; promotion fills the
    // stable (image and count) before the canary empties.
    assert_eq!(
        order,
        [
            "inventory-canary 2",
            "inventory 1",
            "inventory-canary 1",
            "inventory 1",
            "inventory 2",
            "inventory-canary 1"
        ]
    );
    // Each write is followed by a wait that reads the Deployment's status.
    let lines = said.lines();
    let first = lines.iter().position(|l| l.starts_with("patch ")).unwrap();
    assert!(
        lines[first + 1]
            .starts_with("note: wait until deployment.apps/inventory-canary is rolled out")
    );
    assert_eq!(
        lines[first + 2],
        "get deployment.apps/inventory-canary -o json --ignore-not-found"
    );
}

#[tokio::test]
async fn a_concurrent_edit_is_read_again_and_the_change_recomputed_on_top_of_it() {
    let (fake, said) = cluster(deployments(), |store| {
        store
            .interfere
            .insert(Target::deployment("inventory-canary"));
    });
    let mut backend = replicas(&fake);
    backend.preflight().await.unwrap();
    backend.set_weight(change(1, 50.0, 0.0)).await.unwrap();
    let canary_patches: Vec<String> = said
        .patches()
        .into_iter()
        .filter(|p| p.starts_with("patch deployment.apps/inventory-canary "))
        .collect();
    assert_eq!(canary_patches.len(), 2, "{canary_patches:#?}");
    // The first was computed from version 2 and refused; the second from the other writer's 3.
    assert!(
        canary_patches[0].contains(r#""value":"2"}"#),
        "{}",
        canary_patches[0]
    );
    assert!(
        canary_patches[1].contains(r#""value":"3"}"#),
        "{}",
        canary_patches[1]
    );
    let store = fake.store();
    let canary = store.get(&Target::deployment("inventory-canary")).unwrap();
    assert_eq!(
        canary["metadata"]["annotations"]["example.com/edited-by"],
        "someone-else"
    );
    assert_eq!(canary["spec"]["replicas"], 5);
}

#[tokio::test]
async fn a_canary_past_its_progress_deadline_fails_as_the_new_version() {
    let (fake, _) = cluster(deployments(), |store| {
        store.never_ready.insert(NEW_IMAGE.into());
    });
    let mut backend = replicas(&fake);
    backend.preflight().await.unwrap();
    let err = backend.set_weight(change(1, 25.0, 0.0)).await.unwrap_err();
    let BackendError::NewVersionFailed(why) = &err else {
        panic!("not the new version failing: {err:?}");
    };
    assert!(
        why.starts_with("deployment.apps/inventory-canary failed to roll out: its Progressing condition is ProgressDeadlineExceeded"),
        "{why}"
    );
    // The stable side was not touched: it shrinks only after the canary is rolled out.
    assert_eq!(held(&fake, "inventory"), (10, OLD_IMAGE.into()));
    backend.rollback().await.unwrap();
    assert_eq!(held(&fake, "inventory-canary"), (0, OLD_IMAGE.into()));
}

#[tokio::test]
async fn a_stable_deployment_that_does_not_roll_out_is_not_the_new_versions_failure() {
    let (fake, _) = cluster(deployments(), |_| {});
    let mut backend = replicas(&fake);
    backend.preflight().await.unwrap();
    backend.set_weight(change(1, 100.0, 0.0)).await.unwrap();
    fake.store().never_ready.insert(NEW_IMAGE.into());
    let err = backend.promote().await.unwrap_err();
    assert!(matches!(err, BackendError::NotConfirmed(_)), "{err:?}");
}

#[tokio::test]
async fn rollback_returns_to_what_the_preflight_found() {
    let (fake, said) = cluster(deployments(), |_| {});
    let mut backend = replicas(&fake);
    backend.preflight().await.unwrap();
    backend.set_weight(change(1, 50.0, 0.0)).await.unwrap();
    let before_rollback = said.patches().len();
    backend.rollback().await.unwrap();
    assert_eq!(held(&fake, "inventory"), (10, OLD_IMAGE.into()));
    assert_eq!(held(&fake, "inventory-canary"), (0, OLD_IMAGE.into()));
    // Both counts first, then the canary's image once it has no pods.
    let rollback: Vec<String> = said.patches()[before_rollback..]
        .iter()
        .map(|p| p.split(" --type").next().unwrap().to_string())
        .collect();
    assert_eq!(
        rollback,
        [
            "patch deployment.apps/inventory",
            "patch deployment.apps/inventory-canary",
            "patch deployment.apps/inventory-canary"
        ]
    );
    let count = {
        let patches = &fake.store().patches;
        assert_eq!(patches.last().unwrap().1[1]["value"], OLD_IMAGE);
        patches.len()
    };
    // Applying it again writes nothing.
    backend.rollback().await.unwrap();
    assert_eq!(fake.store().patches.len(), count);
}

#[tokio::test]
async fn a_rollback_that_nothing_prepared_changes_nothing_and_says_why() {
    let (fake, _) = cluster(deployments(), |_| {});
    let err = replicas(&fake).rollback().await.unwrap_err().to_string();
    assert!(
        err.starts_with("what the Deployments held before the run is unknown"),
        "{err}"
    );
    assert!(fake.store().patches.is_empty());
}

/// Another machine's run left 30% on the canary; no journal says what was there before.
fn paused_at_30() -> Vec<Value> {
    let mut objects = deployments();
    objects[0]["spec"]["replicas"] = json!(7);
    objects[1]["spec"]["replicas"] = json!(3);
    objects[1]["spec"]["template"]["spec"]["containers"][1]["image"] = json!(NEW_IMAGE);
    objects
}

#[tokio::test]
async fn recover_without_a_journal_returns_to_the_plans_stable_state() {
    let (fake, _) = cluster(paused_at_30(), |_| {});
    let mut backend = replicas(&fake);
    let notes = backend.recover(&Recovery::default()).await.unwrap();
    assert_eq!(
        notes,
        [format!(
            "no journal: returning to the plan's stable state, 10 pods of {OLD_IMAGE} on `inventory` and 0 on `inventory-canary` (which keeps the image {NEW_IMAGE})"
        )]
    );
    assert!(fake.store().patches.is_empty(), "recover changes nothing");
    backend.rollback().await.unwrap();
    assert_eq!(held(&fake, "inventory"), (10, OLD_IMAGE.into()));
    assert_eq!(held(&fake, "inventory-canary"), (0, NEW_IMAGE.into()));
}

#[tokio::test]
async fn recover_cannot_know_the_stable_image_once_stable_runs_the_new_one() {
    let mut objects = deployments();
    objects[0]["spec"]["template"]["spec"]["containers"][1]["image"] = json!(NEW_IMAGE);
    let (fake, _) = cluster(objects, |_| {});
    let err = replicas(&fake)
        .recover(&Recovery::default())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with(&format!(
            "the stable Deployment `inventory` already runs the new image {NEW_IMAGE}"
        )),
        "{err}"
    );
}

#[tokio::test]
async fn the_preflight_names_a_refused_verb_and_a_missing_object() {
    let (fake, _) = cluster(deployments(), |store| {
        store
            .refused
            .insert(("patch".into(), "deployment.apps/inventory-canary".into()));
    });
    let err = replicas(&fake).preflight().await.unwrap_err().to_string();
    assert_eq!(
        err,
        "kubectl auth can-i says the credentials may not patch deployment.apps/inventory-canary in namespace shop"
    );
    let (fake, said) = cluster(deployments()[..1].to_vec(), |_| {});
    let err = replicas(&fake).preflight().await.unwrap_err().to_string();
    assert_eq!(
        err,
        "deployment.apps/inventory-canary does not exist in namespace shop"
    );
    assert!(said.patches().is_empty());
}

#[test]
fn a_journal_of_another_mode_is_refused() {
    let (fake, _) = cluster(Vec::new(), |_| {});
    let gateway = Original::Gateway(super::gateway::Before {
        route: "search-api".into(),
        rules: Vec::new(),
    });
    let err = replicas(&fake)
        .restore_state(serde_json::to_value(&gateway).unwrap())
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("the journal records the objects of a run in mode = \"gateway\", but the plan's mode is \"replicas\""),
        "{err}"
    );
}

// ---- gateway mode on the fake cluster --------------------------------------------------------

fn gateway_objects() -> Vec<Value> {
    let mut objects = vec![fixture::<Value>("httproute.json")];
    for track in ["stable", "canary"] {
        let mut service: Value = fixture("service.json");
        service["metadata"]["name"] = json!(format!("search-api-{track}"));
        service["spec"]["selector"]["track"] = json!(track);
        objects.push(service);
        let mut d: Value = fixture("deployment-stable.json");
        d["metadata"]["name"] = json!(format!("search-api-{track}"));
        d["spec"]["template"]["metadata"]["labels"] = json!({"app": "search-api", "track": track});
        objects.push(d);
    }
    objects
}

fn gateway(fake: &Arc<InMemory>) -> Gateway {
    Gateway::new(
        gateway_spec(),
        client(fake),
        "namespace search".into(),
        &[],
        false,
    )
}

fn route_weights(fake: &InMemory) -> (u64, u64) {
    let store = fake.store();
    let route = store
        .get(&Target::new(super::api::Kind::HttpRoute, "search-api"))
        .unwrap();
    let refs = &route["spec"]["rules"][0]["backendRefs"];
    (
        refs[0]["weight"].as_u64().unwrap(),
        refs[1]["weight"].as_u64().unwrap(),
    )
}

#[tokio::test]
async fn the_route_gets_each_weight_once_the_deployments_behind_are_rolled_out() {
    let (fake, said) = cluster(gateway_objects(), |_| {});
    let mut backend = gateway(&fake);
    backend.preflight().await.unwrap();
    backend.set_weight(change(1, 0.5, 0.0)).await.unwrap();
    assert_eq!(route_weights(&fake), (995, 5));
    let lines = said.lines();
    let patch = lines.iter().position(|l| l.starts_with("patch ")).unwrap();
    // Before the patch: the Deployments behind both Services, which both get traffic now.
    let waited: Vec<&String> = lines[..patch]
        .iter()
        .filter(|l| l.starts_with("note: wait until deployment.apps/"))
        .collect();
    assert_eq!(waited.len(), 2, "{lines:#?}");
    assert!(waited[1].contains("search-api-canary"));
    assert!(
        lines[patch + 1]
            .starts_with("note: read httproute.gateway.networking.k8s.io/search-api back")
    );
    backend.rollback().await.unwrap();
    assert_eq!(route_weights(&fake), (100, 0));
    // The rule for /admin was left alone.
    let store = fake.store();
    let route = store
        .get(&Target::new(super::api::Kind::HttpRoute, "search-api"))
        .unwrap();
    assert_eq!(route["spec"]["rules"][1]["backendRefs"][0]["weight"], 1);
}

#[tokio::test]
async fn a_route_no_gateway_accepted_is_refused_at_preflight() {
    let mut objects = gateway_objects();
    objects[0]["status"]["parents"] = json!([]);
    let (fake, _) = cluster(objects, |_| {});
    let err = gateway(&fake).preflight().await.unwrap_err().to_string();
    assert!(
        err.starts_with(
            "httproute.gateway.networking.k8s.io/search-api: no Gateway has accepted this route"
        ),
        "{err}"
    );
}

// ---- the dry run's cluster -------------------------------------------------------------------

#[tokio::test]
async fn a_dry_run_computes_each_patch_from_the_ones_before_with_placeholders_for_the_unknown() {
    let said = Said::default();
    let spec = KubectlBackend {
        connection: connection(),
        rollout_timeout: Duration::from_secs(60),
        mode: KubectlMode::Replicas(replicas_spec()),
    };
    let mut backend = build_for(&spec, said.executor(), &[], false);
    backend.preflight().await.unwrap();
    backend.set_weight(change(1, 50.0, 0.0)).await.unwrap();
    backend.set_weight(change(2, 100.0, 50.0)).await.unwrap();
    let test = r#"{"op":"test","path":"/metadata/resourceVersion","value":"<resourceVersion>"}"#;
    let image = r#"{"op":"replace","path":"/spec/template/spec/containers/<index of app>/image","value":"registry.example.com/shop/inventory:4.2.0"}"#;
    let replicas = |n: u32| format!(r#"{{"op":"replace","path":"/spec/replicas","value":{n}}}"#);
    let patch = |name: &str, ops: &[&str]| {
        format!(
            "patch deployment.apps/{name} --type=json -p [{}] -o json",
            ops.join(",")
        )
    };
    assert_eq!(
        said.patches(),
        [
            patch("inventory-canary", &[test, image, &replicas(5)]),
            patch("inventory", &[test, &replicas(5)]),
            // The canary already has the image: only its count changes.
            patch("inventory-canary", &[test, &replicas(10)]),
            patch("inventory", &[test, &replicas(0)]),
        ]
    );
    // What a rollback would return to is what the dry run assumed was there.
    let state = backend.saved_state().unwrap();
    assert_eq!(state["stable"]["replicas"], 10);
    assert_eq!(state["canary"]["image"], "<image before the run>");
}

#[tokio::test]
async fn a_dry_run_of_gateway_mode_starts_from_the_route_at_100_0() {
    let said = Said::default();
    let spec = KubectlBackend {
        connection: connection(),
        rollout_timeout: Duration::from_secs(60),
        mode: KubectlMode::Gateway(gateway_spec()),
    };
    let mut backend = build_for(&spec, said.executor(), &[], false);
    backend.preflight().await.unwrap();
    backend.set_weight(change(1, 25.0, 0.0)).await.unwrap();
    backend.set_weight(change(2, 100.0, 25.0)).await.unwrap();
    let path = |service: &str| {
        format!("/spec/rules/<rule>/backendRefs/<index of search-api-{service}>/weight")
    };
    let patches = said.patches();
    assert_eq!(patches.len(), 2);
    assert!(
        patches[0].contains(&format!(
            r#"{{"op":"add","path":"{}","value":75}}"#,
            path("stable")
        )),
        "{}",
        patches[0]
    );
    assert!(
        patches[0].contains(&format!(
            r#"{{"op":"add","path":"{}","value":25}}"#,
            path("canary")
        )),
        "{}",
        patches[0]
    );
    // The Services' Deployments are unknown to a dry run: it says what it would wait for.
    assert!(said.lines().iter().any(|l| l == "note: wait until the Deployments whose pods service/search-api-canary selects are rolled out, at most 1m"));
}

// ---- pure parts ------------------------------------------------------------------------------

#[test]
fn every_command_carries_the_plans_connection_flags() {
    let target = Target::deployment("x");
    let argv = Kubectl::new(&connection()).argv(Request::Get(&target).args());
    assert_eq!(
        argv,
        [
            "kubectl",
            "--kubeconfig",
            "/etc/rollout/kube config",
            "--context",
            "prod-eu-west-1",
            "-n",
            "shop",
            "get",
            "deployment.apps/x",
            "-o",
            "json",
            "--ignore-not-found"
        ]
    );
    let mut bare = connection();
    bare.kubeconfig = None;
    bare.context = None;
    bare.kubectl = "/opt/k8s/kubectl".into();
    assert_eq!(
        Kubectl::new(&bare).argv(Request::Version.args()),
        ["/opt/k8s/kubectl", "-n", "shop", "version", "-o", "json"]
    );
}

#[test]
fn a_patch_is_guarded_by_the_resource_version_it_was_computed_from() {
    let stable: Deployment = fixture("deployment-stable.json");
    let view = deployment_view(&stable, "app").unwrap();
    // `app` is the second container: the pointer names its index.
    assert_eq!(view.image_path, "/spec/template/spec/containers/1/image");
    assert_eq!(view.image, OLD_IMAGE);
    assert_eq!(view.replicas, 10);
    let want = DeploymentWant {
        replicas: Some(9),
        image: Some(NEW_IMAGE.into()),
    };
    let ops = deployment_patch(&view, &want);
    let target = Target::deployment("inventory");
    let request = Request::Patch {
        target: &target,
        guard: &view.resource_version,
        ops: &ops,
    };
    assert_eq!(
        request.args(),
        [
            "patch",
            "deployment.apps/inventory",
            "--type=json",
            "-p",
            r#"[{"op":"test","path":"/metadata/resourceVersion","value":"48211937"},{"op":"replace","path":"/spec/template/spec/containers/1/image","value":"registry.example.com/shop/inventory:4.2.0"},{"op":"replace","path":"/spec/replicas","value":9}]"#,
            "-o",
            "json"
        ]
    );
}

#[test]
fn a_change_already_made_writes_nothing() {
    let stable: Deployment = fixture("deployment-stable.json");
    let view = deployment_view(&stable, "app").unwrap();
    let same = DeploymentWant {
        replicas: Some(10),
        image: Some(OLD_IMAGE.into()),
    };
    assert!(deployment_patch(&view, &same).is_empty());
    let only_replicas = DeploymentWant {
        replicas: Some(3),
        image: Some(OLD_IMAGE.into()),
    };
    assert_eq!(deployment_patch(&view, &only_replicas).len(), 1);
}

#[test]
fn a_missing_container_is_named_with_the_ones_there() {
    let stable: Deployment = fixture("deployment-stable.json");
    let err = deployment_view(&stable, "web").unwrap_err();
    assert_eq!(
        err,
        "its pod template has no container `web` (it has log-shipper, app)"
    );
}

#[test]
fn replicas_split_by_weight_with_at_least_one_canary_pod() {
    let split = |total, w| split_replicas(total, weight(w));
    assert_eq!(split(10, 0.0), (10, 0));
    assert_eq!(split(10, 0.1), (9, 1));
    assert_eq!(split(10, 1.0), (9, 1));
    assert_eq!(split(10, 10.0), (9, 1));
    assert_eq!(split(10, 14.0), (9, 1));
    // An exact half rounds toward stable.
    assert_eq!(split(10, 15.0), (9, 1));
    assert_eq!(split(10, 16.0), (8, 2));
    assert_eq!(split(10, 25.0), (8, 2));
    assert_eq!(split(4, 25.0), (3, 1));
    assert_eq!(split(4, 99.0), (1, 3));
    assert_eq!(split(10, 50.0), (5, 5));
    assert_eq!(split(10, 95.0), (1, 9));
    assert_eq!(split(10, 99.0), (1, 9));
    assert_eq!(split(10, 100.0), (0, 10));
    assert_eq!(split(3, 50.0), (2, 1));
    assert_eq!(split(4, 33.3), (3, 1));
    assert_eq!(split(1, 50.0), (0, 1));
    assert_eq!(split(1, 0.0), (1, 0));
    assert_eq!(split(2, 99.9), (1, 1));
    for total in 1..=25 {
        for tenths in 0..=1000 {
            let w = f64::from(tenths) / 10.0;
            let (s, c) = split(total, w);
            assert_eq!(s + c, total);
            assert_eq!(c > 0, w > 0.0, "{total} pods at {w}%");
        }
    }
}

#[test]
fn gateway_weights_read_as_shares() {
    let w = |p| gateway_weights(weight(p));
    assert_eq!(w(0.0), (100, 0));
    assert_eq!(w(1.0), (99, 1));
    assert_eq!(w(25.0), (75, 25));
    assert_eq!(w(0.5), (995, 5));
    assert_eq!(w(0.25), (9975, 25));
    assert_eq!(w(0.001), (99999, 1));
    assert_eq!(w(100.0), (0, 100));
}

#[test]
fn readiness_is_judged_from_recorded_deployment_status() {
    let judge = |name: &str, generation| {
        let d: Deployment = fixture(name);
        judge_deployment(&d, generation)
    };
    assert_eq!(judge("deployment-stable.json", 12), Readiness::Ready);
    assert_eq!(
        judge("deployment-canary-scaled-to-zero.json", 31),
        Readiness::Ready
    );
    assert_eq!(
        judge("deployment-generation-not-observed.json", 13),
        Readiness::Waiting(
            "the Deployment controller has not yet seen generation 13 (observedGeneration is 12)"
                .into()
        )
    );
    assert_eq!(
        judge("deployment-rolling-out.json", 13),
        Readiness::Waiting("5 of 10 replicas run the current pod template".into())
    );
    assert_eq!(
        judge("deployment-old-replicas-terminating.json", 13),
        Readiness::Waiting(
            "12 replicas exist where 10 are wanted: the surplus is still terminating".into()
        )
    );
    let Readiness::Failed(why) = judge("deployment-progress-deadline-exceeded.json", 33) else {
        panic!("a deployment past its progress deadline has failed");
    };
    assert!(
        why.starts_with("its Progressing condition is ProgressDeadlineExceeded"),
        "{why}"
    );
    assert!(why.contains("has timed out progressing"), "{why}");
    // A status older than the generation a patch returned is not trusted.
    assert!(matches!(
        judge("deployment-stable.json", 13),
        Readiness::Waiting(_)
    ));
}

#[test]
fn available_replicas_must_catch_up_with_updated_ones() {
    let mut d: Deployment = fixture("deployment-old-replicas-terminating.json");
    d.status.replicas = 10;
    d.status.available_replicas = 7;
    assert_eq!(
        judge_deployment(&d, 13),
        Readiness::Waiting("7 of 10 updated replicas are available".into())
    );
}

#[test]
fn the_route_rules_to_weight_are_those_naming_both_services() {
    let route: HttpRoute = fixture("httproute.json");
    let view = route_view(&route, "search-api-stable", "search-api-canary", &[]).unwrap();
    assert_eq!(
        view,
        RouteView {
            resource_version: "91733012".into(),
            generation: 4,
            rules: vec![RuleView {
                rule: 0,
                stable_ref: 0,
                canary_ref: 1,
                stable_weight: Some(100),
                canary_weight: Some(0),
            }],
            raw: route.spec.rules.clone(),
            added: vec![],
        }
    );
    assert_eq!(
        serde_json::to_string(&route_patch(
            &view,
            &RouteWant::at(weight(1.0)),
            "search-api-canary"
        ))
        .unwrap(),
        r#"[{"op":"add","path":"/spec/rules/0/backendRefs/0/weight","value":99},{"op":"add","path":"/spec/rules/0/backendRefs/1/weight","value":1}]"#
    );
    assert!(route_patch(&view, &RouteWant::at(Weight::ZERO), "search-api-canary").is_empty());
    let err = route_view(&route, "search-api-stable", "search-api-next", &[]).unwrap_err();
    assert!(err.contains("no backendRef for `search-api-next`"), "{err}");
    let err = route_view(&route, "nothing", "else", &[]).unwrap_err();
    assert_eq!(
        err,
        "no rule has backendRefs for both Services `nothing` and `else`"
    );
}

#[test]
fn a_route_is_confirmed_by_its_gateways_status() {
    use super::gateway::judge_route;
    let route: HttpRoute = fixture("httproute.json");
    assert_eq!(judge_route(&route, 4), Readiness::Ready);
    let pending: HttpRoute = fixture("httproute-generation-not-accepted.json");
    assert_eq!(
        judge_route(&pending, 5),
        Readiness::Waiting(
            "Gateway `public` has not yet accepted generation 5 of the route".into()
        )
    );
    let mut unresolved = pending.clone();
    for c in &mut unresolved.status.parents[0].conditions {
        c.observed_generation = Some(5);
        if c.kind == "ResolvedRefs" {
            c.status = "False".into();
            c.reason = "BackendNotFound".into();
        }
    }
    assert!(matches!(judge_route(&unresolved, 5), Readiness::Failed(_)));
}

#[test]
fn a_services_selector_is_read() {
    let service: Service = fixture("service.json");
    let selector = service.spec.selector.unwrap();
    assert_eq!(selector["track"], "canary");
}

#[test]
fn the_original_state_survives_a_journal() {
    let deployment = |name: &str, replicas| OriginalDeployment {
        name: name.into(),
        replicas,
        container: "app".into(),
        image: OLD_IMAGE.into(),
    };
    let original = Original::Replicas(Before {
        stable: deployment("inventory", 10),
        canary: deployment("inventory-canary", 0),
    });
    let text = serde_json::to_string(&original).unwrap();
    // The journal's format from before the modes were split: a later version reads it.
    assert!(text.starts_with(r#"{"mode":"replicas","stable":{"name":"inventory""#));
    assert_eq!(serde_json::from_str::<Original>(&text).unwrap(), original);
}

#[test]
fn json_patches_apply_all_or_nothing() {
    use super::store::apply_json_patch;
    let mut object = json!({"metadata": {"resourceVersion": "7"}, "spec": {"rules": [{"refs": [{"name": "a"}]}]}});
    let ops = [
        json!({"op": "add", "path": "/spec/rules/0/refs/0/weight", "value": 3}),
        json!({"op": "test", "path": "/metadata/resourceVersion", "value": "8"}),
    ];
    let err = apply_json_patch(&mut object, &ops).unwrap_err();
    assert_eq!(err, "the test of /metadata/resourceVersion failed");
    assert!(
        object["spec"]["rules"][0]["refs"][0]
            .get("weight")
            .is_none()
    );
    let ops = [
        json!({"op": "test", "path": "/metadata/resourceVersion", "value": "7"}),
        json!({"op": "add", "path": "/spec/rules/0/refs/-", "value": {"name": "b"}}),
        json!({"op": "replace", "path": "/spec/rules/0/refs/0/name", "value": "c"}),
        json!({"op": "remove", "path": "/metadata/resourceVersion"}),
    ];
    apply_json_patch(&mut object, &ops).unwrap();
    assert_eq!(
        object,
        json!({"metadata": {}, "spec": {"rules": [{"refs": [{"name": "c"}, {"name": "b"}]}]}})
    );
}

// ---- gateway segments and mirror on the fake cluster -----------------------------------------

fn beta_segment() -> crate::plan::Segment {
    crate::plan::Segment {
        name: crate::plan::Name::parse("beta").unwrap(),
        rule: crate::plan::SegmentRule::Header {
            name: "X-Beta".into(),
            value: Some("yes".into()),
        },
    }
}

/// The gateway backend of a plan with the segment `beta` and a stage that mirrors.
fn gateway_with_beta(fake: &Arc<InMemory>) -> Gateway {
    Gateway::new(
        gateway_spec(),
        client(fake),
        "namespace search".into(),
        &[beta_segment()],
        true,
    )
}

fn with_extras(mut change: WeightChange, beta: bool, mirror: Option<f64>) -> WeightChange {
    if beta {
        change.segments = crate::plan::SegmentSet::EMPTY.with(0);
    }
    change.mirror = mirror.map(weight);
    change
}

fn route_rules(fake: &InMemory) -> Vec<Value> {
    let store = fake.store();
    let route = store
        .get(&Target::new(super::api::Kind::HttpRoute, "search-api"))
        .unwrap();
    route["spec"]["rules"].as_array().unwrap().clone()
}

/// What each rule sends where, for reading a route at a glance: `matches -> backends`.
fn outline(rules: &[Value]) -> Vec<String> {
    rules
        .iter()
        .map(|rule| {
            let matches: Vec<String> = rule["matches"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| {
                    let mut text = m["path"]["value"].as_str().unwrap().to_string();
                    if let Some(method) = m["method"].as_str() {
                        text.push_str(&format!(" {method}"));
                    }
                    for h in m["headers"].as_array().into_iter().flatten() {
                        text.push_str(&format!(
                            " {}={}",
                            h["name"].as_str().unwrap(),
                            h["value"].as_str().unwrap()
                        ));
                    }
                    text
                })
                .collect();
            let refs: Vec<String> = rule["backendRefs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| match r["weight"].as_u64() {
                    Some(w) => format!("{}:{w}", r["name"].as_str().unwrap()),
                    None => r["name"].as_str().unwrap().to_string(),
                })
                .collect();
            let mirror = rule["filters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|f| f["type"] == "RequestMirror")
                .map(|f| format!(" mirror {}", f["requestMirror"]))
                .collect::<String>();
            format!("{} -> {}{mirror}", matches.join(" | "), refs.join(" "))
        })
        .collect()
}

#[tokio::test]
async fn segment_then_mirror_then_weights_add_and_remove_rules_ahead_of_the_weighted_rule() {
    let (fake, _) = cluster(gateway_objects(), |_| {});
    let original = route_rules(&fake);
    let mut backend = gateway_with_beta(&fake);
    backend.preflight().await.unwrap();
    backend
        .set_weight(with_extras(change(1, 0.0, 0.0), true, None))
        .await
        .unwrap();
    assert_eq!(
        outline(&route_rules(&fake)),
        [
            "/ X-Beta=yes -> search-api-canary",
            "/ -> search-api-stable:100 search-api-canary:0",
            "/admin -> search-admin:1",
        ]
    );
    backend
        .set_weight(with_extras(change(2, 0.0, 0.0), true, Some(12.5)))
        .await
        .unwrap();
    let mirror = r#" mirror {"backendRef":{"name":"search-api-canary","port":8080},"fraction":{"numerator":12500,"denominator":100000}}"#;
    assert_eq!(
        outline(&route_rules(&fake)),
        [
            "/ X-Beta=yes | / GET X-Beta=yes | / HEAD X-Beta=yes -> search-api-canary".to_string(),
            format!("/ GET | / HEAD -> search-api-stable:100 search-api-canary:0{mirror}"),
            "/ -> search-api-stable:100 search-api-canary:0".to_string(),
            "/admin -> search-admin:1".to_string(),
        ]
    );
    backend
        .set_weight(with_extras(change(3, 10.0, 0.0), true, None))
        .await
        .unwrap();
    assert_eq!(
        outline(&route_rules(&fake)),
        [
            "/ X-Beta=yes -> search-api-canary",
            "/ -> search-api-stable:90 search-api-canary:10",
            "/admin -> search-admin:1",
        ]
    );
    backend
        .set_weight(with_extras(change(4, 100.0, 10.0), true, None))
        .await
        .unwrap();
    let end = route_rules(&fake);
    assert_eq!(end.len(), original.len());
    assert_eq!(end[0]["backendRefs"][1]["weight"], 100);
    assert_eq!(end[0]["matches"], original[0]["matches"]);
}

#[tokio::test]
async fn a_rollback_from_a_mirror_stage_leaves_the_route_as_it_was_at_100_0() {
    let (fake, _) = cluster(gateway_objects(), |_| {});
    let original = route_rules(&fake);
    let mut backend = gateway_with_beta(&fake);
    backend.preflight().await.unwrap();
    backend
        .set_weight(with_extras(change(1, 5.0, 0.0), true, Some(50.0)))
        .await
        .unwrap();
    assert_eq!(route_rules(&fake).len(), 4);
    // Another process, without the journal, rolls back: rollout's rules are known by their shape.
    let mut other = gateway_with_beta(&fake);
    other.recover(&Recovery::default()).await.unwrap();
    other.rollback().await.unwrap();
    assert_eq!(route_rules(&fake), original);
}

#[tokio::test]
async fn rules_are_added_and_removed_ahead_of_each_weighted_rule_wherever_it_is() {
    let mut objects = gateway_objects();
    let rules = objects[0]["spec"]["rules"].as_array().unwrap().clone();
    let (weighted, admin) = (rules[0].clone(), rules[1].clone());
    let mut api = weighted.clone();
    api["matches"][0]["path"]["value"] = json!("/api");
    objects[0]["spec"]["rules"] = json!([admin, weighted, api]);
    let (fake, _) = cluster(objects, |_| {});
    let original = route_rules(&fake);
    let mut backend = gateway_with_beta(&fake);
    backend.preflight().await.unwrap();
    backend
        .set_weight(with_extras(change(1, 0.0, 0.0), true, Some(5.0)))
        .await
        .unwrap();
    let mirror = r#" mirror {"backendRef":{"name":"search-api-canary","port":8080},"percent":5}"#;
    let segment = |path: &str| {
        format!(
            "{path} X-Beta=yes | {path} GET X-Beta=yes | {path} HEAD X-Beta=yes -> search-api-canary"
        )
    };
    assert_eq!(
        outline(&route_rules(&fake)),
        [
            "/admin -> search-admin:1".to_string(),
            segment("/"),
            format!("/ GET | / HEAD -> search-api-stable:100 search-api-canary:0{mirror}"),
            "/ -> search-api-stable:100 search-api-canary:0".to_string(),
            segment("/api"),
            format!("/api GET | /api HEAD -> search-api-stable:100 search-api-canary:0{mirror}"),
            "/api -> search-api-stable:100 search-api-canary:0".to_string(),
        ]
    );
    backend
        .set_weight(with_extras(change(2, 20.0, 0.0), true, None))
        .await
        .unwrap();
    assert_eq!(
        outline(&route_rules(&fake)),
        [
            "/admin -> search-admin:1",
            "/ X-Beta=yes -> search-api-canary",
            "/ -> search-api-stable:80 search-api-canary:20",
            "/api X-Beta=yes -> search-api-canary",
            "/api -> search-api-stable:80 search-api-canary:20",
        ]
    );
    backend.rollback().await.unwrap();
    assert_eq!(route_rules(&fake), original);
}
