//! `rollout backtest` speed, recorded in BENCHMARKS.md: a day of Prometheus history for a
//! 20-metric plan (each with a baseline: 40 queries), replayed end to end by the release binary
//! against a real Prometheus loaded with that day by promtool.
//!
//! Run with `cargo bench --bench backtest` (needs Prometheus and promtool:
//! ./scripts/install-services.sh).

#[path = "../tests/integration/lab.rs"]
mod lab;

use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lab::{History, openmetrics};

const METRICS: usize = 20;
const TRIALS: usize = 5;
const DAY: u64 = 24 * 3600;

fn main() {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    // A whole day, ending a few hours ago: clear of the head block Prometheus writes itself.
    let start = (now - DAY - 6 * 3600) / 3600 * 3600;
    let labels: Vec<(String, String)> = (0..METRICS)
        .map(|i| {
            (
                format!(r#"metric="m{i}",track="canary""#),
                format!(r#"metric="m{i}",track="stable""#),
            )
        })
        .collect();
    // A little movement, never near a threshold: the run goes the whole day.
    let value = |t: u64| Some(0.01 + 0.002 * ((t / 15) % 7) as f64);
    let series: Vec<lab::GaugeSeries<'_>> = labels
        .iter()
        .flat_map(|(canary, stable)| {
            [
                (
                    "errors",
                    canary.as_str(),
                    &value as &dyn Fn(u64) -> Option<f64>,
                ),
                (
                    "errors",
                    stable.as_str(),
                    &value as &dyn Fn(u64) -> Option<f64>,
                ),
            ]
        })
        .collect();
    let text = openmetrics(&series, start, start + DAY, 15);
    let loading = Instant::now();
    let history = History::start(&text);
    eprintln!(
        "loaded {} samples ({} MB of OpenMetrics) in {:.1} s",
        METRICS * 2 * (DAY / 15 + 1) as usize,
        text.len() / 1_000_000,
        loading.elapsed().as_secs_f64()
    );
    let plan = plan(&history.url());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plan.toml");
    std::fs::write(&path, plan).unwrap();
    let fmt =
        |t: u64| humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(t)).to_string();
    let mut times = Vec::new();
    let mut measured = 0;
    for _ in 0..TRIALS {
        let began = Instant::now();
        let output = Command::new(env!("CARGO_BIN_EXE_rollout"))
            .args(["backtest", path.to_str().unwrap(), "--output", "json"])
            .args(["--start", &fmt(start), "--end", &fmt(start + DAY)])
            .output()
            .expect("run rollout backtest");
        times.push(began.elapsed());
        assert_eq!(
            output.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let stdout = String::from_utf8_lossy(&output.stdout);
        measured = stdout
            .lines()
            .filter(|l| l.contains(r#""event":"measured""#))
            .count();
        // One reading per metric every 30 s, but for the one due as each stage's bake ends.
        let most = METRICS * (8 * 179 * 2) as usize;
        assert!(
            (most - METRICS * 9..=most).contains(&measured),
            "{measured} measurements"
        );
        assert!(stdout.contains(r#""kind":"promoted""#));
    }
    times.sort();
    eprintln!(
        "backtest of a day, {METRICS} metrics with baselines, interval 30s ({measured} measurements): \
         min {:.2} s, median {:.2} s, max {:.2} s over {TRIALS} runs",
        times[0].as_secs_f64(),
        times[TRIALS / 2].as_secs_f64(),
        times[TRIALS - 1].as_secs_f64()
    );
}

/// Eight stages of 2h 59m gated by every metric: the run takes nearly the whole day (23h 52m)
/// and promotes.
fn plan(url: &str) -> String {
    let mut plan = format!(
        "name = \"day\"\n[defaults]\ninterval = \"30s\"\nbake = \"2h 59m\"\n\
         [backend]\ntype = \"command\"\nset_weight = [\"true\"]\n\
         [sources.prom]\ntype = \"prometheus\"\nurl = \"{url}\"\ntimeout = \"30s\"\n"
    );
    for i in 0..METRICS {
        plan.push_str(&format!(
            "[[metrics]]\nname = \"m{i}\"\nsource = \"prom\"\n\
             query = 'errors{{metric=\"m{i}\",track=\"canary\"}}'\n\
             baseline = 'errors{{metric=\"m{i}\",track=\"stable\"}}'\n\
             advance = \"< 0.05\"\nrollback = \"> baseline * 3 + 0.05\"\n"
        ));
    }
    for weight in [1, 5, 10, 25, 50, 75, 90] {
        plan.push_str(&format!("[[stages]]\nweight = {weight}\n"));
    }
    plan.push_str("[[stages]]\nweight = 100\n");
    plan
}
