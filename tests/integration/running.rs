//! A `rollout` command running in the background, watched line by line: for tests that act on
//! it while it runs (signals, a second command, `kill -9`). Needs no services.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::harness::rollout_bin;

/// How long a background `rollout` may take before the test gives up on it.
const RUN_LIMIT: Duration = Duration::from_secs(90);

/// Waits until `child` exits; past `limit` it is killed and the test fails with `log()`.
pub fn wait_for_exit(
    child: &mut Child,
    limit: Duration,
    what: &str,
    log: impl Fn() -> String,
) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("{what} did not finish within {limit:?}:\n{}", log());
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Polls `condition` until it holds or `timeout` passes; whether it held.
pub fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if condition() {
            return true;
        }
        thread::sleep(Duration::from_millis(20));
    }
    condition()
}

/// A `rollout run` in the background, with its stderr collected line by line as it comes.
pub struct Running {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    reader: Option<thread::JoinHandle<()>>,
    _dir: Option<tempfile::TempDir>,
}

impl Running {
    /// `rollout run plan.toml` in a fresh directory holding `plan_text`.
    #[cfg_attr(not(feature = "e2e"), allow(dead_code))]
    pub fn start(plan_text: &str, extra_args: &[&str]) -> Running {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("plan.toml"), plan_text).unwrap();
        let mut args = vec!["run", "plan.toml"];
        args.extend_from_slice(extra_args);
        let mut running = Running::start_in(dir.path(), &args);
        running._dir = Some(dir);
        running
    }

    /// `rollout ARGS` in `dir`.
    pub fn start_in(dir: &std::path::Path, args: &[&str]) -> Running {
        Running::start_with_env(dir, args, &[])
    }

    /// `rollout ARGS` in `dir`, with these environment variables besides the test's own.
    pub fn start_with_env(
        dir: &std::path::Path,
        args: &[&str],
        env: &[(String, String)],
    ) -> Running {
        let mut child = Command::new(rollout_bin())
            .args(args)
            .env_remove("GITHUB_ACTIONS")
            .env_remove("GITLAB_CI")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start rollout");
        let stderr = child.stderr.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        let reader = thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Running {
            child,
            lines,
            reader: Some(reader),
            _dir: None,
        }
    }

    pub fn stderr(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn wait_for_line(&self, needle: &str) {
        let seen = wait_until(RUN_LIMIT, || {
            self.lines
                .lock()
                .unwrap()
                .iter()
                .any(|l| l.contains(needle))
        });
        assert!(seen, "rollout never printed {needle:?}:\n{}", self.stderr());
    }

    /// How many lines it has printed so far.
    #[cfg(feature = "e2e")]
    pub fn line_count(&self) -> usize {
        self.lines.lock().unwrap().len()
    }

    /// Waits until it has printed `count` lines (or finished: then there are no more).
    #[cfg(feature = "e2e")]
    pub fn wait_for_lines(&self, count: usize) {
        wait_until(RUN_LIMIT, || self.lines.lock().unwrap().len() >= count);
    }

    pub fn signal(&self, signal: libc::c_int) {
        // SAFETY: kill(2) on the pid of our own child.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, signal);
        }
    }

    /// Waits for the exit; returns the exit code, all of stderr and all of stdout.
    pub fn finish(self) -> (i32, String, String) {
        let (code, stderr, stdout) = self.finish_killed();
        (code.expect("rollout exited, not killed"), stderr, stdout)
    }

    /// Like `finish`, for a process that may have been killed: the code is `None` then.
    pub fn finish_killed(mut self) -> (Option<i32>, String, String) {
        let lines = self.lines.clone();
        let status = wait_for_exit(&mut self.child, RUN_LIMIT, "rollout", || {
            lines.lock().unwrap().join("\n")
        });
        self.reader.take().unwrap().join().unwrap();
        let mut stdout = String::new();
        std::io::Read::read_to_string(self.child.stdout.as_mut().unwrap(), &mut stdout).unwrap();
        (status.code(), self.stderr(), stdout)
    }
}
