//! Engine figures on the real lab (nginx, two services), recorded in BENCHMARKS.md:
//!
//! - detect-to-restore: from the moment a breaching value is available at the source to the
//!   moment nginx serves only stable, over many trials (goal: p95 <= interval + 100 ms);
//! - resident memory and CPU while polling 50 metrics every second (goal: under 20 MB).
//!
//! Run with `cargo bench --bench engine` (needs nginx and Prometheus: ./scripts/install-services.sh).

#[path = "../tests/integration/lab.rs"]
mod lab;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use lab::Lab;

const TRIALS: usize = 20;
const INTERVAL: Duration = Duration::from_secs(1);

fn main() {
    // `cargo bench` passes `--bench`; a filter argument picks one benchmark.
    let filter = std::env::args().skip(1).find(|a| !a.starts_with("--"));
    let wants = |name: &str| filter.as_deref().is_none_or(|f| name.contains(f));
    let lab = Lab::start();
    if wants("detect_to_restore") {
        detect_to_restore(&lab);
    }
    if wants("polling_50_metrics") {
        polling_50_metrics(&lab);
    }
}

fn start_rollout(plan: &str, dir: &std::path::Path) -> (Child, mpsc::Receiver<String>) {
    let path = dir.join("bench.toml");
    std::fs::write(&path, plan).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_rollout"))
        .arg("run")
        .arg(&path)
        .arg("--state-dir")
        .arg(dir.join("state"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run rollout");
    let (tx, rx) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    (child, rx)
}

fn wait_for(lines: &mpsc::Receiver<String>, needle: &str) {
    loop {
        let line = lines
            .recv_timeout(Duration::from_secs(60))
            .expect("rollout output");
        if line.contains(needle) {
            return;
        }
    }
}

/// One trial: a 50% stage gated by a command metric that reads a file. The breaching value is
/// written at a random moment of the poll cycle; a prober sends a request through nginx every
/// few milliseconds and records which version answered.
fn detect_to_restore(lab: &Lab) {
    let dir = tempfile::tempdir().unwrap();
    let value_file = dir.path().join("error-rate");
    let plan = format!(
        "name = \"bench\"\n[defaults]\nbake = \"10m\"\ninterval = \"{}ms\"\n{}\n[sources.file]\ntype = \"command\"\n\
         [[metrics]]\nname = \"error-rate\"\nsource = \"file\"\nrun = [\"cat\", \"{}\"]\nrollback = \"> 0.05\"\n\
         [[stages]]\nweight = 50\n[[stages]]\nweight = 100\n",
        INTERVAL.as_millis(),
        lab.nginx_backend(),
        value_file.display()
    );
    let mut samples = Vec::new();
    let mut seed: u64 = 0x9e3779b97f4a7c15;
    for trial in 0..TRIALS {
        std::fs::write(&value_file, "0.0\n").unwrap();
        let (mut child, lines) = start_rollout(&plan, dir.path());
        wait_for(&lines, "stage 1: baking");
        // Let a couple of healthy readings through, then breach at a pseudo-random phase.
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let phase = Duration::from_millis(2000 + seed % INTERVAL.as_millis() as u64);
        thread::sleep(phase);
        let (answers_tx, answers) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let prober = {
            let stop = stop.clone();
            let addr = lab.nginx_addr();
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if let Ok((_, body)) = lab::http_get(&addr, "/") {
                        let _ = answers_tx.send((Instant::now(), body.trim() == "v2"));
                    }
                    thread::sleep(Duration::from_millis(2));
                }
            })
        };
        let temp = dir.path().join("error-rate.new");
        std::fs::write(&temp, "1.0\n").unwrap();
        std::fs::rename(&temp, &value_file).unwrap();
        let breach_at = Instant::now();
        let status = child.wait().unwrap();
        assert_eq!(
            status.code(),
            Some(3),
            "trial {trial}: rollout should roll back"
        );
        // Keep probing a little after the exit, to see the last canary answer if any.
        thread::sleep(Duration::from_millis(300));
        stop.store(true, Ordering::Relaxed);
        prober.join().unwrap();
        let answers: Vec<(Instant, bool)> = answers.try_iter().collect();
        let last_canary = answers
            .iter()
            .filter(|(_, canary)| *canary)
            .map(|(t, _)| *t)
            .max()
            .unwrap_or(breach_at);
        let restored = answers
            .iter()
            .filter(|(t, canary)| !canary && *t > last_canary)
            .map(|(t, _)| *t)
            .min()
            .expect("a stable answer after the last canary answer");
        samples.push(restored.saturating_duration_since(breach_at));
        while lines.try_recv().is_ok() {}
    }
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let pct =
        |p: f64| samples[((samples.len() as f64 * p).ceil() as usize).clamp(1, samples.len()) - 1];
    println!(
        "detect_to_restore: interval {} ms, {} trials: min {:.0} ms, p50 {:.0} ms, p95 {:.0} ms, max {:.0} ms (goal p95 <= {} ms)",
        INTERVAL.as_millis(),
        samples.len(),
        ms(samples[0]),
        ms(pct(0.5)),
        ms(pct(0.95)),
        ms(*samples.last().unwrap()),
        INTERVAL.as_millis() + 100
    );
}

/// 50 metrics polled every second from the stable service's JSON stats for 30 s; resident
/// memory sampled every 100 ms, CPU time read at the end.
fn polling_50_metrics(lab: &Lab) {
    let dir = tempfile::tempdir().unwrap();
    let mut plan = format!(
        "name = \"bench-poll\"\n[defaults]\nbake = \"30s\"\ninterval = \"1s\"\n{}\n[sources.stats]\ntype = \"http-json\"\nurl = \"http://{}/stats\"\n",
        lab.nginx_backend(),
        lab.stable_addr()
    );
    for i in 0..50 {
        plan.push_str(&format!(
            "[[metrics]]\nname = \"m{i}\"\nsource = \"stats\"\npath = \"/error_rate\"\nrollback = \"> 0.5\"\n"
        ));
    }
    plan.push_str("[[stages]]\nweight = 100\n");
    let (mut child, lines) = start_rollout(&plan, dir.path());
    wait_for(&lines, "stage 1: baking");
    let pid = child.id();
    let start = Instant::now();
    let cpu_start = cpu_ticks(pid);
    let mut peak_kb = 0;
    let mut samples_kb = Vec::new();
    while child.try_wait().unwrap().is_none() {
        if let Some(kb) = rss_kb(pid) {
            peak_kb = peak_kb.max(kb);
            samples_kb.push(kb);
        }
        if start.elapsed() > Duration::from_secs(29) {
            break;
        }
        thread::sleep(Duration::from_millis(100));
    }
    let cpu = cpu_ticks(pid).saturating_sub(cpu_start);
    let elapsed = start.elapsed();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "the polling run should promote");
    let ticks_per_sec = 100.0; // USER_HZ on Linux
    let cycles = elapsed.as_secs_f64() / 1.0;
    let cpu_ms = cpu as f64 / ticks_per_sec * 1000.0;
    let mean_kb = samples_kb.iter().sum::<u64>() as f64 / samples_kb.len().max(1) as f64;
    println!(
        "polling_50_metrics: {:.0} s at 1 s: peak RSS {:.1} MB, mean RSS {:.1} MB, CPU {:.0} ms in total, {:.1} ms per poll cycle of 50 metrics (goal RSS < 20 MB)",
        elapsed.as_secs_f64(),
        peak_kb as f64 / 1024.0,
        mean_kb / 1024.0,
        cpu_ms,
        cpu_ms / cycles
    );
}

fn rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// utime + stime of the process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    let Some(end) = stat.rfind(')') else { return 0 };
    let fields: Vec<&str> = stat[end + 1..].split_whitespace().collect();
    // After the name: state is field 0, utime is field 11, stime field 12.
    let get = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    get(11) + get(12)
}
