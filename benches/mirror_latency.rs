//! What a 100% mirror costs the client, through the lab's real nginx: latency of `GET /` with
//! the files rollout writes for a plain stage against those it writes for a `mirror = 100`
//! stage, p50 and p99, side by side; then the same mirror with a slow new version, whose copies
//! keep a kept-alive connection waiting (see MIRROR_TIMEOUT in src/backend/nginx/location.rs).
//! Figures in BENCHMARKS.md; about a minute and a half:
//!
//!     cargo bench --bench mirror_latency
//!
//! The configuration measured is rollout's own: the bench runs the built `rollout` on a plan
//! whose first two stages wait for approval (weight 0 plain, then weight 0 with `mirror =
//! 100`), measures while it holds at each, and moves it on with `rollout approve`. Each round
//! is one such run, so plain and mirror alternate.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

#[path = "../tests/integration/lab.rs"]
mod lab;

use lab::{Lab, wait_until};

const ROUNDS: usize = 3;
/// Per round and configuration: sequential requests on one kept-alive connection, and on a
/// fresh connection each.
const KEPT_ALIVE: usize = 2000;
const FRESH: usize = 1000;
/// Requests before each measurement, not counted: the new worker's first connections.
const WARM_UP: usize = 50;
/// A slow new version: slower than the stable one by far, well under the mirror's timeout.
const SLOW_CANARY: Duration = Duration::from_millis(100);
const SLOW_KEPT_ALIVE: usize = 200;
const SLOW_FRESH: usize = 500;
/// A new version slower than the mirror's 1 s timeout: nginx gives up on the copy.
const STUCK_CANARY: Duration = Duration::from_secs(3);
const STUCK_KEPT_ALIVE: usize = 10;
/// How long rollout may take to reach a stage (a reload, its confirmation, a 1 s bake).
const STAGE_TIMEOUT: Duration = Duration::from_secs(30);

fn main() {
    let lab = Lab::start();
    let mut plain = Samples::default();
    let mut mirrored = Samples::default();
    let mut slow = Samples::default();
    let mut stuck = Samples::default();
    for round in 0..ROUNDS {
        let run = Rollout::start(&lab);
        run.wait_for_approval(1);
        assert_location(&lab, "location: plain proxying.");
        plain.measure(&lab, KEPT_ALIVE, FRESH);

        run.approve(false);
        run.wait_for_approval(2);
        assert_location(&lab, "location: mirror 100%.");
        mirrored.measure(&lab, KEPT_ALIVE, FRESH);
        if round == ROUNDS - 1 {
            lab.set_canary_latency(SLOW_CANARY);
            slow.measure(&lab, SLOW_KEPT_ALIVE, SLOW_FRESH);
            lab.set_canary_latency(STUCK_CANARY);
            stuck.measure(&lab, STUCK_KEPT_ALIVE, 0);
            lab.set_canary_latency(Duration::ZERO);
        }
        run.approve(true);
        run.finish(3);
    }
    println!(
        "client latency of GET / through nginx, {ROUNDS} rounds (plain and mirror alternating)"
    );
    println!(
        "{:<44} {:>9} {:>9} {:>9}   {:>9} {:>9} {:>9}",
        "", "kept n", "p50", "p99", "fresh n", "p50", "p99"
    );
    plain.row("no mirror");
    mirrored.row("mirror = 100");
    slow.row(&format!("mirror = 100, new version +{SLOW_CANARY:?}"));
    stuck.row(&format!("mirror = 100, new version +{STUCK_CANARY:?}"));
}

/// Latencies of requests on one kept-alive connection, and on a fresh connection each.
#[derive(Default)]
struct Samples {
    kept_alive: Vec<Duration>,
    fresh: Vec<Duration>,
    /// The kept-alive p50 of each round apart: how much the figure moves between rounds.
    round_p50s: Vec<Duration>,
}

impl Samples {
    fn measure(&mut self, lab: &Lab, kept_alive: usize, fresh: usize) {
        let client = |idle| {
            reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(10))
                .pool_max_idle_per_host(idle)
                .build()
                .unwrap()
        };
        let url = format!("{}/", lab.nginx_url());
        for (idle, n, into) in [
            (1, kept_alive, &mut self.kept_alive),
            (0, fresh, &mut self.fresh),
        ] {
            if n == 0 {
                continue;
            }
            let client = client(idle);
            for i in 0..WARM_UP.min(n) + n {
                let started = Instant::now();
                let response = client.get(&url).send().unwrap();
                let status = response.status();
                let body = response.text().unwrap();
                let took = started.elapsed();
                assert!(
                    status == 200 && body.trim_end() == lab.stable_version(),
                    "a client got HTTP {status} {body}{}",
                    lab.logs()
                );
                if i >= WARM_UP.min(n) {
                    into.push(took);
                }
            }
        }
        let mut this_round = self.kept_alive[self.kept_alive.len() - kept_alive..].to_vec();
        self.round_p50s.push(quantile(&mut this_round, 0.5));
    }

    fn row(&mut self, name: &str) {
        let cells = |times: &mut Vec<Duration>| {
            if times.is_empty() {
                return format!("{:>9} {:>9} {:>9}", "-", "-", "-");
            }
            let (p50, p99) = (quantile(times, 0.5), quantile(times, 0.99));
            format!("{:>9} {:>9} {:>9}", times.len(), ms(p50), ms(p99))
        };
        let rounds: Vec<String> = self.round_p50s.iter().map(|d| ms(*d)).collect();
        println!(
            "{name:<44} {}   {}  (ms; kept-alive p50 by round: {})",
            cells(&mut self.kept_alive),
            cells(&mut self.fresh),
            rounds.join(", ")
        );
    }
}

/// Nearest-rank quantile; sorts `times`.
fn quantile(times: &mut [Duration], q: f64) -> Duration {
    times.sort();
    times[((times.len() - 1) as f64 * q).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

/// The location file rollout wrote for the stage it holds at, by its marker line.
fn assert_location(lab: &Lab, marker: &str) {
    let text = std::fs::read_to_string(lab.location_file()).unwrap();
    assert!(text.contains(marker), "{marker}\n{text}");
    // Right after a reload the old worker still serves: measure the new one only.
    assert!(
        wait_until(STAGE_TIMEOUT, || lab.nginx_worker_pids().len() == 1),
        "nginx kept several worker generations{}",
        lab.logs()
    );
}

/// One `rollout run` of the bench plan, its JSON events read as they come.
struct Rollout {
    child: Child,
    events: mpsc::Receiver<serde_json::Value>,
    dir: tempfile::TempDir,
}

impl Rollout {
    fn start(lab: &Lab) -> Rollout {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("plan.toml"), plan(lab)).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_rollout"))
            .args(["run", "plan.toml", "--output", "json"])
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("run rollout");
        let (tx, events) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let event = serde_json::from_str(&line).expect("a JSON event");
                if tx.send(event).is_err() {
                    return;
                }
            }
        });
        Rollout { child, events, dir }
    }

    fn wait_for_approval(&self, stage: u64) {
        let deadline = Instant::now() + STAGE_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let event = self
                .events
                .recv_timeout(left)
                .unwrap_or_else(|e| panic!("no approval asked at stage {stage}: {e}"));
            assert_ne!(event["event"], "finished", "{event}");
            if event["event"] == "awaiting-approval" && event["stage"] == stage {
                return;
            }
        }
    }

    fn approve(&self, reject: bool) {
        let mut command = Command::new(env!("CARGO_BIN_EXE_rollout"));
        command
            .args(["approve", "bench"])
            .current_dir(self.dir.path());
        if reject {
            command.arg("--reject");
        }
        let output = command.output().unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    fn finish(mut self, code: i32) {
        assert_eq!(self.child.wait().unwrap().code(), Some(code));
    }
}

/// Two stages held by approval, weight 0 plain and weight 0 mirroring every GET; a gate that
/// always passes, so that only the approvals move the run.
fn plan(lab: &Lab) -> String {
    format!(
        "name = \"bench\"\n\
         [defaults]\nbake = \"1s\"\ninterval = \"200ms\"\nmax_hold = \"10m\"\n\
         {}location_file = \"{}\"\n\
         [sources.fixed]\ntype = \"command\"\n\
         [[metrics]]\nname = \"errors\"\nsource = \"fixed\"\nrun = [\"echo\", \"0\"]\nadvance = \"< 1\"\n\
         [[stages]]\nweight = 0\napproval = true\n\
         [[stages]]\nweight = 0\nmirror = 100\napproval = true\n\
         [[stages]]\nweight = 100\n",
        lab.nginx_backend(),
        lab.location_file().display(),
    )
}
