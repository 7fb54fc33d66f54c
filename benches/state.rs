//! Shared-state figures, recorded in BENCHMARKS.md, against moto's S3 server on 127.0.0.1
//! (with a counting TCP proxy in front of it):
//!
//! - store requests per poll interval during a bake, and the CPU `rollout` uses per poll cycle,
//!   with an S3 store against the local folder (goal: at most one conditional write per
//!   interval for measurements; steps written at once);
//! - the time from `rollout approve` on another "machine" to the running process taking the
//!   approval (goal: within one interval plus one store round trip).
//!
//! Run with `cargo bench --bench state` (needs `moto_server`: `pip install 'moto[server]'`).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

const INTERVAL: Duration = Duration::from_secs(1);
const BAKE: Duration = Duration::from_secs(20);
const METRICS: usize = 10;
const APPROVALS: usize = 10;

fn main() {
    let filter = std::env::args().skip(1).find(|a| !a.starts_with("--"));
    let wants = |name: &str| filter.as_deref().is_none_or(|f| name.contains(f));
    let moto = Moto::start();
    let proxy = CountingProxy::start(moto.port);
    if wants("requests_per_interval") {
        requests_per_interval(&proxy);
    }
    if wants("approve_latency") {
        approve_latency(&proxy);
    }
}

struct Moto {
    child: Child,
    port: u16,
}

impl Moto {
    fn start() -> Moto {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server (pip install 'moto[server]')");
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "moto_server did not start");
            thread::sleep(Duration::from_millis(50));
        }
        let created = reqwest::blocking::Client::new()
            .put(format!("http://127.0.0.1:{port}/bench"))
            .timeout(Duration::from_secs(10))
            .send()
            .expect("create the bucket");
        assert!(created.status().is_success(), "{}", created.status());
        Moto { child, port }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Forwards to moto and counts the HTTP requests going through, by method.
struct CountingProxy {
    port: u16,
    puts: Arc<AtomicU64>,
    others: Arc<AtomicU64>,
}

impl CountingProxy {
    fn start(target: u16) -> CountingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (puts, others) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let (p, o) = (puts.clone(), others.clone());
        thread::spawn(move || {
            for client in listener.incoming().map_while(Result::ok) {
                let server = TcpStream::connect(("127.0.0.1", target)).unwrap();
                let (p, o) = (p.clone(), o.clone());
                let (mut from_server, mut to_client) =
                    (server.try_clone().unwrap(), client.try_clone().unwrap());
                thread::spawn(move || {
                    let _ = std::io::copy(&mut from_server, &mut to_client);
                });
                thread::spawn(move || count_requests(client, server, &p, &o));
            }
        });
        CountingProxy { port, puts, others }
    }

    fn counts(&self) -> (u64, u64) {
        (
            self.puts.load(Ordering::SeqCst),
            self.others.load(Ordering::SeqCst),
        )
    }
}

/// Copies the client's bytes to the server, counting request lines (each request starts with
/// its method at the start of a line: bodies here are JSON, which never does).
fn count_requests(
    mut client: TcpStream,
    mut server: TcpStream,
    puts: &AtomicU64,
    others: &AtomicU64,
) {
    let mut buf = [0u8; 64 * 1024];
    let mut at_line_start = true;
    loop {
        let n = match client.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let chunk = &buf[..n];
        for (i, _) in chunk.iter().enumerate() {
            if (i == 0 && at_line_start) || (i > 0 && chunk[i - 1] == b'\n') {
                let rest = &chunk[i..];
                if rest.starts_with(b"PUT /") {
                    puts.fetch_add(1, Ordering::SeqCst);
                } else if rest.starts_with(b"GET /")
                    || rest.starts_with(b"HEAD /")
                    || rest.starts_with(b"POST /")
                    || rest.starts_with(b"DELETE /")
                {
                    others.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
        at_line_start = chunk.last() == Some(&b'\n');
        if server.write_all(chunk).is_err() {
            return;
        }
    }
}

fn plan(dir: &Path, name: &str, state: &str, stages: &str) -> String {
    let mut metrics = String::new();
    for i in 0..METRICS {
        metrics.push_str(&format!(
            "[[metrics]]\nname = \"m{i}\"\nsource = \"gate\"\nrun = [\"cat\", \"{}\"]\nadvance = \"< 1\"\n\n",
            dir.join("value").display()
        ));
    }
    format!(
        "name = \"{name}\"\n[state]\nurl = \"{state}\"\n[defaults]\ninterval = \"{}s\"\nbake = \"{}s\"\nmax_hold = \"5m\"\n\
         [backend]\ntype = \"command\"\nset_weight = [\"true\"]\n[sources.gate]\ntype = \"command\"\n\n{metrics}{stages}",
        INTERVAL.as_secs(),
        BAKE.as_secs()
    )
}

fn rollout(dir: &Path, proxy: &CountingProxy, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_rollout"));
    command
        .args(args)
        .current_dir(dir)
        .env("AWS_ACCESS_KEY_ID", "bench")
        .env("AWS_SECRET_ACCESS_KEY", "bench")
        .env("AWS_REGION", "us-east-1")
        .env(
            "AWS_ENDPOINT_URL",
            format!("http://127.0.0.1:{}", proxy.port),
        )
        .env("AWS_ALLOW_HTTP", "true")
        .stdin(Stdio::null());
    command
}

/// CPU seconds (user + system) the finished children of this process used so far.
fn children_cpu() -> f64 {
    // SAFETY: getrusage fills the struct we hand it.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage);
        usage
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

fn requests_per_interval(proxy: &CountingProxy) {
    let one_stage = "[[stages]]\nweight = 100\n";
    for (label, state) in [("local folder", "state"), ("s3", "s3://bench/rollouts")] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("value"), "0\n").unwrap();
        std::fs::write(
            dir.path().join("plan.toml"),
            plan(dir.path(), "requests", state, one_stage),
        )
        .unwrap();
        let (puts_before, others_before) = proxy.counts();
        let cpu_before = children_cpu();
        let status = rollout(dir.path(), proxy, &["run", "plan.toml", "-q"])
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
        let cpu = children_cpu() - cpu_before;
        // Each metric's command is its own child process: count rollout's own CPU only by
        // subtracting nothing; the same commands run in both cases, so the difference between
        // the two lines is the store's cost.
        let (puts, others) = proxy.counts();
        let intervals = BAKE.as_secs_f64() / INTERVAL.as_secs_f64();
        println!(
            "requests_per_interval [{label}]: {METRICS} metrics, interval {}s, bake {}s: \
             {} conditional writes and {} other requests over the run ({:.2} writes per interval); \
             CPU {:.1} ms per poll cycle (rollout and its {METRICS} metric commands)",
            INTERVAL.as_secs(),
            BAKE.as_secs(),
            puts - puts_before,
            others - others_before,
            (puts - puts_before) as f64 / intervals,
            cpu * 1000.0 / intervals,
        );
    }
}

fn approve_latency(proxy: &CountingProxy) {
    let mut samples = Vec::new();
    for trial in 0..APPROVALS {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        std::fs::write(a.path().join("value"), "0\n").unwrap();
        let name = format!("approve-{trial}");
        let stages = "[[stages]]\nweight = 10\nbake = \"0s\"\napproval = true\n[[stages]]\nweight = 100\nbake = \"0s\"\n";
        std::fs::write(
            a.path().join("plan.toml"),
            plan(a.path(), &name, "s3://bench/rollouts", stages)
                .replace("max_hold = \"5m\"", "max_hold = \"5m\"\n")
                .replace(&format!("bake = \"{}s\"", BAKE.as_secs()), "bake = \"0s\""),
        )
        .unwrap();
        let mut run = rollout(a.path(), proxy, &["run", "plan.toml", "--output", "json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(run.stdout.take().unwrap()).lines();
        for line in lines.by_ref() {
            if line.unwrap().contains("\"event\":\"awaiting-approval\"") {
                break;
            }
        }
        let asked = Instant::now();
        let status = rollout(
            b.path(),
            proxy,
            &["approve", &name, "--state", "s3://bench/rollouts"],
        )
        .stderr(Stdio::null())
        .status()
        .unwrap();
        assert!(status.success());
        for line in lines.by_ref() {
            if line.unwrap().contains("\"event\":\"approved\"") {
                break;
            }
        }
        samples.push(asked.elapsed());
        let _ = run.wait();
    }
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "approve_latency: {APPROVALS} trials, from starting `rollout approve` on another machine to the \
         run's `approved` event: min {:.0} ms, p50 {:.0} ms, max {:.0} ms (the run looks once a second; \
         goal <= interval + one store round trip)",
        ms(samples[0]),
        ms(samples[samples.len() / 2]),
        ms(samples[samples.len() - 1])
    );
}
