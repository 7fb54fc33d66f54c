//! `type = "nginx"`: owns one upstream file, rewrites it atomically with weighted servers, has
//! nginx check it (`test_command`) and reload it (`reload_command`), then confirms the reload
//! (`verify_command`).
//!
//! What is confirmed: nginx accepted the file (`test_command`), the reload command succeeded,
//! and then that the running master really applied it. `nginx -s reload` only signals the
//! master and exits 0 even when the master then fails to apply the configuration (it logs the
//! error and keeps the old one). A master that applies a reload starts new worker processes,
//! so with `pid_file` set the backend waits until workers that were not there before the reload
//! appear (Linux `/proc`). With `verify_command` set, that command must succeed after the
//! reload. With neither, the last step is not confirmed, and validation warns about it.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::{Backend, BackendError, Executor, OwnCommands, WeightChange};
use crate::plan::{NGINX_STEPS_PER_PERCENT, NginxBackend as Spec, Plan, Weight};

/// How often, and how many times, `verify_command` is tried after a reload: nginx applies a
/// reload asynchronously, so the first try may come too early.
const VERIFY_ATTEMPTS: u32 = 10;
const VERIFY_PAUSE: Duration = Duration::from_millis(300);
/// How often the master's workers are looked at while waiting for a reload to apply.
const WORKER_POLL: Duration = Duration::from_millis(50);

pub struct Nginx {
    spec: Spec,
    commands: OwnCommands,
    current: WeightChange,
}

impl Nginx {
    pub fn new(plan: &Plan, spec: Spec, exec: Arc<dyn Executor>) -> Self {
        Nginx {
            commands: OwnCommands::new(plan, spec.command_timeout, exec),
            spec,
            current: WeightChange::BEFORE_START,
        }
    }

    fn exec(&self) -> &dyn Executor {
        self.commands.exec.as_ref()
    }

    async fn apply(&mut self, change: WeightChange) -> Result<(), BackendError> {
        let exec = self.exec();
        let path = &self.spec.upstream_file;
        let previous = exec.read_file(path).await?;
        let contents = render(&self.spec, &self.commands.name, change)?;
        exec.write_file(path, &contents).await?;
        let test = self
            .commands
            .run_checked(&self.spec.test_command, change, "nginx config test");
        if let Err(e) = test.await {
            self.restore(previous).await?;
            return Err(e);
        }
        let workers_before = self.workers_before_reload().await?;
        let reload = self
            .commands
            .run_checked(&self.spec.reload_command, change, "nginx reload");
        if let Err(e) = reload.await {
            self.restore(previous).await?;
            return Err(e);
        }
        if let Some(before) = workers_before {
            self.confirm_new_workers(before).await?;
        } else if let (true, Some(pid_file)) = (exec.is_dry_run(), &self.spec.pid_file) {
            exec.note(&format!(
                "confirm the reload: wait until the nginx master in {} has started new worker processes",
                pid_file.display()
            ));
        }
        self.verify(change).await?;
        self.current = change;
        Ok(())
    }

    /// Puts back the file as it was before a change nginx refused. Where there was none, the
    /// stable-only upstream is the known state to leave.
    async fn restore(&self, previous: Option<String>) -> Result<(), BackendError> {
        let contents = match previous {
            Some(previous) => previous,
            None => render(&self.spec, &self.commands.name, self.current.to_stable())?,
        };
        self.exec()
            .write_file(&self.spec.upstream_file, &contents)
            .await?;
        Ok(())
    }

    /// The master's workers before a reload, when reloads are confirmed by `pid_file`.
    async fn workers_before_reload(&self) -> Result<Option<Workers>, BackendError> {
        let Some(pid_file) = &self.spec.pid_file else {
            return Ok(None);
        };
        if self.exec().is_dry_run() {
            return Ok(None);
        }
        let pid_file = pid_file.clone();
        let workers = tokio::task::spawn_blocking(move || Workers::read(&pid_file))
            .await
            .expect("reading /proc does not panic");
        workers.map(Some).map_err(BackendError::NotConfirmed)
    }

    async fn confirm_new_workers(&self, before: Workers) -> Result<(), BackendError> {
        let pid_file = self
            .spec
            .pid_file
            .clone()
            .expect("only called with a pid_file");
        let deadline = tokio::time::Instant::now() + self.spec.command_timeout;
        loop {
            let path = pid_file.clone();
            let now = tokio::task::spawn_blocking(move || Workers::read(&path))
                .await
                .expect("reading /proc does not panic");
            if let Ok(now) = now
                && now.is_newer_generation_than(&before)
            {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(BackendError::NotConfirmed(format!(
                    "nginx (master pid {}) started no new worker processes within {} of the reload, \
                     so it did not apply the new configuration; its error log says why",
                    before.master,
                    humantime::format_duration(self.spec.command_timeout)
                )));
            }
            tokio::time::sleep(WORKER_POLL).await;
        }
    }

    async fn verify(&self, change: WeightChange) -> Result<(), BackendError> {
        let Some(verify) = &self.spec.verify_command else {
            return Ok(());
        };
        let cmd = self.commands.cmd(verify, change, "verify the reload");
        let mut last = None;
        for attempt in 0..VERIFY_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(VERIFY_PAUSE).await;
            }
            let output = self.exec().run(&cmd).await?;
            if output.success() {
                return Ok(());
            }
            last = Some(output);
        }
        let output = last.expect("at least one attempt ran");
        Err(BackendError::NotConfirmed(format!(
            "`{verify}` still fails after the reload ({}){}",
            output.status_text(),
            if output.tail().is_empty() {
                String::new()
            } else {
                format!(": {}", output.tail())
            }
        )))
    }
}

#[async_trait]
impl Backend for Nginx {
    fn describe(&self) -> String {
        format!(
            "nginx upstream `{}` in {}",
            self.spec.upstream,
            self.spec.upstream_file.display()
        )
    }

    /// nginx's current configuration must pass its own test before we touch it, so that a
    /// failure later is ours to explain.
    async fn preflight(&mut self) -> Result<(), BackendError> {
        let purpose = "nginx config test (preflight)";
        let test = self
            .commands
            .run_checked(&self.spec.test_command, self.current, purpose);
        test.await.map(|_| ())
    }

    async fn set_weight(&mut self, change: WeightChange) -> Result<(), BackendError> {
        self.apply(change).await
    }

    /// At 100% the upstream already sends everything to the new servers: nothing to change.
    async fn promote(&mut self) -> Result<(), BackendError> {
        Ok(())
    }

    async fn rollback(&mut self) -> Result<(), BackendError> {
        self.apply(self.current.to_stable()).await
    }
}

/// An nginx master and its worker processes, read from the pid file and `/proc`.
#[derive(Debug, Clone, PartialEq)]
struct Workers {
    master: u32,
    pids: BTreeSet<u32>,
}

impl Workers {
    fn read(pid_file: &Path) -> Result<Workers, String> {
        let text = std::fs::read_to_string(pid_file)
            .map_err(|e| format!("cannot read the nginx pid file {}: {e}", pid_file.display()))?;
        let master: u32 = text
            .trim()
            .parse()
            .map_err(|_| format!("{} does not hold a process id", pid_file.display()))?;
        let proc = std::fs::read_dir("/proc").map_err(|e| format!("cannot read /proc: {e}"))?;
        let pids = proc
            .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| parent_of(*pid) == Some(master))
            .collect();
        Ok(Workers { master, pids })
    }

    /// A reload that was applied started workers that did not exist before it (a restarted
    /// master, with a new pid, counts too).
    fn is_newer_generation_than(&self, before: &Workers) -> bool {
        self.master != before.master || self.pids.iter().any(|pid| !before.pids.contains(pid))
    }
}

/// The parent pid from `/proc/PID/stat`; the command name in parentheses may itself hold
/// spaces and parentheses, so fields are counted after the last `)`.
fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(1)?.parse().ok()
}

/// The upstream block for a weight: each group's servers share its part of the traffic.
pub fn render(spec: &Spec, plan_name: &str, change: WeightChange) -> Result<String, BackendError> {
    let mut out = format!(
        "# Written by rollout for plan `{plan_name}`; it is rewritten at every stage, do not edit.\n\
         # Stage {}: {} of traffic to the new version.\n\
         upstream {} {{\n",
        change.stage, change.weight, spec.upstream
    );
    let (stable, canary) = server_weights(change.weight, spec.stable.len(), spec.canary.len())?;
    for (servers, weight) in [(&spec.stable, stable), (&spec.canary, canary)] {
        if weight == 0 {
            continue;
        }
        for server in servers {
            out.push_str(&format!("    server {server} weight={weight};\n"));
        }
    }
    for line in &spec.extra {
        out.push_str(&format!("    {line}\n"));
    }
    out.push_str("}\n");
    Ok(out)
}

/// Integer nginx weights per stable and per canary server such that the canary group's share
/// of the total is exactly `weight` percent. 0 means the group is left out. A weight finer
/// than nginx's step here is refused rather than rounded: rounding 0.0004% would leave the
/// canary out while every report said 0.0004% (validation refuses such plans first).
pub fn server_weights(
    weight: Weight,
    stable_servers: usize,
    canary_servers: usize,
) -> Result<(u64, u64), BackendError> {
    let total = 100 * NGINX_STEPS_PER_PERCENT;
    let canary_share = weight
        .in_steps(NGINX_STEPS_PER_PERCENT)
        .filter(|share| *share <= total)
        .ok_or_else(|| {
            BackendError::Precondition(format!(
                "nginx weights cannot send exactly {weight} of traffic: it is not a multiple of {}%",
                1.0 / NGINX_STEPS_PER_PERCENT as f64
            ))
        })?;
    let stable_share = total - canary_share;
    // Each group's share split evenly across its servers, as whole numbers:
    // stable server = stable_share * C, canary server = canary_share * S (over S*C*total).
    let stable = stable_share * canary_servers as u64;
    let canary = canary_share * stable_servers as u64;
    let divisor = gcd(stable, canary).max(1);
    Ok((stable / divisor, canary / divisor))
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Argv;
    use std::path::PathBuf;

    fn spec(stable: &[&str], canary: &[&str]) -> Spec {
        Spec {
            upstream_file: PathBuf::from("/tmp/up.conf"),
            upstream: "app".into(),
            stable: stable.iter().map(|s| s.to_string()).collect(),
            canary: canary.iter().map(|s| s.to_string()).collect(),
            test_command: Argv::new(vec!["nginx".into(), "-t".into()]).unwrap(),
            reload_command: Argv::new(vec!["nginx".into(), "-s".into(), "reload".into()]).unwrap(),
            verify_command: None,
            pid_file: None,
            extra: vec!["keepalive 32;".into()],
            command_timeout: Duration::from_secs(5),
        }
    }

    fn weight(p: f64) -> Weight {
        Weight::new(p).unwrap()
    }

    /// The canary group's share of the total, in percent.
    fn share(w: f64, s: usize, c: usize) -> f64 {
        let (sw, cw) = server_weights(weight(w), s, c).unwrap();
        let total = sw * s as u64 + cw * c as u64;
        100.0 * (cw * c as u64) as f64 / total as f64
    }

    #[test]
    fn group_shares_match_the_stage_weight() {
        for (w, s, c) in [
            (1.0, 3, 2),
            (5.0, 1, 1),
            (25.0, 4, 1),
            (50.0, 2, 3),
            (0.1, 1, 1),
            (33.3, 3, 7),
            (99.0, 5, 2),
            (0.001, 7, 3),
            (99.999, 7, 3),
            (33.333, 1, 1),
        ] {
            let got = share(w, s, c);
            assert!(
                (got - w).abs() < 1e-9,
                "{w}% with {s} stable, {c} canary: got {got}%"
            );
        }
    }

    #[test]
    fn weights_are_reduced_to_small_numbers() {
        let at = |w, s, c| server_weights(weight(w), s, c).unwrap();
        assert_eq!(at(1.0, 3, 2), (66, 1));
        assert_eq!(at(50.0, 1, 1), (1, 1));
        assert_eq!(at(25.0, 1, 1), (3, 1));
        assert_eq!(at(0.0, 2, 2), (1, 0));
        assert_eq!(at(100.0, 2, 2), (0, 1));
    }

    #[test]
    fn renders_the_upstream_block() {
        let change = WeightChange {
            stage: 2,
            weight: weight(1.0),
            previous: weight(0.0),
        };
        let text = render(
            &spec(
                &["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"],
                &["10.0.1.1:80", "10.0.1.2:80"],
            ),
            "shop",
            change,
        )
        .unwrap();
        assert_eq!(
            text,
            "# Written by rollout for plan `shop`; it is rewritten at every stage, do not edit.\n\
             # Stage 2: 1% of traffic to the new version.\n\
             upstream app {\n    server 10.0.0.1:80 weight=66;\n    server 10.0.0.2:80 weight=66;\n    server 10.0.0.3:80 weight=66;\n    server 10.0.1.1:80 weight=1;\n    server 10.0.1.2:80 weight=1;\n    keepalive 32;\n}\n"
        );
    }

    #[test]
    fn finds_the_children_of_a_process() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("test.pid");
        std::fs::write(&pid_file, format!("{}\n", std::process::id())).unwrap();
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let workers = Workers::read(&pid_file).unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(workers.pids.contains(&child.id()), "{workers:?}");
        let older = Workers {
            master: workers.master,
            pids: BTreeSet::new(),
        };
        assert!(workers.is_newer_generation_than(&older));
        assert!(!workers.is_newer_generation_than(&workers));
    }

    #[test]
    fn the_extremes_leave_a_group_out() {
        let s = spec(&["a:1"], &["b:1"]);
        let at = |w| {
            render(
                &s,
                "p",
                WeightChange {
                    stage: 1,
                    weight: weight(w),
                    previous: weight(0.0),
                },
            )
            .unwrap()
        };
        assert!(!at(0.0).contains("b:1"));
        assert!(!at(100.0).contains("a:1"));
    }

    #[test]
    fn the_smallest_steps_keep_both_groups_and_finer_weights_are_refused() {
        assert_eq!(server_weights(weight(0.001), 7, 3).unwrap(), (299_997, 7));
        assert_eq!(server_weights(weight(99.999), 7, 3).unwrap(), (1, 233_331));
        for w in [0.0004, 99.9996, 33.3333] {
            let err = server_weights(weight(w), 1, 1).unwrap_err().to_string();
            assert_eq!(
                err,
                format!(
                    "nginx weights cannot send exactly {w}% of traffic: it is not a multiple of 0.001%"
                )
            );
        }
    }

    /// nginx parses `weight=` as a whole number with no upper bound short of overflow; the
    /// large weights of the smallest steps must pass the real `nginx -t`.
    #[test]
    fn nginx_accepts_the_weights_of_the_smallest_steps() {
        let nginx = nginx_binary();
        let dir = tempfile::tempdir().unwrap();
        let stable: Vec<String> = (1..=7).map(|i| format!("127.0.0.1:{}", 9000 + i)).collect();
        let canary: Vec<String> = (1..=3).map(|i| format!("127.0.0.1:{}", 9100 + i)).collect();
        let stable: Vec<&str> = stable.iter().map(String::as_str).collect();
        let canary: Vec<&str> = canary.iter().map(String::as_str).collect();
        for (w, largest) in [(0.001, "weight=299997;"), (99.999, "weight=233331;")] {
            let change = WeightChange {
                stage: 1,
                weight: weight(w),
                previous: weight(0.0),
            };
            let upstream = render(&spec(&stable, &canary), "p", change).unwrap();
            assert!(upstream.contains(largest), "{upstream}");
            std::fs::write(dir.path().join("upstream.conf"), &upstream).unwrap();
            let d = dir.path().display();
            std::fs::write(
                dir.path().join("nginx.conf"),
                format!(
                    "pid {d}/nginx.pid;\nerror_log {d}/error.log;\nevents {{}}\n\
                     http {{\n    include {d}/upstream.conf;\n}}\n"
                ),
            )
            .unwrap();
            let output = std::process::Command::new(&nginx)
                .arg("-p")
                .arg(format!("{d}/"))
                .arg("-c")
                .arg(dir.path().join("nginx.conf"))
                .arg("-t")
                .output()
                .unwrap();
            assert!(
                output.status.success(),
                "nginx -t refused\n{upstream}\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }

    /// nginx, or a failure naming how to install it: a machine without it must not pass by
    /// testing nothing.
    fn nginx_binary() -> PathBuf {
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path)
            .chain([PathBuf::from("/usr/sbin")])
            .map(|dir| dir.join("nginx"))
            .find(|candidate| candidate.is_file())
            .expect("this test needs `nginx` (on Debian: apt-get install -y nginx-light)")
    }
}
