//! End to end: the built `rollout` drives the ECS backend against moto in server mode, a real
//! HTTP server speaking the ECS and ELBv2 APIs, started on 127.0.0.1 (a port the kernel picks)
//! by `tests/support/ecs/moto_ecs.py` and seeded there through the API with boto3.
//!
//! moto accepts UpdateService but never deploys anything. The support script patches moto to
//! play the ECS scheduler's part (its module documentation says exactly how): UpdateService
//! starts a new PRIMARY deployment IN_PROGRESS, and about half a second later the next
//! DescribeServices finds it COMPLETED with every task running and the old deployment gone, or,
//! for an image the test names with `--broken-image`, marked FAILED by the circuit breaker, or,
//! with `--stuck-image`, still IN_PROGRESS forever. The backend's wait is the real one: it judges
//! the service's deployments exactly as it would on AWS.
//!
//! Gates come from a `command` metric (`cat` of a file in the test's directory); a stage hook
//! records the load balancer's weights at each stage, read back from moto through the API.
//!
//! Needs `python3` with `moto[server]` (5.x) and `boto3`; scripts/test.sh installs them. A
//! missing one fails the test with what to install: these tests never pass by skipping.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use pretty_assertions::assert_eq;
use serde_json::{Value, json};

use crate::harness::rollout_bin;

/// How long one `rollout run` may take before the test gives up on it.
const RUN_LIMIT: Duration = Duration::from_secs(120);
/// How long moto may take to start and be seeded (Python imports most of it).
const START_LIMIT: Duration = Duration::from_secs(60);

const NEW_IMAGE: &str = "registry.example/web:2.0";

fn support_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/ecs/moto_ecs.py")
}

/// python3 with moto's server and boto3, or a failed test saying how to get them.
fn check_python() {
    let ok = Command::new("python3")
        .args([
            "-c",
            "import moto, boto3, flask, flask_cors; from moto.server import ThreadedMotoServer; \
             assert int(moto.__version__.split('.')[0]) >= 5, moto.__version__",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "the ECS end-to-end tests need python3 with moto 5 in server mode and boto3: \
         run scripts/test.sh, or python3 -m pip install 'moto[server]>=5.2,<6' boto3"
    );
}

/// A seeded moto server; stopped (its stdin closed, then killed) when dropped.
struct Moto {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    seeded: Value,
    dir: tempfile::TempDir,
}

impl Moto {
    fn start(args: &[&str]) -> Moto {
        check_python();
        let dir = tempfile::tempdir().unwrap();
        let log = std::fs::File::create(dir.path().join("moto.log")).unwrap();
        let mut child = Command::new("python3")
            .arg(support_script())
            .arg("serve")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("start python3");
        let stdin = child.stdin.take();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        // The first line names the endpoint and the seeded resources; read it with a limit.
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut line = String::new();
            let _ = stdout.read_line(&mut line);
            let _ = tx.send((line, stdout));
        });
        let started = rx.recv_timeout(START_LIMIT);
        let log = || std::fs::read_to_string(dir.path().join("moto.log")).unwrap_or_default();
        let Ok((line, stdout)) = started else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "moto did not start within {START_LIMIT:?}; its log:\n{}",
                log()
            );
        };
        let Ok(seeded) = serde_json::from_str(&line) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "moto did not start: it printed {line:?}; its log:\n{}",
                log()
            );
        };
        Moto {
            child,
            stdin,
            stdout,
            seeded,
            dir,
        }
    }

    fn get(&self, key: &str) -> String {
        self.seeded[key]
            .as_str()
            .unwrap_or_else(|| panic!("moto seeded no {key}"))
            .to_string()
    }

    fn endpoint(&self) -> String {
        self.get("endpoint")
    }

    /// Everything the tests look at, read through the APIs by the support script.
    fn state(&mut self) -> Value {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "state").unwrap();
        stdin.flush().unwrap();
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("moto's state is not JSON ({e}): {line}\n{}", self.log()))
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("moto.log")).unwrap_or_default()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.stdin.take();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a run printed and how it ended.
struct Ran {
    code: i32,
    stderr: String,
    stdout: String,
}

/// A test directory with a plan, and the environment a run gets: only the AWS variables given
/// here (anything AWS in the test's own environment is removed), profile files that do not
/// exist, and no instance metadata lookups (which would leave the machine).
struct Run {
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
}

impl Run {
    fn new() -> Run {
        let dir = tempfile::tempdir().unwrap();
        let env = vec![
            ("AWS_EC2_METADATA_DISABLED".into(), "true".into()),
            (
                "AWS_CONFIG_FILE".into(),
                dir.path().join("aws-config").display().to_string(),
            ),
            (
                "AWS_SHARED_CREDENTIALS_FILE".into(),
                dir.path().join("aws-credentials").display().to_string(),
            ),
        ];
        Run { dir, env }
    }

    fn with_keys(self) -> Run {
        self.env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
    }

    fn env(mut self, key: &str, value: &str) -> Run {
        self.env.push((key.into(), value.into()));
        self
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write(&self, name: &str, contents: &str) {
        std::fs::write(self.path(name), contents).unwrap();
    }

    fn run(&self, plan: &str, extra: &[&str]) -> Ran {
        self.write("plan.toml", plan);
        let mut args = vec!["run", "plan.toml"];
        args.extend_from_slice(extra);
        self.rollout(&args)
    }

    /// `rollout ARGS...` in the test directory, with the run's environment.
    fn rollout(&self, args: &[&str]) -> Ran {
        let mut command = Command::new(rollout_bin());
        command
            .args(args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (key, _) in std::env::vars() {
            if key.starts_with("AWS_") {
                command.env_remove(key);
            }
        }
        command.envs(self.env.iter().map(|(k, v)| (k, v)));
        let mut child = command.spawn().expect("start rollout");
        let started = Instant::now();
        let (mut out, mut err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
        let out = thread::spawn(move || {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut out, &mut s).unwrap();
            s
        });
        let err = thread::spawn(move || {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut err, &mut s).unwrap();
            s
        });
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if started.elapsed() > RUN_LIMIT {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "rollout did not finish within {RUN_LIMIT:?}:\n{}",
                    err.join().unwrap()
                );
            }
            thread::sleep(Duration::from_millis(20));
        };
        Ran {
            code: status.code().expect("rollout exited, not killed"),
            stderr: err.join().unwrap(),
            stdout: out.join().unwrap(),
        }
    }

    /// The weights the `observe` hook recorded, one entry per stage: (stage weight, weights by
    /// target group ARN).
    fn observed(&self) -> Vec<(String, Value)> {
        std::fs::read_to_string(self.path("observed.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|line| {
                let v: Value = serde_json::from_str(line).unwrap();
                (
                    v["stage_weight"].as_str().unwrap().to_string(),
                    v["weights"].clone(),
                )
            })
            .collect()
    }
}

fn assert_code(ran: &Ran, code: i32, moto: &Moto) {
    assert_eq!(
        ran.code,
        code,
        "exit status of rollout\nstderr:\n{}\nstdout:\n{}\nmoto's log:\n{}",
        ran.stderr,
        ran.stdout,
        moto.log()
    );
}

/// The forward action's weights by target group, from actions as the API returns them.
fn forward_weights(actions: &Value) -> Value {
    let forward = actions
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["Type"] == "forward")
        .expect("a forward action");
    match forward["ForwardConfig"]["TargetGroups"].as_array() {
        Some(groups) => groups
            .iter()
            .map(|g| {
                (
                    g["TargetGroupArn"].as_str().unwrap().to_string(),
                    g["Weight"].clone(),
                )
            })
            .collect::<serde_json::Map<_, _>>()
            .into(),
        None => json!({ forward["TargetGroupArn"].as_str().unwrap(): 1 }),
    }
}

const DEFAULTS: &str = r#"
[defaults]
bake = "1s"
interval = "500ms"
max_hold = "20s"
"#;

/// The gate: a command metric that reads `gate` in the run's directory (0 passes, 1 breaches).
fn gate(run: &Run) -> String {
    format!(
        r#"
[sources.gate]
type = "command"

[[metrics]]
name = "errors"
source = "gate"
run = ["cat", "{}"]
advance = "< 0.5"
rollback = "> 0.5"
"#,
        run.path("gate").display()
    )
}

fn alb_plan(moto: &Moto, run: &Run, on: &str, weights: &[u32], fail_at: Option<u32>) -> String {
    let (field, arn) = match on {
        "listener" => ("listener_arn", moto.get("listener")),
        _ => ("rule_arn", moto.get("rule")),
    };
    let mut plan = format!(
        r#"
name = "web-alb"
{DEFAULTS}
[backend]
type = "ecs"
cluster = "prod"
region = "us-east-1"
endpoint_url = "{endpoint}"
deploy_timeout = "30s"
mode = "alb"
{field} = "{arn}"
stable_target_group = "{stable}"
canary_target_group = "{canary}"
canary_service = "web-canary"
container = "app"
image = "{NEW_IMAGE}"
{gate}
"#,
        endpoint = moto.endpoint(),
        stable = moto.get("stable_tg"),
        canary = moto.get("canary_tg"),
        gate = gate(run),
    );
    for &weight in weights {
        let observe = format!(
            r#"["python3", "{script}", "observe", "{endpoint}", "--{on}", "{arn}", "{out}"]"#,
            script = support_script().display(),
            endpoint = moto.endpoint(),
            out = run.path("observed.jsonl").display(),
        );
        plan.push_str(&format!(
            "\n[[stages]]\nweight = {weight}\n[[stages.hooks]]\nrun = {observe}\n"
        ));
        if fail_at == Some(weight) {
            // From this stage on the canary is "bad": the gate breaches at its first reading.
            let flip = format!(
                r#"["sh", "-c", "echo 1 > '{}'"]"#,
                run.path("gate").display()
            );
            plan.push_str(&format!("[[stages.hooks]]\nrun = {flip}\n"));
        }
    }
    plan
}

fn service_plan(moto: &Moto, run: &Run, deploy_timeout: &str) -> String {
    format!(
        r#"
name = "web"
strategy = "blue-green"
{DEFAULTS}
[backend]
type = "ecs"
cluster = "prod"
region = "us-east-1"
endpoint_url = "{endpoint}"
deploy_timeout = "{deploy_timeout}"
mode = "service"
service = "web"
container = "app"
image = "{NEW_IMAGE}"
{gate}
[[stages]]
weight = 0

[[stages]]
weight = 100
"#,
        endpoint = moto.endpoint(),
        gate = gate(run),
    )
}

/// The task definition a service runs and its deployments, in short.
fn service_state(state: &Value, service: &str) -> (String, Vec<Value>) {
    let s = &state["services"][service];
    let deployments = s["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            json!([
                d["status"],
                d["taskDefinition"],
                d["rolloutState"],
                d["runningCount"],
                d["desiredCount"]
            ])
        })
        .collect();
    (
        s["taskDefinition"].as_str().unwrap().to_string(),
        deployments,
    )
}

/// `service` runs `revision` (`FAMILY:REV`) and is steady on it: a lone PRIMARY deployment,
/// COMPLETED, with all `tasks` running.
#[track_caller]
fn assert_steady_on(state: &Value, service: &str, revision: &str, tasks: u32) {
    let td = td(revision);
    assert_eq!(
        service_state(state, service),
        (
            td.clone(),
            vec![json!(["PRIMARY", td, "COMPLETED", tasks, tasks])]
        )
    );
}

fn td(family_revision: &str) -> String {
    format!("arn:aws:ecs:us-east-1:123456789012:task-definition/{family_revision}")
}

#[test]
fn alb_canary_moves_all_traffic_to_the_canary_target_group() {
    let mut moto = Moto::start(&[]);
    let run = Run::new().with_keys();
    run.write("gate", "0\n");
    let (stable, canary) = (moto.get("stable_tg"), moto.get("canary_tg"));
    let ran = run.run(
        &alb_plan(&moto, &run, "listener", &[10, 50, 100], None),
        &[],
    );
    assert_code(&ran, 0, &moto);

    // What the listener held while each stage ran, read by the stage's hook.
    assert_eq!(
        run.observed(),
        vec![
            ("10".to_string(), json!({ &stable: 90, &canary: 10 })),
            ("50".to_string(), json!({ &stable: 50, &canary: 50 })),
            ("100".to_string(), json!({ &stable: 0, &canary: 100 })),
        ]
    );
    let state = moto.state();
    assert_eq!(
        forward_weights(&state["listenerActions"]),
        json!({ &stable: 0, &canary: 100 })
    );
    // The canary service got the new image before the first stage; stable was not touched.
    assert_steady_on(&state, "web-canary", "web-canary:2", 1);
    assert_eq!(
        state["taskDefinitions"][td("web-canary:2")]["taskDefinition"]["containerDefinitions"][0]["image"],
        NEW_IMAGE
    );
    assert_steady_on(&state, "web", "web:1", 2);
}

#[test]
fn alb_canary_rolled_back_puts_all_traffic_on_the_stable_target_group() {
    let mut moto = Moto::start(&[]);
    let run = Run::new().with_keys();
    run.write("gate", "0\n");
    let (stable, canary) = (moto.get("stable_tg"), moto.get("canary_tg"));
    let before = moto.state();
    let ran = run.run(
        &alb_plan(&moto, &run, "rule", &[10, 50, 100], Some(50)),
        &[],
    );
    assert_code(&ran, 3, &moto);
    assert!(
        ran.stderr.contains("errors"),
        "the breach is reported:\n{}",
        ran.stderr
    );

    assert_eq!(
        run.observed(),
        vec![
            ("10".to_string(), json!({ &stable: 90, &canary: 10 })),
            ("50".to_string(), json!({ &stable: 50, &canary: 50 })),
        ]
    );
    let state = moto.state();
    assert_eq!(
        forward_weights(&state["ruleActions"]),
        json!({ &stable: 100, &canary: 0 })
    );
    // Everything else on the rule is as it was: stickiness, conditions.
    assert_eq!(state["ruleActions"], before["ruleActions"]);
    assert_eq!(state["ruleConditions"], before["ruleConditions"]);
    // The canary service is back on the revision it ran before.
    assert_steady_on(&state, "web-canary", "web-canary:1", 1);
}

#[test]
fn service_update_is_promoted_with_every_other_field_carried_over() {
    let mut moto = Moto::start(&[]);
    let run = Run::new().with_keys();
    run.write("gate", "0\n");
    let ran = run.run(&service_plan(&moto, &run, "30s"), &[]);
    assert_code(&ran, 0, &moto);

    let state = moto.state();
    assert_steady_on(&state, "web", "web:2", 2);
    let old = &state["taskDefinitions"][td("web:1")];
    let new = &state["taskDefinitions"][td("web:2")];
    assert_eq!(new["tags"], old["tags"]);
    // The new revision is the old one with the new image on `app`, and nothing else changed.
    let mut expected = old["taskDefinition"].clone();
    expected["containerDefinitions"][0]["image"] = json!(NEW_IMAGE);
    let mut got = new["taskDefinition"].clone();
    for volatile in [
        "taskDefinitionArn",
        "revision",
        "registeredAt",
        "registeredBy",
    ] {
        expected.as_object_mut().unwrap().remove(volatile);
        got.as_object_mut().unwrap().remove(volatile);
    }
    assert_eq!(got, expected);
    assert_eq!(
        got["containerDefinitions"][1]["image"],
        "registry.example/fluent-bit:2"
    );
}

#[test]
fn service_update_rolled_back_returns_to_the_previous_revision() {
    let mut moto = Moto::start(&[]);
    let run = Run::new().with_keys();
    run.write("gate", "1\n");
    let ran = run.run(&service_plan(&moto, &run, "30s"), &[]);
    assert_code(&ran, 3, &moto);

    let state = moto.state();
    assert_steady_on(&state, "web", "web:1", 2);
    // The new revision was registered and deployed before the gate failed.
    assert_eq!(
        state["taskDefinitions"][td("web:2")]["taskDefinition"]["containerDefinitions"][0]["image"],
        NEW_IMAGE
    );
}

#[test]
fn a_deployment_the_circuit_breaker_fails_fails_the_stage() {
    let mut moto = Moto::start(&["--broken-image", NEW_IMAGE]);
    let run = Run::new().with_keys();
    run.write("gate", "0\n");
    let ran = run.run(&service_plan(&moto, &run, "30s"), &[]);
    // The release failed its stage (exit 3), not the tool (exit 1).
    assert_code(&ran, 3, &moto);
    assert!(
        ran.stderr.contains(&format!(
            "Rolled back to the stable version because the new version failed in stage 2 (100%): the deployment of {} to ECS service `web` failed: ECS marked it FAILED: ECS deployment circuit breaker: tasks failed to start.",
            td("web:2")
        )),
        "{}",
        ran.stderr
    );
    let state = moto.state();
    assert_steady_on(&state, "web", "web:1", 2);
}

#[test]
fn a_deployment_that_never_settles_times_out() {
    let mut moto = Moto::start(&["--stuck-image", NEW_IMAGE]);
    let run = Run::new().with_keys();
    run.write("gate", "0\n");
    let ran = run.run(&service_plan(&moto, &run, "3s"), &[]);
    assert_code(&ran, 3, &moto);
    assert!(
        ran.stderr.contains(&format!(
            "because the new version failed in stage 2 (100%): ECS service `web` was not steady on {} within 3s (deploy_timeout): the deployment is IN_PROGRESS (0 of 2 tasks running",
            td("web:2")
        )),
        "{}",
        ran.stderr
    );
    let state = moto.state();
    assert_steady_on(&state, "web", "web:1", 2);
}

/// Pauses at the first stage with traffic: the gate prints nothing (no data), so the stage holds
/// until `max_hold`, and `on_timeout = "pause"` leaves traffic where it is (exit 4).
fn pausing(plan: String) -> String {
    plan.replace(
        "max_hold = \"20s\"",
        "max_hold = \"2s\"\non_timeout = \"pause\"",
    )
}

#[test]
fn alb_rollback_from_another_process_uses_the_journal() {
    let mut moto = Moto::start(&[]);
    let run = Run::new().with_keys();
    run.write("gate", "");
    let (stable, canary) = (moto.get("stable_tg"), moto.get("canary_tg"));
    let before = moto.state();
    let ran = run.run(
        &pausing(alb_plan(&moto, &run, "rule", &[10, 100], None)),
        &[],
    );
    assert_code(&ran, 4, &moto);
    let paused = moto.state();
    assert_eq!(
        forward_weights(&paused["ruleActions"]),
        json!({ &stable: 90, &canary: 10 })
    );
    assert_eq!(service_state(&paused, "web-canary").0, td("web-canary:2"));

    // A new process knows only the plan and the journal.
    let ran = run.rollout(&["rollback", "plan.toml"]);
    assert_code(&ran, 0, &moto);
    let state = moto.state();
    assert_eq!(state["ruleActions"], before["ruleActions"]);
    assert_steady_on(&state, "web-canary", "web-canary:1", 1);
}

#[test]
fn service_update_resumed_from_the_journal_registers_no_second_revision() {
    let mut moto = Moto::start(&[]);
    let run = Run::new().with_keys();
    run.write("gate", "");
    let ran = run.run(&pausing(service_plan(&moto, &run, "30s")), &[]);
    assert_code(&ran, 4, &moto);
    assert_eq!(service_state(&moto.state(), "web").0, td("web:2"));

    run.write("gate", "0\n");
    let ran = run.rollout(&["resume", "plan.toml"]);
    assert_code(&ran, 0, &moto);
    let state = moto.state();
    assert_steady_on(&state, "web", "web:2", 2);
    let revisions: Vec<&String> = state["taskDefinitions"]
        .as_object()
        .unwrap()
        .keys()
        .filter(|arn| arn.contains("task-definition/web:"))
        .collect();
    assert_eq!(revisions, [&td("web:1"), &td("web:2")]);

    // And the previous revision is still the one a rollback returns to.
    let ran = run.rollout(&["rollback", "plan.toml"]);
    assert_code(&ran, 0, &moto);
    assert_steady_on(&moto.state(), "web", "web:1", 2);
}

#[test]
fn service_rollback_without_the_journal_needs_the_task_definition_to_return_to() {
    let mut moto = Moto::start(&[]);
    let run = Run::new().with_keys();
    run.write("gate", "");
    let ran = run.run(&pausing(service_plan(&moto, &run, "30s")), &[]);
    assert_code(&ran, 4, &moto);
    let paused = moto.state();
    assert_eq!(service_state(&paused, "web").0, td("web:2"));

    // Another machine: no journal knows that web:1 is what the service ran before.
    let ran = run.rollout(&["rollback", "plan.toml", "--state-dir", "elsewhere"]);
    assert_code(&ran, 5, &moto);
    assert!(
        ran.stderr.contains(
            "Cannot roll back without the journal, so nothing was changed: the task definition ECS \
             service `web` ran before the rollout is only known to the journal; give it with \
             `rollout rollback PLAN --task-definition FAMILY:REVISION`"
        ),
        "{}",
        ran.stderr
    );
    assert_eq!(
        moto.state()["services"],
        paused["services"],
        "nothing changed"
    );

    let ran = run.rollout(&[
        "rollback",
        "plan.toml",
        "--state-dir",
        "elsewhere",
        "--task-definition",
        "web:1",
    ]);
    assert_code(&ran, 0, &moto);
    assert_steady_on(&moto.state(), "web", "web:1", 2);
}

#[test]
fn alb_rollback_without_the_journal_sends_everything_to_stable() {
    let mut moto = Moto::start(&[]);
    let run = Run::new().with_keys();
    run.write("gate", "");
    let (stable, canary) = (moto.get("stable_tg"), moto.get("canary_tg"));
    let ran = run.run(
        &pausing(alb_plan(&moto, &run, "rule", &[10, 100], None)),
        &[],
    );
    assert_code(&ran, 4, &moto);
    let ran = run.rollout(&["rollback", "plan.toml", "--state-dir", "elsewhere"]);
    assert_code(&ran, 0, &moto);
    assert_eq!(
        forward_weights(&moto.state()["ruleActions"]),
        json!({ &stable: 100, &canary: 0 })
    );
}

#[test]
fn missing_resources_stop_the_run_at_preflight_and_nothing_is_touched() {
    let mut moto = Moto::start(&[]);
    let before = moto.state();
    let run = Run::new().with_keys();
    run.write("gate", "0\n");
    let service = service_plan(&moto, &run, "30s");
    let alb = alb_plan(&moto, &run, "rule", &[50, 100], None);
    let bogus_tg =
        "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/nope/0000000000000000";
    let bogus_rule = "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener-rule/app/web/0000000000000000/0000000000000000/0000000000000000";
    let bogus_listener = "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/web/0000000000000000/0000000000000000";
    let cases = [
        (
            service.replace("cluster = \"prod\"", "cluster = \"staging\""),
            "ECS cluster `staging` does not exist (region us-east-1)".to_string(),
        ),
        (
            service.replace("service = \"web\"", "service = \"api\""),
            "ECS service `api` in cluster `prod` does not exist (region us-east-1)".to_string(),
        ),
        (
            service.replace("container = \"app\"", "container = \"api\""),
            format!(
                "task definition {} has no container `api` (it has `app`, `log-router`)",
                td("web:1")
            ),
        ),
        (
            alb.replace(&moto.get("canary_tg"), bogus_tg),
            format!(
                "target group {bogus_tg} (canary_target_group) does not exist (region us-east-1)"
            ),
        ),
        (
            alb.replace(&moto.get("rule"), bogus_rule),
            format!("ALB listener rule {bogus_rule} does not exist (region us-east-1)"),
        ),
        (
            alb.replace(
                &format!("rule_arn = \"{}\"", moto.get("rule")),
                &format!("listener_arn = \"{bogus_listener}\""),
            ),
            format!("ALB listener {bogus_listener} does not exist (region us-east-1)"),
        ),
        (
            alb.replace(&moto.get("rule"), &moto.get("foreign_rule")),
            format!(
                "ALB listener rule {}: its forward action also sends traffic to {} (weight 50), which is neither the stable nor the canary target group",
                moto.get("foreign_rule"),
                moto.get("other_tg")
            ),
        ),
    ];
    for (plan, problem) in cases {
        let ran = run.run(&plan, &[]);
        assert_code(&ran, 1, &moto);
        let expected = format!("The preflight check failed, so nothing was changed: {problem}.");
        assert!(
            ran.stderr.contains(&expected),
            "expected {expected:?} in:\n{}",
            ran.stderr
        );
    }
    assert_eq!(moto.state(), before);
}

#[test]
fn missing_credentials_are_a_clear_error() {
    let moto = Moto::start(&[]);
    let run = Run::new();
    run.write("gate", "0\n");
    let ran = run.run(&service_plan(&moto, &run, "30s"), &[]);
    assert_code(&ran, 1, &moto);
    assert!(
        ran.stderr.contains(
            "The preflight check failed, so nothing was changed: no AWS credentials could be resolved ("
        ) && ran.stderr.contains("set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE"),
        "{}",
        ran.stderr
    );
}

#[test]
fn expired_credentials_are_a_clear_error() {
    let moto = Moto::start(&[]);
    let run = Run::new();
    run.write("gate", "0\n");
    // A credential_process that hands out credentials which expired long ago, as a stale
    // cache of one would.
    run.write(
        "creds.sh",
        "#!/bin/sh\necho '{\"Version\": 1, \"AccessKeyId\": \"ASIAEXPIRED\", \"SecretAccessKey\": \"s3cr3t-never-printed\", \"SessionToken\": \"t0ken-never-printed\", \"Expiration\": \"2020-01-01T00:00:00Z\"}'\n",
    );
    run.write(
        "aws-config",
        &format!(
            "[default]\ncredential_process = sh {}\n",
            run.path("creds.sh").display()
        ),
    );
    let ran = run.run(&service_plan(&moto, &run, "30s"), &[]);
    assert_code(&ran, 1, &moto);
    assert!(
        ran.stderr.contains(
            "The preflight check failed, so nothing was changed: the AWS credentials expired at 2020-01-01T00:00:00Z (now "
        ),
        "{}",
        ran.stderr
    );
    for secret in ["s3cr3t-never-printed", "t0ken-never-printed"] {
        assert!(!ran.stderr.contains(secret) && !ran.stdout.contains(secret));
    }
}

#[test]
fn dry_run_prints_each_api_call_and_calls_nothing() {
    // No credentials and an endpoint where nothing listens: a dry run must need neither.
    let run = Run::new();
    run.write("gate", "0\n");
    let plan = r#"
name = "web-alb"
[defaults]
bake = "2m"

[backend]
type = "ecs"
cluster = "prod"
region = "eu-west-1"
endpoint_url = "http://127.0.0.1:9"
mode = "alb"
rule_arn = "arn:aws:elasticloadbalancing:eu-west-1:1:listener-rule/app/web/1/2/3"
stable_target_group = "arn:aws:elasticloadbalancing:eu-west-1:1:targetgroup/stable/1"
canary_target_group = "arn:aws:elasticloadbalancing:eu-west-1:1:targetgroup/canary/2"
canary_service = "web-canary"
container = "app"
image = "registry.example/web:2.0"

[[stages]]
weight = 5

[[stages]]
weight = 100
"#;
    let ran = run.run(plan, &["--dry-run"]);
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let tg = "arn:aws:elasticloadbalancing:eu-west-1:1:targetgroup";
    let rule = "arn:aws:elasticloadbalancing:eu-west-1:1:listener-rule/app/web/1/2/3";
    // The backend's own lines, in order (the engine's lines around them are tested elsewhere).
    let backend_lines: Vec<&str> = ran
        .stderr
        .lines()
        .filter(|l| l.starts_with("would ") && !l.starts_with("would bake"))
        .collect();
    let calls = format!(
        r#"would resolve AWS credentials (the standard chain) for the region eu-west-1
would call ecs DescribeClusters {{"clusters":["prod"]}}
would call ecs DescribeServices {{"cluster":"prod","services":["web-canary"]}}
would call ecs DescribeTaskDefinition {{"taskDefinition":"<the task definition of service web-canary>","include":["TAGS"]}}
would call elbv2 DescribeTargetGroups {{"TargetGroupArns":["{tg}/stable/1"]}}
would call elbv2 DescribeTargetGroups {{"TargetGroupArns":["{tg}/canary/2"]}}
would call elbv2 DescribeRules {{"RuleArns":["{rule}"]}}
would call ecs DescribeServices {{"cluster":"prod","services":["web-canary"]}}
would call ecs RegisterTaskDefinition {{"copyOf":"<the task definition of service web-canary>","container":"app","image":"registry.example/web:2.0"}}
would call ecs UpdateService {{"cluster":"prod","service":"web-canary","taskDefinition":"<the revision just registered>"}}
would wait until ECS service `web-canary` is steady on <the revision just registered>: its PRIMARY deployment COMPLETED with every desired task running (at most 10m, deploy_timeout)
would call ecs DescribeServices {{"cluster":"prod","services":["web-canary"]}}
would call elbv2 DescribeRules {{"RuleArns":["{rule}"]}}
would call elbv2 ModifyRule {{"RuleArn":"{rule}","Actions":[{{"Type":"forward","ForwardConfig":{{"TargetGroups":[{{"TargetGroupArn":"{tg}/stable/1","Weight":95}},{{"TargetGroupArn":"{tg}/canary/2","Weight":5}}]}}}}],"otherActions":"kept as read"}}
would read ALB listener rule {rule} back and confirm the weights 95 (stable) / 5 (canary)
would call elbv2 DescribeRules {{"RuleArns":["{rule}"]}}
would call elbv2 DescribeRules {{"RuleArns":["{rule}"]}}
would call elbv2 ModifyRule {{"RuleArn":"{rule}","Actions":[{{"Type":"forward","ForwardConfig":{{"TargetGroups":[{{"TargetGroupArn":"{tg}/stable/1","Weight":0}},{{"TargetGroupArn":"{tg}/canary/2","Weight":100}}]}}}}],"otherActions":"kept as read"}}
would read ALB listener rule {rule} back and confirm the weights 0 (stable) / 100 (canary)
would call elbv2 DescribeRules {{"RuleArns":["{rule}"]}}"#
    );
    assert_eq!(backend_lines, calls.lines().collect::<Vec<_>>());
    assert!(
        ran.stderr.starts_with(&format!(
            "rollout web-alb: canary in 2 stages through the ALB listener rule {rule} (ECS cluster `prod`)"
        )) || ran.stderr.contains(&format!(
            "\nrollout web-alb: canary in 2 stages through the ALB listener rule {rule} (ECS cluster `prod`)"
        )),
        "{}",
        ran.stderr
    );
}

/// The calls of a run's JSON events that change something, each with the parameters the plan
/// decides: a new revision's container and image, the service an update points, the weights
/// a write to the listener or rule sets. What a real run first reads from AWS (the task
/// definition copied, the ARN registered, the other actions and settings kept) is left out.
fn changes(stdout: &str, dry_run: bool) -> Vec<(String, Value)> {
    let events: Vec<Value> = stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    events
        .iter()
        .filter(|e| e["event"] == "action" && e["kind"] == "call")
        .filter(|e| {
            assert_eq!(e["dry_run"], dry_run, "{e}");
            let operation = e["operation"].as_str().unwrap();
            ["Register", "Update", "Modify"]
                .iter()
                .any(|verb| operation.starts_with(verb))
        })
        .map(|e| {
            let operation = e["operation"].as_str().unwrap().to_string();
            let decided = plan_decided(&operation, &e["params"]);
            (operation, decided)
        })
        .collect()
}

fn plan_decided(operation: &str, params: &Value) -> Value {
    match operation {
        "RegisterTaskDefinition" => {
            json!({ "container": params["container"], "image": params["image"] })
        }
        "UpdateService" => json!({ "cluster": params["cluster"], "service": params["service"] }),
        "ModifyListener" => json!({
            "ListenerArn": params["ListenerArn"],
            "weights": forward_weights(&params["DefaultActions"]),
        }),
        "ModifyRule" => json!({
            "RuleArn": params["RuleArn"],
            "weights": forward_weights(&params["Actions"]),
        }),
        other => panic!("unexpected call {other} {params}"),
    }
}

/// Runs the plan with `--dry-run`, then for real, and holds the dry run to the changes the real
/// one made, in order. Returns the operations, so that a test can say they are not nothing.
fn same_changes_dry_and_real(run: &Run, plan: &str, moto: &Moto) -> Vec<String> {
    let dry = run.run(plan, &["--dry-run", "--output", "json"]);
    assert_code(&dry, 0, moto);
    let real = run.run(plan, &["--verbose", "--output", "json"]);
    assert_code(&real, 0, moto);
    let (dry, real) = (changes(&dry.stdout, true), changes(&real.stdout, false));
    assert_eq!(
        dry, real,
        "the dry run's changes (left) and the real run's (right)"
    );
    real.into_iter().map(|(operation, _)| operation).collect()
}

#[test]
fn a_dry_run_shows_the_changes_a_real_alb_run_makes() {
    let moto = Moto::start(&[]);
    let run = Run::new().with_keys();
    run.write("gate", "0\n");
    let plan = alb_plan(&moto, &run, "rule", &[0, 10, 50, 100], None);
    // At 0% the rule already sends everything to stable: neither run writes it.
    assert_eq!(
        same_changes_dry_and_real(&run, &plan, &moto),
        [
            "RegisterTaskDefinition",
            "UpdateService",
            "ModifyRule",
            "ModifyRule",
            "ModifyRule"
        ]
    );
}

#[test]
fn a_dry_run_shows_the_changes_a_real_service_run_makes() {
    let moto = Moto::start(&[]);
    let run = Run::new().with_keys();
    run.write("gate", "0\n");
    let plan = service_plan(&moto, &run, "30s");
    assert_eq!(
        same_changes_dry_and_real(&run, &plan, &moto),
        ["RegisterTaskDefinition", "UpdateService"]
    );
}
