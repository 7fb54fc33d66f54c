//! The demo (`examples/demo.rs`, `./scripts/demo.sh`) stops everything it started, whichever way
//! it ends, and says in its last line what happened.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use crate::harness::rollout_bin;
use crate::lab::wait_until;

/// The quick demo takes about 25 s; a slow machine gets room.
const DEMO_LIMIT: Duration = Duration::from_secs(180);

/// Builds the demo (an example, which `cargo test --test integration` does not build) and
/// returns its path, next to the rollout binary's.
fn demo_bin() -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        // The same features as this test build, so the library already built is reused.
        .args(["build", "--example", "demo", "--features", "e2e"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo build --example demo");
    assert!(
        output.status.success(),
        "cargo build --example demo failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let bin = rollout_bin()
        .parent()
        .expect("the rollout binary's directory")
        .join("examples/demo");
    assert!(bin.is_file(), "{} was not built", bin.display());
    bin
}

/// The demo, run as a terminal would: in a process group of its own (the foreground group),
/// its stderr (and rollout's) collected line by line.
struct Demo {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    reader: Option<thread::JoinHandle<()>>,
}

impl Demo {
    fn start() -> Demo {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let mut path = std::env::split_paths(&path).collect::<Vec<_>>();
        path.push("/usr/sbin".into());
        let mut child = Command::new(demo_bin())
            .env("ROLLOUT_DEMO_QUICK", "1")
            .env("PATH", std::env::join_paths(path).unwrap())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .expect("start the demo");
        let stderr = child.stderr.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        let reader = thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Demo {
            child,
            lines,
            reader: Some(reader),
        }
    }

    fn stderr(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    /// The first line containing `needle`, once it is printed.
    fn wait_for_line(&self, needle: &str) -> String {
        let mut found = None;
        let seen = wait_until(DEMO_LIMIT, || {
            found = self
                .lines
                .lock()
                .unwrap()
                .iter()
                .find(|l| l.contains(needle))
                .cloned();
            found.is_some()
        });
        assert!(
            seen,
            "the demo never printed {needle:?}:\n{}",
            self.stderr()
        );
        found.unwrap()
    }

    /// What a terminal's Ctrl-C does: SIGINT to every process of the foreground group.
    fn ctrl_c(&self) {
        // SAFETY: kill(2) on the process group of our own child, which leads it.
        unsafe { libc::kill(-(self.child.id() as libc::pid_t), libc::SIGINT) };
    }

    /// Waits for the exit: the exit code and all of stderr.
    fn finish(mut self) -> (Option<i32>, String) {
        let lines = self.lines.clone();
        let status = crate::running::wait_for_exit(&mut self.child, DEMO_LIMIT, "the demo", || {
            lines.lock().unwrap().join("\n")
        });
        self.reader.take().unwrap().join().unwrap();
        (status.code(), self.stderr())
    }
}

/// The lab's directory and every pid from the demo's `lab in DIR (pids: NAME PID, ...)` line.
fn lab_of(line: &str) -> (PathBuf, Vec<u32>) {
    let rest = line.split_once("lab in ").expect("a lab line").1;
    let (dir, pids) = rest.split_once(" (pids: ").expect("pids");
    let pids = pids
        .trim_end_matches(')')
        .split(", ")
        .map(|entry| entry.rsplit(' ').next().unwrap().parse().unwrap())
        .collect();
    (PathBuf::from(dir), pids)
}

/// Processes still alive (not zombies) that the demo started: by pid, or by the lab directory
/// in their command line.
fn survivors(dir: &std::path::Path, pids: &[u32]) -> Vec<String> {
    let dir = dir.display().to_string();
    let mut alive = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let zombie = stat
            .rfind(')')
            .is_some_and(|end| stat[end + 1..].trim_start().starts_with('Z'));
        let cmdline = std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
            .unwrap_or_default()
            .replace('\0', " ");
        if !zombie && !cmdline.is_empty() && (pids.contains(&pid) || cmdline.contains(&dir)) {
            alive.push(format!("{pid}: {cmdline}"));
        }
    }
    alive
}

fn assert_everything_stopped(dir: &std::path::Path, pids: &[u32], stderr: &str) {
    assert_eq!(
        pids.len(),
        5,
        "stable, canary, nginx, its worker, prometheus: {stderr}"
    );
    let gone = wait_until(Duration::from_secs(5), || survivors(dir, pids).is_empty());
    assert!(
        gone,
        "still running after the demo exited: {:#?}\n{stderr}",
        survivors(dir, pids)
    );
    assert!(!dir.exists(), "the lab directory {} is left", dir.display());
}

#[test]
fn the_demo_promotes_and_stops_everything_it_started() {
    let demo = Demo::start();
    let (dir, pids) = lab_of(&demo.wait_for_line("lab in "));
    let (code, stderr) = demo.finish();
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        stderr.lines().last(),
        Some("promoted: v2 now serves all traffic"),
        "{stderr}"
    );
    assert_everything_stopped(&dir, &pids, &stderr);
}

/// Ctrl-C in a terminal reaches the demo and rollout together: rollout rolls back (its plan's
/// on_interrupt), nginx is still there for that, and then the demo stops everything.
#[test]
fn ctrl_c_rolls_back_and_the_demo_still_stops_everything() {
    let demo = Demo::start();
    let (dir, pids) = lab_of(&demo.wait_for_line("lab in "));
    demo.wait_for_line("stage 1: baking");
    demo.ctrl_c();
    let (code, stderr) = demo.finish();
    assert_eq!(code, Some(3), "{stderr}");
    assert!(stderr.contains("received SIGINT"), "{stderr}");
    assert_eq!(
        stderr.lines().last(),
        Some("rolled back: v1 serves all traffic again"),
        "{stderr}"
    );
    assert_everything_stopped(&dir, &pids, &stderr);
}
