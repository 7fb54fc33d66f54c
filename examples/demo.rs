//! The newcomer's demo (run it with `./scripts/demo.sh [--bad]`): the test lab's real nginx, real
//! Prometheus and two real services, live traffic, and `rollout run` in this terminal.
//! With `--bad`, the canary starts answering 500 during the second stage and is rolled back.
//! With ROLLOUT_DEMO_QUICK=1 the stages bake for seconds instead of a quarter minute (tests).
//!
//! Everything it starts, it stops, whichever way it ends: rollout finishing, failing, or a
//! Ctrl-C. A Ctrl-C reaches the whole foreground process group: rollout acts on it (rolls back,
//! by its plan's on_interrupt), the demo only notes it, waits for rollout to finish, and then
//! stops the lab; the lab's processes are in process groups of their own, so nginx is still
//! there for rollout to roll back. SIGTERM and SIGHUP to the demo are passed on to rollout.

#[path = "../tests/integration/lab.rs"]
mod lab;

use std::process::{Command, ExitStatus};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::thread;
use std::time::Duration;

use lab::Lab;

/// Set by the signal handler: a SIGINT, SIGTERM or SIGHUP arrived.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);
/// The pid of the running `rollout`, or 0: where SIGTERM and SIGHUP are passed on.
static ROLLOUT_PID: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(signal: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
    // SIGINT from a terminal already reached rollout, in the same process group.
    if signal != libc::SIGINT {
        let pid = ROLLOUT_PID.load(Ordering::SeqCst);
        if pid > 0 {
            // SAFETY: kill(2) is async-signal-safe; the pid is our own unreaped child.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
    }
}

fn catch_signals() {
    for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only touches atomics and calls kill(2), both async-signal-safe;
        // SA_RESTART keeps the blocking waits of this program going.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            action.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, std::ptr::null_mut());
        }
    }
}

fn main() {
    let bad = std::env::args().any(|a| a == "--bad");
    let quick = std::env::var_os("ROLLOUT_DEMO_QUICK").is_some_and(|v| v == "1");
    let rollout = std::env::current_exe()
        .expect("the demo's own path")
        .parent()
        .and_then(|examples| examples.parent())
        .expect("target/debug/examples/demo")
        .join("rollout");
    catch_signals();
    eprintln!(
        "starting two services (v1 stable, v2 canary), nginx and Prometheus on 127.0.0.1 ..."
    );
    let lab = Lab::start_apart_from_terminal();
    let mut pids: Vec<String> = lab
        .pids()
        .iter()
        .map(|(name, pid)| format!("{name} {pid}"))
        .collect();
    pids.extend(
        lab.nginx_worker_pids()
            .iter()
            .map(|pid| format!("nginx worker {pid}")),
    );
    eprintln!("lab in {} (pids: {})", lab.dir().display(), pids.join(", "));
    let code = if INTERRUPTED.load(Ordering::SeqCst) {
        eprintln!("interrupted before rollout started");
        stop(lab);
        eprintln!("interrupted: nothing was rolled out");
        130
    } else {
        demo(lab, &rollout, bad, quick)
    };
    std::process::exit(code);
}

/// Runs rollout against the lab, reports, stops the lab and returns rollout's exit code.
fn demo(lab: Lab, rollout: &std::path::Path, bad: bool, quick: bool) -> i32 {
    let traffic = lab.start_traffic();
    eprintln!(
        "nginx on {}, Prometheus on {}, sending about 50 requests a second through nginx\n",
        lab.nginx_url(),
        lab.prometheus_url()
    );
    let plan = lab.dir().join("demo.toml");
    std::fs::write(&plan, plan_text(&lab, quick)).expect("write the demo plan");

    let done = Arc::new(AtomicBool::new(false));
    let saboteur = bad.then(|| {
        let (canary, upstream, done) = (lab.canary_addr(), lab.upstream_file(), done.clone());
        thread::spawn(move || {
            let second_stage = lab::wait_until(Duration::from_secs(600), || {
                done.load(Ordering::SeqCst)
                    || std::fs::read_to_string(&upstream).is_ok_and(|t| t.contains("# Stage 2:"))
            });
            if second_stage && !done.load(Ordering::SeqCst) {
                let _ = lab::http_post(&canary, "/control/fail?rate=0.5");
            }
        })
    });
    let status = run_rollout(rollout, &plan, &lab);
    done.store(true, Ordering::SeqCst);
    if let Some(saboteur) = saboteur {
        let _ = saboteur.join();
    }

    let counts = traffic.counts();
    drop(traffic);
    // The previous nginx worker finishes its requests for a moment after a reload.
    lab::wait_until(Duration::from_secs(10), || {
        lab.nginx_worker_pids().len() == 1
    });
    let (stable, canary, other) = sample(&lab, 20);
    eprintln!(
        "\nduring the run nginx served {} requests from v1 and {} from v2 ({} errors);\n\
         now 20 requests reach v1 {stable} times and v2 {canary} times{}.",
        counts.stable,
        counts.canary,
        counts.server_errors,
        if other > 0 {
            format!(", and get no answer from either {other} times")
        } else {
            String::new()
        }
    );
    let code = status.and_then(|s| s.code());
    eprintln!("stopping nginx, Prometheus and the two services ...");
    stop(lab);
    eprintln!("{}", outcome(code, stable, canary, other));
    code.unwrap_or(1)
}

/// `rollout run` in the foreground process group, so a Ctrl-C reaches it; None if it could not
/// be started or was killed.
fn run_rollout(rollout: &std::path::Path, plan: &std::path::Path, lab: &Lab) -> Option<ExitStatus> {
    let mut child = match Command::new(rollout)
        .arg("run")
        .arg(plan)
        .arg("--state-dir")
        .arg(lab.dir().join("state"))
        .spawn()
    {
        Ok(child) => child,
        Err(e) => {
            eprintln!("cannot start {}: {e}", rollout.display());
            return None;
        }
    };
    ROLLOUT_PID.store(child.id() as i32, Ordering::SeqCst);
    let status = child.wait();
    ROLLOUT_PID.store(0, Ordering::SeqCst);
    status.ok()
}

/// Sends `n` requests through nginx: answers from v1, from v2, and anything else.
fn sample(lab: &Lab, n: usize) -> (usize, usize, usize) {
    let (mut stable, mut canary, mut other) = (0, 0, 0);
    for _ in 0..n {
        match lab::http_get(&lab.nginx_addr(), "/") {
            Ok((_, body)) if body.trim_end() == lab.stable_version() => stable += 1,
            Ok((_, body)) if body.trim_end() == lab.canary_version() => canary += 1,
            _ => other += 1,
        }
    }
    (stable, canary, other)
}

/// Stops every process of the lab and removes its directory, saying which were started.
fn stop(lab: Lab) {
    let pids: Vec<String> = lab.pids().iter().map(|(_, pid)| pid.to_string()).collect();
    drop(lab);
    eprintln!("stopped (pids {})", pids.join(", "));
}

/// The last line: what happened, in words, as far as rollout said and requests showed.
fn outcome(code: Option<i32>, stable: usize, canary: usize, other: usize) -> String {
    let all = stable + canary + other;
    let seen = format!("{stable} of {all} requests reached v1 and {canary} reached v2");
    match code {
        Some(0) if canary == all => "promoted: v2 now serves all traffic".to_string(),
        Some(3) if stable == all => "rolled back: v1 serves all traffic again".to_string(),
        Some(0) => format!("rollout promoted (exit 0), yet {seen}"),
        Some(3) => format!("rollout rolled back (exit 3), yet {seen}"),
        Some(4) => format!("paused: traffic left where it was ({seen})"),
        Some(1) => format!("failed: rollout could not operate nginx (exit 1); {seen}"),
        Some(2) => "not started: rollout refused the plan (exit 2)".to_string(),
        Some(5) => format!("unknown: rollout could not confirm its rollback (exit 5); {seen}"),
        Some(n) => format!("rollout exited with {n}; {seen}"),
        None => format!("rollout did not exit normally; {seen}"),
    }
}

fn plan_text(lab: &Lab, quick: bool) -> String {
    let quote = |argv: Vec<String>| {
        let items: Vec<String> = argv.iter().map(|a| format!("{a:?}")).collect();
        format!("[{}]", items.join(", "))
    };
    let (bake, interval, max_hold, window) = if quick {
        ("3s", "1s", "20s", "5s")
    } else {
        ("15s", "2s", "30s", "10s")
    };
    format!(
        r#"name = "demo"
description = "v2 of the demo service"

[defaults]
bake = "{bake}"
interval = "{interval}"
max_hold = "{max_hold}"

[backend]
type = "nginx"
upstream_file = "{upstream}"
upstream = "app"
stable = ["{stable}"]
canary = ["{canary}"]
test_command = {test}
reload_command = {reload}
pid_file = "{pid}"

[sources.prom]
type = "prometheus"
url = "{prometheus}"

[[metrics]]
name = "error-rate"
source = "prom"
query = 'sum(rate(http_requests_total{{track="canary",code="500"}}[{window}])) / sum(rate(http_requests_total{{track="canary"}}[{window}]))'
advance = "< 1%"
rollback = "> 5%"

[[metrics]]
name = "p99-latency"
source = "prom"
query = 'max(latency_seconds{{track="canary",quantile="0.99"}})'
rollback = "> 0.5"
mode = "warn"

[[stages]]
weight = 10

[[stages]]
weight = 50

[[stages]]
weight = 100
"#,
        upstream = lab.upstream_file().display(),
        stable = lab.stable_addr(),
        canary = lab.canary_addr(),
        test = quote(lab.nginx_test_command()),
        reload = quote(lab.nginx_reload_command()),
        pid = lab.dir().join("nginx.pid").display(),
        prometheus = lab.prometheus_url(),
    )
}
