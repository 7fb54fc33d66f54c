//! Shared state: one rollout operated from several "machines" (working directories that share
//! nothing but the store), against moto's S3 server on 127.0.0.1 as the object store. Between
//! rollout and moto sits a small TCP proxy the tests can cut, to make the store unreachable
//! without losing what it holds (moto keeps objects in memory: a restart would lose them).
//!
//! Needs `moto_server` (PyPI `moto[server]`, installed by scripts/test.sh).

use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use crate::harness::rollout_bin;
use crate::running::{Running, wait_until};

const BUCKET: &str = "rollouts";

/// moto's S3 API on a free port, with the bucket created; stopped when dropped.
struct MotoS3 {
    child: Child,
    port: u16,
}

impl MotoS3 {
    fn start() -> MotoS3 {
        let port = free_port();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "the shared-state tests need `moto_server` ({e}); install it with \
                     `python3 -m pip install 'moto[server]>=5.2,<6'` (scripts/test.sh does)"
                )
            });
        let moto = MotoS3 { child, port };
        assert!(
            wait_until(Duration::from_secs(30), || TcpStream::connect((
                "127.0.0.1",
                port
            ))
            .is_ok()),
            "moto_server did not start listening on port {port}"
        );
        let status = http(port, "PUT", &format!("/{BUCKET}"));
        assert_eq!(status, 200, "create the bucket");
        moto
    }
}

impl Drop for MotoS3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port()
}

/// One plain HTTP request (moto lets anyone create a bucket); the status code.
fn http(port: u16, method: &str, path: &str) -> u16 {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    reqwest::blocking::Client::new()
        .request(method, format!("http://127.0.0.1:{port}{path}"))
        .timeout(Duration::from_secs(10))
        .send()
        .map_or(0, |response| response.status().as_u16())
}

/// Forwards 127.0.0.1:port to moto, until cut: then every connection, open or new, is closed.
struct Proxy {
    port: u16,
    cut: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    fn start(target: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = Arc::new(AtomicBool::new(false));
        let open: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (cut_flag, open_list) = (cut.clone(), open.clone());
        thread::spawn(move || {
            for client in listener.incoming().map_while(Result::ok) {
                if cut_flag.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                let mut list = open_list.lock().unwrap();
                list.push(client.try_clone().unwrap());
                list.push(server.try_clone().unwrap());
                pipe(client.try_clone().unwrap(), server.try_clone().unwrap());
                pipe(server, client);
            }
        });
        Proxy { port, cut, open }
    }

    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for stream in self.open.lock().unwrap().drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    fn mend(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    thread::spawn(move || {
        let _ = std::io::copy(&mut from, &mut to);
        let _ = to.shutdown(Shutdown::Write);
    });
}

/// The store and what every "machine" needs to reach it.
struct Store {
    _moto: MotoS3,
    proxy: Proxy,
    url: String,
}

impl Store {
    fn start(prefix: &str) -> Store {
        let moto = MotoS3::start();
        let proxy = Proxy::start(moto.port);
        Store {
            url: format!("s3://{BUCKET}/{prefix}"),
            proxy,
            _moto: moto,
        }
    }

    /// The standard AWS environment, pointing at the store (through the proxy).
    fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ACCESS_KEY_ID", "test".to_string()),
            ("AWS_SECRET_ACCESS_KEY", "test".to_string()),
            ("AWS_REGION", "us-east-1".to_string()),
            (
                "AWS_ENDPOINT_URL",
                format!("http://127.0.0.1:{}", self.proxy.port),
            ),
            ("AWS_ALLOW_HTTP", "true".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }
}

/// A machine: a working directory with the plan, sharing nothing with the others but the
/// store (and the traffic file the command backend writes, which stands for the router).
struct Machine {
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
}

impl Machine {
    fn new(store: &Store, plan: &str) -> Machine {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("plan.toml"), plan).unwrap();
        std::fs::write(dir.path().join("error-rate"), "0\n").unwrap();
        Machine {
            dir,
            env: store.env(),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `rollout ARGS` here: (exit code, stdout, stderr).
    fn rollout(&self, args: &[&str]) -> (i32, String, String) {
        let mut command = Command::new(rollout_bin());
        for (key, _) in std::env::vars() {
            if key.starts_with("AWS_") || key.starts_with("ROLLOUT_STATE") {
                command.env_remove(key);
            }
        }
        let output = command
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .current_dir(self.path())
            .stdin(Stdio::null())
            .output()
            .expect("run rollout");
        (
            output.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    fn start(&self, args: &[&str]) -> Running {
        Running::start_with_env(self.path(), args, &self.env)
    }

    fn status(&self, name: &str) -> serde_json::Value {
        let (code, stdout, stderr) = self.rollout(&["status", name, "--output", "json"]);
        assert_eq!(code, 0, "{stderr}");
        serde_json::from_str(&stdout).unwrap()
    }
}

/// A command-backend plan whose state is in the store: every weight set is appended to
/// `traffic` (one file for all machines: the router they share).
fn plan(store: &Store, name: &str, traffic: &Path, lease: &str, stages: &str) -> String {
    format!(
        r#"name = "{name}"

[state]
url = "{url}"
lease = "{lease}"

[defaults]
interval = "200ms"
bake = "600ms"
max_hold = "60s"

[backend]
type = "command"
set_weight = ["sh", "-c", "echo $ROLLOUT_WEIGHT >> {traffic}"]

[sources.gate]
type = "command"

[[metrics]]
name = "error-rate"
source = "gate"
run = ["cat", "error-rate"]
advance = "< 1%"
rollback = "> 5%"

{stages}"#,
        url = store.url,
        traffic = traffic.display(),
    )
}

const THREE_STAGES: &str =
    "[[stages]]\nweight = 10\n[[stages]]\nweight = 50\n[[stages]]\nweight = 100\n";

fn traffic_file() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("traffic");
    (dir, path)
}

fn history(traffic: &Path) -> String {
    std::fs::read_to_string(traffic).unwrap_or_default()
}

#[test]
fn an_approval_from_another_machine_reaches_the_run() {
    let store = Store::start("approve");
    let (_t, traffic) = traffic_file();
    let stages = "[[stages]]\nweight = 10\napproval = true\n[[stages]]\nweight = 100\n";
    let text = plan(&store, "shop", &traffic, "10s", stages);
    let (a, b) = (Machine::new(&store, &text), Machine::new(&store, &text));
    let run = a.start(&["run", "plan.toml"]);
    run.wait_for_line(&format!("rollout approve shop --state {}", store.url));

    let status = b.status("plan.toml");
    assert_eq!(status["state"], "waiting for approval", "{status:#}");
    assert_eq!(status["holder"]["holder"]["pid"], run.pid(), "{status:#}");
    assert_eq!(status["holder"]["live"], true);

    let (code, _, stderr) = b.rollout(&["approve", "shop", "--state", &store.url, "--by", "bob"]);
    assert_eq!(code, 0, "{stderr}");
    let (code, stderr, _) = run.finish();
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("stage 1: approved by bob"), "{stderr}");
    assert_eq!(history(&traffic), "10\n100\n");
}

#[test]
fn a_second_run_from_another_machine_is_refused_naming_the_holder() {
    let store = Store::start("second");
    let (_t, traffic) = traffic_file();
    let text = plan(
        &store,
        "shop",
        &traffic,
        "10s",
        "[[stages]]\nweight = 10\napproval = true\n[[stages]]\nweight = 100\n",
    );
    let (a, b) = (Machine::new(&store, &text), Machine::new(&store, &text));
    let run = a.start(&["run", "plan.toml"]);
    run.wait_for_line("rollout approve shop");
    let (code, _, stderr) = b.rollout(&["run", "plan.toml"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "error: rollout `shop` is already being driven by `rollout run` (pid {} on ",
            run.pid()
        )) && stderr.contains("(`--force` takes it over anyway)"),
        "{stderr}"
    );
    let (code, _, stderr) = b.rollout(&["approve", "shop", "--state", &store.url, "--reject"]);
    assert_eq!(code, 0, "{stderr}");
    let (code, stderr, _) = run.finish();
    assert_eq!(code, 3, "{stderr}");
    assert_eq!(history(&traffic), "10\n0\n");
}

/// A is frozen (SIGSTOP) until its lease runs out; B takes the rollout over and rolls back; A
/// is thawed. A must change no traffic after that, and exit 1 saying it lost the rollout.
#[test]
fn a_frozen_holder_that_lost_its_lease_changes_nothing_when_it_wakes() {
    let store = Store::start("split");
    let (_t, traffic) = traffic_file();
    let text = plan(&store, "shop", &traffic, "3s", THREE_STAGES)
        .replace("bake = \"600ms\"", "bake = \"2s\"");
    let (a, b) = (Machine::new(&store, &text), Machine::new(&store, &text));
    let run = a.start(&["run", "plan.toml"]);
    run.wait_for_line("stage 1: baking");
    run.signal(libc::SIGSTOP);
    assert!(
        wait_until(Duration::from_secs(20), || b.status("plan.toml")["state"]
            == "interrupted"),
        "A's lease never ran out"
    );
    let (code, _, stderr) = b.rollout(&["rollback", "plan.toml"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "note: took over rollout `shop` from `rollout run` (pid {}",
            run.pid()
        )),
        "{stderr}"
    );
    let after_rollback = history(&traffic);
    assert_eq!(after_rollback, "10\n0\n");

    run.signal(libc::SIGCONT);
    let (code, stderr, _) = run.finish();
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("Stopped without changing traffic any more: ")
            && stderr.contains("lost rollout `shop` to `rollout rollback` (pid "),
        "{stderr}"
    );
    assert_eq!(
        history(&traffic),
        after_rollback,
        "A changed traffic after it lost"
    );
    let status = b.status("plan.toml");
    assert_eq!(status["state"], "rolled back", "{status:#}");
}

/// The store does not answer for a while mid-run: no rollback, no stage started without its
/// journal entry, a warning; once the store answers, the run goes on and finishes.
#[test]
fn a_store_that_stops_answering_holds_the_run_where_it_is() {
    let store = Store::start("outage");
    let (_t, traffic) = traffic_file();
    let text = plan(&store, "shop", &traffic, "10s", THREE_STAGES);
    let a = Machine::new(&store, &text);
    let run = a.start(&["run", "plan.toml"]);
    run.wait_for_line("stage 1: baking");
    store.proxy.cut();
    // The end of stage 1's bake needs a journal entry for stage 2: it waits for the store.
    run.wait_for_line("the journal cannot be written");
    assert_eq!(
        history(&traffic),
        "10\n",
        "stage 2 started without a journal entry"
    );
    store.proxy.mend();
    let (code, stderr, _) = run.finish();
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(history(&traffic), "10\n50\n100\n", "no rollback");
    assert_eq!(a.status("plan.toml")["state"], "promoted");
}

/// A killed on a real nginx; B sees it interrupted once its lease runs out, names it, and
/// either rolls back or resumes.
#[test]
fn after_kill_9_another_machine_sees_it_and_rolls_back_or_resumes() {
    use crate::e2e_nginx::{PlanOptions, Source, assert_only_stable, plan as nginx_plan};
    let lab = crate::lab::Lab::start();
    let store = Store::start("kill9");
    for finish in ["rollback", "resume"] {
        let gate = tempfile::tempdir().unwrap();
        let gate_file = gate.path().join("error-rate");
        std::fs::write(&gate_file, "0\n").unwrap();
        let options = PlanOptions {
            defaults: "bake = \"2s\"\ninterval = \"500ms\"".into(),
            source: Source::File(gate_file),
            ..PlanOptions::default()
        };
        let text = format!(
            "{}\n[state]\nurl = \"{}\"\nlease = \"3s\"\n",
            nginx_plan(&lab, options),
            store.url
        );
        let (a, b) = (Machine::new(&store, &text), Machine::new(&store, &text));
        let run = a.start(&["run", "plan.toml"]);
        run.wait_for_line("stage 1: baking");
        let pid = run.pid();
        run.signal(libc::SIGKILL);
        let _ = run.finish_killed();
        assert!(
            wait_until(Duration::from_secs(20), || b.status("plan.toml")["state"]
                == "interrupted"),
            "{finish}: A's lease never ran out"
        );
        let status = b.status("plan.toml");
        assert_eq!(status["holder"]["holder"]["pid"], pid, "{status:#}");
        let (code, _, stderr) = b.rollout(&[finish, "plan.toml"]);
        assert_eq!(code, 0, "{finish}: {stderr}");
        if finish == "rollback" {
            assert_only_stable(&lab);
            assert_eq!(b.status("plan.toml")["state"], "rolled back");
        } else {
            assert!(stderr.contains("PROMOTED"), "{stderr}");
            assert_eq!(b.status("plan.toml")["state"], "promoted");
            // The next round starts from stable again.
            let (code, _, stderr) = b.rollout(&["rollback", "plan.toml"]);
            assert_eq!(code, 0, "{stderr}");
        }
    }
}

#[test]
fn list_shows_every_rollout_in_the_store() {
    let store = Store::start("fleet");
    let (_t, traffic) = traffic_file();
    let promoted = plan(
        &store,
        "billing",
        &traffic,
        "10s",
        "[[stages]]\nweight = 100\n",
    );
    let paused = plan(&store, "search", &traffic, "10s", THREE_STAGES).replace(
        "max_hold = \"60s\"",
        "max_hold = \"300ms\"\non_timeout = \"pause\"",
    );
    let waiting = plan(
        &store,
        "checkout",
        &traffic,
        "10s",
        "[[stages]]\nweight = 10\napproval = true\n[[stages]]\nweight = 100\n",
    );
    let (code, _, stderr) = Machine::new(&store, &promoted).rollout(&["run", "plan.toml"]);
    assert_eq!(code, 0, "{stderr}");
    let search = Machine::new(&store, &paused);
    std::fs::write(search.path().join("error-rate"), "").unwrap();
    let (code, _, stderr) = search.rollout(&["run", "plan.toml"]);
    assert_eq!(code, 4, "{stderr}");
    let checkout = Machine::new(&store, &waiting);
    let run = checkout.start(&["run", "plan.toml"]);
    run.wait_for_line("rollout approve checkout");

    let elsewhere = Machine::new(&store, "");
    let (code, stdout, stderr) =
        elsewhere.rollout(&["list", "--state", &store.url, "--output", "json"]);
    assert_eq!(code, 0, "{stderr}");
    let rows: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let summary: Vec<(String, String, Option<f64>, bool)> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_string(),
                r["status"].as_str().unwrap().to_string(),
                r["weight"].as_f64(),
                r["holder"]["live"].as_bool().unwrap_or(false),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("billing".into(), "promoted".into(), Some(100.0), false),
            (
                "checkout".into(),
                "waiting for approval".into(),
                Some(10.0),
                true
            ),
            ("search".into(), "paused".into(), Some(10.0), false),
        ]
    );
    let (code, table, _) = elsewhere.rollout(&["list", "--state", &store.url]);
    assert_eq!(code, 0);
    assert!(
        table.contains("checkout")
            && table.contains(&format!("`rollout run` (pid {} on", run.pid())),
        "{table}"
    );
    let (code, _, _) =
        checkout.rollout(&["approve", "checkout", "--state", &store.url, "--reject"]);
    assert_eq!(code, 0);
    let (code, stderr, _) = run.finish();
    assert_eq!(code, 3, "{stderr}");
}
