//! How long a flag rollback takes, from the moment rollout decides to roll back (its
//! `rolling-back` event) until no user gets the new variant any more: for a flagd file, until
//! the file holding the kill switch has replaced the old one; for Unleash, until its client API
//! (what the SDKs fetch) serves the flag disabled. The breach comes from a command metric that
//! breaches from its first reading, at 50%. Figures in BENCHMARKS.md; about a minute:
//!
//!     cargo bench --bench flag_rollback

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde_json::Value;

#[path = "../tests/integration/unleash_lab.rs"]
mod unleash_lab;

use unleash_lab::{ADMIN_TOKEN, CLIENT_TOKEN, UnleashLab};

fn rollout_bin() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_BIN_EXE_rollout"))
}

const FLAGD_RUNS: usize = 30;
const UNLEASH_RUNS: usize = 15;

const FLAGS: &str = r#"{"flags": {"new-checkout": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off"}}}"#;

fn plan(backend: &str) -> String {
    format!(
        "name = \"bench\"\n[defaults]\nbake = \"1m\"\ninterval = \"100ms\"\n{backend}\n\
         [sources.app]\ntype = \"command\"\n[[metrics]]\nname = \"errors\"\nsource = \"app\"\nrun = [\"echo\", \"0.5\"]\nrollback = \"> 0.1\"\n\
         [[stages]]\nweight = 50\n[[stages]]\nweight = 100\n"
    )
}

/// Runs `rollout run` with JSON events while `gone` is polled every millisecond; returns how
/// long after the `rolling-back` event `gone` first held.
fn measure(dir: &Path, gone: impl Fn() -> bool + Send + 'static) -> Duration {
    let seen: Arc<Mutex<Option<SystemTime>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (seen, stop) = (seen.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut was_on = false;
            while !stop.load(Ordering::SeqCst) {
                let off = gone();
                // Only a change from on to off counts: before the first stage it is off too.
                if was_on && off {
                    *seen.lock().unwrap() = Some(SystemTime::now());
                    return;
                }
                was_on |= !off;
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };
    let out = Command::new(rollout_bin())
        .args(["run", "plan.toml", "--output", "json"])
        .current_dir(dir)
        .env("UNLEASH_TOKEN", ADMIN_TOKEN)
        .env("ROLLOUT_STATE_DIR", dir.join("state"))
        .stderr(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // Unleash's client API serves from a cache: the change may show up after rollout is done.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while seen.lock().unwrap().is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    stop.store(true, Ordering::SeqCst);
    watcher.join().unwrap();
    let decided = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|e| e["event"] == "rolling-back")
        .map(|e| humantime::parse_rfc3339(e["time"].as_str().unwrap()).unwrap())
        .expect("a rolling-back event");
    let seen = seen.lock().unwrap().expect("the flag was seen going off");
    seen.duration_since(decided).unwrap_or_default()
}

fn summary(name: &str, mut times: Vec<Duration>) {
    times.sort();
    let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1000.0);
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    println!(
        "{name}: {} runs, median {}, p90 {}, max {}",
        times.len(),
        ms(at(0.5)),
        ms(at(0.9)),
        ms(*times.last().unwrap())
    );
}

fn main() {
    let mut flagd = Vec::new();
    for _ in 0..FLAGD_RUNS {
        let dir = tempfile::tempdir().unwrap();
        let flags = dir.path().join("flags.json");
        std::fs::write(&flags, FLAGS).unwrap();
        let backend =
            "[backend]\ntype = \"flagd\"\nflags_file = \"flags.json\"\nflag = \"new-checkout\"";
        std::fs::write(dir.path().join("plan.toml"), plan(backend)).unwrap();
        flagd.push(measure(dir.path(), move || {
            std::fs::read_to_string(&flags).is_ok_and(|t| !t.contains("fractional"))
        }));
    }
    summary("flagd: rolling-back event -> flags file replaced", flagd);

    let lab = UnleashLab::start();
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let mut unleash = Vec::new();
    for run in 0..UNLEASH_RUNS {
        let flag = format!("bench-{run}");
        lab.create_flag(&flag, &[]);
        let dir = tempfile::tempdir().unwrap();
        let backend = format!(
            "[backend]\ntype = \"unleash\"\nurl = \"{}\"\ntoken = \"${{UNLEASH_TOKEN}}\"\nenvironment = \"production\"\nflag = \"{flag}\"",
            lab.url()
        );
        std::fs::write(
            dir.path().join("plan.toml"),
            plan(&backend).replace("\"bench\"", &format!("\"{flag}\"")),
        )
        .unwrap();
        let (client, url) = (client.clone(), lab.url());
        unleash.push(measure(dir.path(), move || {
            let features: Value = client
                .get(format!("{url}/api/client/features"))
                .header("Authorization", CLIENT_TOKEN)
                .send()
                .and_then(|r| r.json())
                .unwrap_or(Value::Null);
            features["features"]
                .as_array()
                .and_then(|all| all.iter().find(|f| f["name"] == flag.as_str()))
                .is_some_and(|f| f["enabled"] == false)
        }));
    }
    summary(
        "unleash: rolling-back event -> client API serves the flag disabled",
        unleash,
    );
}
