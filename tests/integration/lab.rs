//! The end-to-end lab: a real nginx in front of two real HTTP services (stable and canary) and a
//! real Prometheus scraping both, all on 127.0.0.1 and all inside one temporary directory.
//!
//! Tests drive `rollout` against it the way an operator would: `rollout` rewrites
//! [`Lab::upstream_file`], checks and reloads nginx with [`Lab::nginx_test_command`] and
//! [`Lab::nginx_reload_command`], and gates on PromQL sent to [`Lab::prometheus_url`].
//! Everything the lab starts is stopped when it is dropped, a failing (panicking) test included.
//!
//! It needs `python3`, `nginx` (Debian `nginx-light`) and `prometheus` (Debian `prometheus`).
//! A missing one fails the test with the command that installs it: a machine without them must
//! not pass by quietly testing nothing.
//!
//! If the test process dies without unwinding (SIGKILL, abort), the services notice and exit
//! on their own within a second, but nginx and Prometheus are left running.
//!
//! Files in [`Lab::dir`]: `nginx.conf`, `upstream.conf`, `location.inc`, `nginx.pid`, `nginx-error.log`,
//! `prometheus.yml`, `prometheus-data/`, and `<name>.log` with the stdout and stderr of each
//! process (`stable`, `canary`, `nginx`, `prometheus`).

// Each end-to-end test uses a different part of this toolbox; the rest is not dead, just idle.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

const STABLE_VERSION: &str = "v1";
const CANARY_VERSION: &str = "v2";

/// How long one component may take to come up. Generous because CI machines can be slow; a
/// healthy lab takes about 6 s, nearly all of it Prometheus's fixed wait before its first
/// scrape (see `Lab::start`).
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a process gets to exit after SIGTERM before it is SIGKILLed.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// How often waits re-check their condition.
const POLL: Duration = Duration::from_millis(20);

/// A port found free by binding port 0 can be taken by another test before nginx or Prometheus
/// binds it; starting again on a fresh port makes that race harmless. (The services bind port
/// 0 themselves and report the port, so they never race.)
const PORT_ATTEMPTS: usize = 5;

/// Upper bound for one HTTP exchange of the lab's own client.
const HTTP_TIMEOUT: Duration = Duration::from_secs(5);

/// The traffic generator's pace: one request every 20 ms is about 50 a second, enough for
/// `rate()` over a few seconds to be well above zero on both tracks of a 50/50 split.
const TRAFFIC_INTERVAL: Duration = Duration::from_millis(20);

/// A running lab. See the module documentation.
pub struct Lab {
    stable: Proc,
    stable_addr: String,
    canary: Proc,
    canary_addr: String,
    nginx: Proc,
    nginx_port: u16,
    nginx_bin: PathBuf,
    // Behind a mutex so that `kill_prometheus` works through `&Lab`, which a test may have
    // lent to a thread running `rollout`.
    prometheus: Mutex<Option<Proc>>,
    prometheus_port: u16,
    // Last, so that it is removed only after every process using it has been stopped.
    dir: tempfile::TempDir,
}

/// One sample of a PromQL instant query: its labels and its value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// What the traffic generator has seen so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TrafficCounts {
    /// Answers from the stable service, told by the version in the body (its 500s included).
    pub stable: u64,
    /// Answers from the canary service, likewise.
    pub canary: u64,
    /// Requests that got no answer, or one from neither service (such as nginx's own 502).
    pub other: u64,
    /// 5xx answers, whoever gave them.
    pub server_errors: u64,
}

/// Keeps background traffic flowing through nginx until dropped; see [`Lab::start_traffic`].
pub struct Traffic {
    // Dropping the sender is the stop signal: the generator sleeps in `recv_timeout`, so it
    // wakes at once instead of finishing its pause.
    stop: Option<mpsc::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
    counts: Arc<Mutex<TrafficCounts>>,
}

impl Lab {
    /// Starts both services, nginx routing everything to stable, and Prometheus, and waits
    /// until all of them answer and Prometheus has scraped both services. Panics, with the
    /// logs of whatever did not come up, otherwise.
    ///
    /// Takes about 6 s: Prometheus 2.42 applies discovered targets on a fixed 5 s tick (not
    /// configurable), so its first scrape comes 5-6 s after it starts, whatever the
    /// scrape_interval. Everything else is ready within half a second.
    pub fn start() -> Lab {
        Lab::start_with(Group::Shared)
    }

    /// Like [`Lab::start`], with every process in a process group of its own, so that a Ctrl-C
    /// in a terminal (SIGINT to the whole foreground group) does not reach them: for a program
    /// that must outlive that signal long enough to clean up in order, such as the demo. Its
    /// owner must drop the lab on every way out; a Ctrl-C of the test run no longer stops them.
    pub fn start_apart_from_terminal() -> Lab {
        Lab::start_with(Group::Own)
    }

    fn start_with(group: Group) -> Lab {
        let python = program("python3", "python3");
        let nginx_bin = program("nginx", "nginx-light");
        let prometheus_bin = program("prometheus", "prometheus");
        let dir = tempfile::Builder::new()
            .prefix("rollout-lab-")
            .tempdir()
            .expect("create the lab's temporary directory");

        // Both services boot at once: Python's start-up is most of their readiness time.
        let mut stable = spawn_service(&python, dir.path(), "stable", STABLE_VERSION, group);
        let mut canary = spawn_service(&python, dir.path(), "canary", CANARY_VERSION, group);
        let stable_addr = await_service(&mut stable);
        let canary_addr = await_service(&mut canary);

        fs::write(
            dir.path().join("upstream.conf"),
            format!("upstream app {{\n    server {stable_addr};\n}}\n"),
        )
        .expect("write upstream.conf");
        // Empty, as a user creates it: nginx needs it before rollout first writes it.
        fs::write(dir.path().join("location.inc"), "").expect("write location.inc");
        let (nginx, nginx_port) = start_nginx(&nginx_bin, dir.path(), group);
        let (prometheus, prometheus_port) = start_prometheus(
            &prometheus_bin,
            dir.path(),
            [stable_addr.as_str(), canary_addr.as_str()],
            group,
        );

        Lab {
            stable,
            stable_addr,
            canary,
            canary_addr,
            nginx,
            nginx_port,
            nginx_bin,
            prometheus: Mutex::new(Some(prometheus)),
            prometheus_port,
            dir,
        }
    }

    /// The temporary directory holding every file of the lab.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `http://127.0.0.1:PORT`, where nginx listens.
    pub fn nginx_url(&self) -> String {
        format!("http://{}", self.nginx_addr())
    }

    /// `127.0.0.1:PORT`, where nginx listens.
    pub fn nginx_addr(&self) -> String {
        format!("127.0.0.1:{}", self.nginx_port)
    }

    /// `http://127.0.0.1:PORT`, where Prometheus listens (or listened, after `kill_prometheus`).
    pub fn prometheus_url(&self) -> String {
        format!("http://{}", self.prometheus_addr())
    }

    /// `127.0.0.1:PORT`, where Prometheus listens.
    pub fn prometheus_addr(&self) -> String {
        format!("127.0.0.1:{}", self.prometheus_port)
    }

    /// `127.0.0.1:PORT` of the stable service.
    pub fn stable_addr(&self) -> String {
        self.stable_addr.clone()
    }

    /// `127.0.0.1:PORT` of the canary service.
    pub fn canary_addr(&self) -> String {
        self.canary_addr.clone()
    }

    /// The body (without its newline) the stable service answers `/` with.
    pub fn stable_version(&self) -> &'static str {
        STABLE_VERSION
    }

    /// The body (without its newline) the canary service answers `/` with.
    pub fn canary_version(&self) -> &'static str {
        CANARY_VERSION
    }

    /// The file nginx includes inside `http {}`; it must define `upstream app`. At start it is
    /// `upstream app { server STABLE; }`.
    pub fn upstream_file(&self) -> PathBuf {
        self.dir().join("upstream.conf")
    }

    /// The file nginx includes inside `location /`, before its `proxy_pass http://app;`: a
    /// plan's `location_file`. Empty at start.
    pub fn location_file(&self) -> PathBuf {
        self.dir().join("location.inc")
    }

    /// `nginx -p DIR/ -c DIR/nginx.conf -t`: checks the configuration, upstream file included.
    pub fn nginx_test_command(&self) -> Vec<String> {
        self.nginx_command(&["-t"])
    }

    /// `nginx -p DIR/ -c DIR/nginx.conf -s reload`: makes the running nginx re-read its
    /// configuration. Asynchronous: it returns once the signal is sent, and the old worker may
    /// still answer a few requests.
    pub fn nginx_reload_command(&self) -> Vec<String> {
        self.nginx_command(&["-s", "reload"])
    }

    /// A plan's `[backend]` table for this lab's nginx and services, reloads confirmed by the
    /// pid file; a caller may add fields on the lines after it.
    pub fn nginx_backend(&self) -> String {
        let argv = |items: Vec<String>| {
            let quoted: Vec<String> = items.iter().map(|a| format!("{a:?}")).collect();
            format!("[{}]", quoted.join(", "))
        };
        format!(
            "[backend]\ntype = \"nginx\"\nupstream_file = \"{}\"\nupstream = \"app\"\nstable = [\"{}\"]\ncanary = [\"{}\"]\n\
             test_command = {}\nreload_command = {}\npid_file = \"{}\"\n",
            self.upstream_file().display(),
            self.stable_addr(),
            self.canary_addr(),
            argv(self.nginx_test_command()),
            argv(self.nginx_reload_command()),
            self.dir().join("nginx.pid").display()
        )
    }

    fn nginx_command(&self, args: &[&str]) -> Vec<String> {
        let dir = self.dir().display();
        let mut command = vec![
            self.nginx_bin.display().to_string(),
            "-p".to_string(),
            format!("{dir}/"),
            "-c".to_string(),
            format!("{dir}/nginx.conf"),
        ];
        command.extend(args.iter().map(|a| a.to_string()));
        command
    }

    /// The pid of every process the lab started, by name: `stable`, `canary`, `nginx` (the
    /// master), and `prometheus` while it runs.
    pub fn pids(&self) -> Vec<(&'static str, u32)> {
        let mut pids = vec![
            (self.stable.name, self.stable.child.id()),
            (self.canary.name, self.canary.child.id()),
            (self.nginx.name, self.nginx.child.id()),
        ];
        if let Some(prometheus) = &*self.prometheus.lock().unwrap() {
            pids.push((prometheus.name, prometheus.child.id()));
        }
        pids
    }

    /// The pids of nginx's current worker processes. Right after a reload there are two for a
    /// moment (the master gives the new worker 100 ms before retiring the old one, and the old
    /// one finishes its requests first), and both answer: wait for one before expecting an
    /// exact split.
    pub fn nginx_worker_pids(&self) -> Vec<u32> {
        self.nginx.children()
    }

    /// Makes the canary answer this fraction (0 to 1) of its `/` requests with a 500, spread
    /// evenly and deterministically: 0.25 fails every fourth request, 1 fails all of them.
    pub fn set_canary_failure(&self, rate: f64) {
        control(&self.canary_addr, &format!("/control/fail?rate={rate}"));
    }

    /// Makes the canary take at least this long to answer `/`.
    pub fn set_canary_latency(&self, latency: Duration) {
        let ms = latency.as_secs_f64() * 1000.0;
        control(&self.canary_addr, &format!("/control/latency?ms={ms}"));
    }

    /// Makes the stable service take at least this long to answer `/`.
    pub fn set_stable_latency(&self, latency: Duration) {
        let ms = latency.as_secs_f64() * 1000.0;
        control(&self.stable_addr, &format!("/control/latency?ms={ms}"));
    }

    /// The stable service's `/stats`: requests, errors, error_rate and latency_p99_ms since it
    /// started or was last reset.
    pub fn stable_stats(&self) -> serde_json::Value {
        service_stats(&self.stable_addr)
    }

    /// The canary service's `/stats`.
    pub fn canary_stats(&self) -> serde_json::Value {
        service_stats(&self.canary_addr)
    }

    /// SIGKILLs Prometheus (and waits for it to be gone), to test what happens when the metrics
    /// provider disappears mid-rollout. Its address then refuses connections.
    pub fn kill_prometheus(&self) {
        let prometheus = self.prometheus.lock().unwrap().take();
        if let Some(mut prometheus) = prometheus {
            prometheus.kill();
        }
    }

    /// Sends `n` requests for `/` through nginx, one after the other, and counts who answered
    /// by the version in the body: `(stable, canary)`. 500s from a failing service count for
    /// that service. Panics on anything else (no answer, nginx's own 502), so a split that
    /// silently loses requests cannot pass.
    pub fn send_requests(&self, n: usize) -> (usize, usize) {
        let addr = self.nginx_addr();
        let (mut stable, mut canary) = (0, 0);
        for _ in 0..n {
            match http_get(&addr, "/") {
                Ok((_, body)) if body.trim_end() == STABLE_VERSION => stable += 1,
                Ok((_, body)) if body.trim_end() == CANARY_VERSION => canary += 1,
                Ok((status, body)) => {
                    panic!(
                        "nginx answered neither service: HTTP {status}\n{body}{}",
                        self.logs()
                    )
                }
                Err(e) => panic!("GET / through nginx at {addr}: {e}{}", self.logs()),
            }
        }
        (stable, canary)
    }

    /// Starts sending about 50 requests a second through nginx until the returned guard is
    /// dropped. Failed requests are counted, never fatal: the traffic has to survive whatever
    /// the test does to the lab.
    pub fn start_traffic(&self) -> Traffic {
        let addr = self.nginx_addr();
        let counts = Arc::new(Mutex::new(TrafficCounts::default()));
        let (stop, stopped) = mpsc::channel::<()>();
        let shared = Arc::clone(&counts);
        let thread = thread::spawn(move || {
            let mut next = Instant::now();
            loop {
                let answer = http_get(&addr, "/");
                {
                    let mut counts = shared.lock().unwrap();
                    match &answer {
                        Ok((_, body)) if body.trim_end() == STABLE_VERSION => counts.stable += 1,
                        Ok((_, body)) if body.trim_end() == CANARY_VERSION => counts.canary += 1,
                        _ => counts.other += 1,
                    }
                    if matches!(answer, Ok((status, _)) if status >= 500) {
                        counts.server_errors += 1;
                    }
                }
                // Keep a steady pace; after a slow request, carry on from now rather than
                // bursting to catch up.
                next = (next + TRAFFIC_INTERVAL).max(Instant::now());
                match stopped.recv_timeout(next.saturating_duration_since(Instant::now())) {
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                    _ => return,
                }
            }
        });
        Traffic {
            stop: Some(stop),
            thread: Some(thread),
            counts,
        }
    }

    /// Runs a PromQL instant query. A scalar result comes back as one sample without labels.
    /// Errors (Prometheus down, bad query) are returned, not panicked on, so that callers can
    /// retry inside [`wait_until`].
    pub fn prometheus_query(&self, promql: &str) -> Result<Vec<Sample>, String> {
        prometheus_query(&self.prometheus_addr(), promql)
    }

    /// Every process's output and nginx's error log, for failure messages.
    pub fn logs(&self) -> String {
        let mut logs = String::new();
        for proc in [&self.stable, &self.canary, &self.nginx] {
            logs += &proc.logs();
        }
        if let Some(prometheus) = &*self.prometheus.lock().unwrap() {
            logs += &prometheus.logs();
        }
        logs
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Signal everyone first and only then wait, so the shutdowns overlap instead of adding
        // up. Each `Proc` would also stop itself when dropped; by then there is nothing left.
        let mut prometheus = self.prometheus.lock().unwrap_or_else(|e| e.into_inner());
        let mut procs = vec![&mut self.stable, &mut self.canary, &mut self.nginx];
        procs.extend(prometheus.as_mut());
        for proc in &mut procs {
            proc.terminate();
        }
        for proc in &mut procs {
            proc.stop();
        }
    }
}

impl Traffic {
    /// What the generator has seen so far.
    pub fn counts(&self) -> TrafficCounts {
        *self.counts.lock().unwrap()
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            // Never hangs for long: each request is bounded by HTTP_TIMEOUT.
            let _ = thread.join();
        }
    }
}

/// Calls `condition` every 20 ms until it returns true (→ true) or `timeout` has passed
/// (→ false, after one last try at the deadline).
pub fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        thread::sleep(POLL.min(deadline - now));
    }
}

/// `GET path` from `addr` ("127.0.0.1:PORT"): the status and the body.
pub fn http_get(addr: &str, path: &str) -> io::Result<(u16, String)> {
    http("GET", addr, path)
}

/// `POST path` with an empty body to `addr`: the status and the body.
pub fn http_post(addr: &str, path: &str) -> io::Result<(u16, String)> {
    http("POST", addr, path)
}

fn http(method: &str, addr: &str, path: &str) -> io::Result<(u16, String)> {
    // One client for every request (each build starts a thread); no idle connections kept.
    static CLIENT: std::sync::OnceLock<reqwest::blocking::Client> = std::sync::OnceLock::new();
    let client = CLIENT.get_or_init(|| {
        reqwest::blocking::Client::builder()
            .timeout(HTTP_TIMEOUT)
            // The lab's services close each connection; a fresh one per request keeps the
            // traffic generator's requests independent, as a user's would be.
            .pool_max_idle_per_host(0)
            .build()
            .expect("a reqwest client with a timeout builds")
    });
    let url = format!("http://{addr}{path}");
    let request = match method {
        "POST" => client.post(&url),
        _ => client.get(&url),
    };
    let response = request.send().map_err(io::Error::other)?;
    let status = response.status().as_u16();
    let body = response.text().map_err(io::Error::other)?;
    Ok((status, body))
}

fn control(addr: &str, path: &str) {
    match http_post(addr, path) {
        Ok((200, _)) => {}
        other => panic!("POST {path} to the service at {addr}: {other:?}"),
    }
}

fn service_stats(addr: &str) -> serde_json::Value {
    match http_get(addr, "/stats") {
        Ok((200, body)) => serde_json::from_str(&body).expect("/stats is JSON"),
        other => panic!("GET /stats from the service at {addr}: {other:?}"),
    }
}

fn prometheus_query(addr: &str, promql: &str) -> Result<Vec<Sample>, String> {
    let path = format!("/api/v1/query?query={}", url_encode(promql));
    let (status, body) = http_get(addr, &path).map_err(|e| format!("query {promql:?}: {e}"))?;
    let json: serde_json::Value = serde_json::from_str(&body)
        .map_err(|e| format!("query {promql:?}: HTTP {status}, not JSON ({e}): {body}"))?;
    if status != 200 || json["status"] != "success" {
        return Err(format!("query {promql:?}: HTTP {status}: {body}"));
    }
    let value = |v: &serde_json::Value| -> Result<f64, String> {
        // Prometheus sends values as strings, "NaN" and "+Inf" included; Rust parses those.
        v[1].as_str()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("query {promql:?}: unexpected value {v}"))
    };
    let data = &json["data"];
    match data["resultType"].as_str() {
        Some("vector") => data["result"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|sample| {
                let labels = sample["metric"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                    .collect();
                Ok(Sample {
                    labels,
                    value: value(&sample["value"])?,
                })
            })
            .collect(),
        Some("scalar") => Ok(vec![Sample {
            labels: BTreeMap::new(),
            value: value(&data["result"])?,
        }]),
        other => Err(format!(
            "query {promql:?}: unsupported result type {other:?}"
        )),
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters: PromQL is full of `{`, `"`,
/// `[` and spaces.
fn url_encode(text: &str) -> String {
    let mut encoded = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            encoded.push(byte as char);
        } else {
            let _ = write!(encoded, "%{byte:02X}");
        }
    }
    encoded
}

/// Finds an executable, or fails the test saying how to install it.
fn program(name: &str, package: &str) -> PathBuf {
    // /usr/sbin is searched too: Debian puts nginx there, and it is often missing from a
    // non-root user's PATH.
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "the end-to-end lab needs `{name}`, which is not installed \
                 (on Debian: apt-get install -y {package})"
            )
        })
}

/// A port that was free a moment ago. Someone may take it before it is used: see PORT_ATTEMPTS.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("bind a free port on 127.0.0.1")
        .port()
}

/// Which process group the lab's processes join.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Group {
    /// The starting process's: a Ctrl-C of a test run stops them too.
    Shared,
    /// Each its own, out of reach of the terminal's signals.
    Own,
}

fn spawn_service(
    python: &Path,
    dir: &Path,
    track: &'static str,
    version: &str,
    group: Group,
) -> Proc {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/service.py");
    let mut command = Command::new(python);
    command
        .arg(script)
        .args(["--port", "0", "--track", track, "--version", version]);
    Proc::spawn(track, command, dir, group)
}

/// Waits for a service's "listening 127.0.0.1:PORT" line and a first HTTP answer; returns the
/// address.
fn await_service(service: &mut Proc) -> String {
    let output = service.output.clone();
    let mut addr = None;
    let up = service.await_ready("answer HTTP", || {
        if addr.is_none() {
            let text = fs::read_to_string(&output).unwrap_or_default();
            addr = text
                .lines()
                .find_map(|line| line.strip_prefix("listening "))
                .map(str::to_string);
        }
        addr.as_deref()
            .is_some_and(|addr| http_get(addr, "/stats").is_ok_and(|(status, _)| status == 200))
    });
    // It bound port 0, so "address already in use" cannot be about a port the lab chose.
    assert!(
        up,
        "the {} service could not bind{}",
        service.name,
        service.logs()
    );
    addr.expect("ready implies an address")
}

/// Starts nginx on a free port and waits until it proxies `/` to stable.
fn start_nginx(nginx: &Path, dir: &Path, group: Group) -> (Proc, u16) {
    // Proves that whoever answers on the port is this lab's nginx, not another test's that
    // happened to get the same port.
    let token = format!("rollout-lab {}", dir.display());
    for _ in 0..PORT_ATTEMPTS {
        let port = free_port();
        fs::write(dir.join("nginx.conf"), nginx_conf(dir, port, &token)).expect("write nginx.conf");
        let mut command = Command::new(nginx);
        command
            .arg("-p")
            .arg(format!("{}/", dir.display()))
            .arg("-c")
            .arg(dir.join("nginx.conf"));
        let mut proc = Proc::spawn("nginx", command, dir, group);
        proc.error_log = Some(dir.join("nginx-error.log"));
        let addr = format!("127.0.0.1:{port}");
        let up = proc.await_ready("proxy / to the stable service", || {
            http_get(&addr, "/_lab")
                .is_ok_and(|(status, body)| status == 200 && body.trim_end() == token)
                && http_get(&addr, "/")
                    .is_ok_and(|(status, body)| status == 200 && body.trim_end() == STABLE_VERSION)
        });
        if up {
            return (proc, port);
        }
    }
    panic!("nginx found its port taken {PORT_ATTEMPTS} times in a row");
}

fn nginx_conf(dir: &Path, port: u16, token: &str) -> String {
    let dir = dir.display();
    // Run as root, nginx would switch its workers to `nobody`, who cannot even enter the
    // temporary directory (mode 0700) that holds the temp paths. Keep them root instead; the
    // directive is only allowed (and only needed) when running as root.
    // SAFETY: geteuid has no preconditions and cannot fail.
    let user = if unsafe { libc::geteuid() } == 0 {
        "user root;"
    } else {
        ""
    };
    format!(
        r#"# Written by the rollout end-to-end test lab.
# In the foreground, so the master stays the lab's child: its exit and output are seen, and a
# Ctrl-C of the test run reaches it. `-s reload` still works through the pid file.
daemon off;
master_process on;
worker_processes 1;
{user}
pid {dir}/nginx.pid;
lock_file {dir}/nginx.lock;
error_log {dir}/nginx-error.log notice;

events {{
    worker_connections 256;
}}

http {{
    access_log off;
    # The compiled-in defaults point into /var/lib/nginx; keep everything in the lab.
    client_body_temp_path {dir}/nginx-tmp-client-body;
    proxy_temp_path {dir}/nginx-tmp-proxy;
    fastcgi_temp_path {dir}/nginx-tmp-fastcgi;
    uwsgi_temp_path {dir}/nginx-tmp-uwsgi;
    scgi_temp_path {dir}/nginx-tmp-scgi;

    include {dir}/upstream.conf;

    server {{
        listen 127.0.0.1:{port};
        location = /_lab {{
            return 200 "{token}\n";
        }}
        location / {{
            include {dir}/location.inc;
            proxy_pass http://app;
        }}
    }}
}}
"#
    )
}

/// Starts Prometheus on a free port and waits until it has scraped both services.
fn start_prometheus(
    prometheus: &Path,
    dir: &Path,
    targets: [&str; 2],
    group: Group,
) -> (Proc, u16) {
    let config = dir.join("prometheus.yml");
    // The `track` label comes from the services' own samples; the scrape adds only `job` and
    // `instance`.
    fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: lab\n    static_configs:\n      \
             - targets: [\"{}\", \"{}\"]\n",
            targets[0], targets[1]
        ),
    )
    .expect("write prometheus.yml");
    for _ in 0..PORT_ATTEMPTS {
        let port = free_port();
        let mut command = Command::new(prometheus);
        command
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("prometheus-data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            // Relative paths Prometheus might resolve (consoles) then point into the lab.
            .current_dir(dir);
        let mut proc = Proc::spawn("prometheus", command, dir, group);
        let addr = format!("127.0.0.1:{port}");
        // Both targets up proves the scrape works, and, since the targets' ports are this
        // lab's alone, that this is the lab's own Prometheus answering.
        let up = proc.await_ready("scrape both services", || {
            prometheus_query(&addr, "up{job=\"lab\"}").is_ok_and(|samples| {
                samples.len() == 2
                    && samples.iter().all(|s| {
                        s.value == 1.0
                            && s.labels
                                .get("instance")
                                .is_some_and(|i| targets.contains(&i.as_str()))
                    })
            })
        });
        if up {
            return (proc, port);
        }
    }
    panic!("prometheus found its port taken {PORT_ATTEMPTS} times in a row");
}

/// A process the lab started, with its output going to `<name>.log`; stopped when dropped.
struct Proc {
    name: &'static str,
    child: Child,
    output: PathBuf,
    /// A log the process writes besides its output, shown with it on failure.
    error_log: Option<PathBuf>,
}

impl Proc {
    fn spawn(name: &'static str, mut command: Command, dir: &Path, group: Group) -> Proc {
        if group == Group::Own {
            use std::os::unix::process::CommandExt;
            command.process_group(0);
        }
        let output = dir.join(format!("{name}.log"));
        let file = File::create(&output).expect("create a process log");
        let child = command
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("clone a log file handle"))
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("start {name} ({command:?}): {e}"));
        Proc {
            name,
            child,
            output,
            error_log: None,
        }
    }

    fn exit_status(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("check on a lab process")
    }

    /// Polls `ready` until true. Returns false if the process exited because its port was
    /// taken, so the caller can retry elsewhere; panics with the logs on any other exit, and
    /// when START_TIMEOUT runs out.
    fn await_ready(&mut self, what: &str, mut ready: impl FnMut() -> bool) -> bool {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.exit_status() {
                let logs = self.logs();
                if logs.to_lowercase().contains("address already in use") {
                    return false;
                }
                panic!(
                    "{} exited ({status}) before it could {what}{logs}",
                    self.name
                );
            }
            if ready() {
                return true;
            }
            if Instant::now() >= deadline {
                panic!(
                    "{} did not {what} within {START_TIMEOUT:?}{}",
                    self.name,
                    self.logs()
                );
            }
            thread::sleep(POLL);
        }
    }

    fn logs(&self) -> String {
        let mut logs = String::new();
        for path in [Some(&self.output), self.error_log.as_ref()]
            .into_iter()
            .flatten()
        {
            let text = fs::read_to_string(path).unwrap_or_else(|e| format!("({e})\n"));
            let _ = write!(logs, "\n--- {} ---\n{text}", path.display());
        }
        logs
    }

    /// The pids of its child processes (nginx's workers), while it runs.
    fn children(&self) -> Vec<u32> {
        let pid = self.child.id();
        fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|child| child.parse().ok())
            .collect()
    }

    /// Asks the process to exit (SIGTERM) without waiting.
    fn terminate(&mut self) {
        // Only while it has not been reaped: after that its pid may belong to someone else.
        if self.exit_status().is_none() {
            // SAFETY: kill has no memory-safety preconditions; the pid is our live child.
            unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        }
    }

    /// SIGTERM, then SIGKILL if it has not exited within STOP_TIMEOUT.
    fn stop(&mut self) {
        self.terminate();
        let deadline = Instant::now() + STOP_TIMEOUT;
        while self.exit_status().is_none() {
            if Instant::now() >= deadline {
                self.kill();
                return;
            }
            thread::sleep(POLL);
        }
    }

    /// SIGKILL, children first: a SIGKILLed nginx master cannot stop its workers, and they
    /// would keep serving the port.
    fn kill(&mut self) {
        if self.exit_status().is_some() {
            return;
        }
        // The children are still the live master's, so these pids cannot have been reused.
        for child in self.children() {
            // SAFETY: as in `terminate`.
            unsafe { libc::kill(child as libc::pid_t, libc::SIGKILL) };
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A real Prometheus holding known history and scraping nothing: the samples given in
/// OpenMetrics text are turned into TSDB blocks by `promtool tsdb create-blocks-from
/// openmetrics` in its data directory before it starts. For replaying the past (`rollout
/// backtest`). Stopped when dropped.
pub struct History {
    prometheus: Proc,
    port: u16,
    // Last, so that it is removed only after Prometheus has stopped.
    dir: tempfile::TempDir,
}

impl History {
    /// Imports `openmetrics` (which must end with `# EOF`) and starts Prometheus on it.
    pub fn start(openmetrics: &str) -> History {
        let prometheus_bin = program("prometheus", "prometheus");
        let promtool = program("promtool", "prometheus");
        let dir = tempfile::Builder::new()
            .prefix("rollout-history-")
            .tempdir()
            .expect("create the history's temporary directory");
        let input = dir.path().join("history.om");
        fs::write(&input, openmetrics).expect("write the history");
        let data = dir.path().join("prometheus-data");
        let import = Command::new(&promtool)
            .args(["tsdb", "create-blocks-from", "openmetrics"])
            .arg(&input)
            .arg(&data)
            .output()
            .expect("run promtool");
        assert!(
            import.status.success(),
            "promtool could not import the history: {}{}",
            String::from_utf8_lossy(&import.stdout),
            String::from_utf8_lossy(&import.stderr)
        );
        let config = dir.path().join("prometheus.yml");
        fs::write(&config, "global:\n  scrape_interval: 1m\n").expect("write prometheus.yml");
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port();
            let mut command = Command::new(&prometheus_bin);
            command
                .arg(format!("--config.file={}", config.display()))
                .arg(format!("--storage.tsdb.path={}", data.display()))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .current_dir(dir.path());
            let mut proc = Proc::spawn("prometheus", command, dir.path(), Group::Shared);
            let addr = format!("127.0.0.1:{port}");
            // Ready means the blocks are open; the imported series then answer.
            let up = proc.await_ready("open the imported blocks", || {
                http_get(&addr, "/-/ready").is_ok_and(|(status, _)| status == 200)
            });
            if up {
                return History {
                    prometheus: proc,
                    port,
                    dir,
                };
            }
        }
        panic!("prometheus found its port taken {PORT_ATTEMPTS} times in a row");
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn logs(&self) -> String {
        self.prometheus.logs()
    }
}

/// A gauge's series for [`openmetrics`]: its name, its labels (`a="b",c="d"`) and its value
/// at each unix second, where it has one.
pub type GaugeSeries<'a> = (&'a str, &'a str, &'a dyn Fn(u64) -> Option<f64>);

/// OpenMetrics text of gauges: a sample of each series every `step` from `from` to `to` (unix
/// seconds) wherever its function gives one.
pub fn openmetrics(series: &[GaugeSeries<'_>], from: u64, to: u64, step: u64) -> String {
    let mut text = String::new();
    let mut typed = Vec::new();
    // A family's samples must be together: group by name.
    let mut names: Vec<&str> = series.iter().map(|(n, _, _)| *n).collect();
    names.dedup();
    for name in names {
        if !typed.contains(&name) {
            let _ = writeln!(text, "# TYPE {name} gauge");
            typed.push(name);
        }
        for (_, labels, value) in series.iter().filter(|(n, _, _)| *n == name) {
            let mut t = from;
            while t <= to {
                if let Some(v) = value(t) {
                    let _ = writeln!(text, "{name}{{{labels}}} {v} {t}");
                }
                t += step;
            }
        }
    }
    text.push_str("# EOF\n");
    text
}
