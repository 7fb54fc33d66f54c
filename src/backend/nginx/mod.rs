//! `type = "nginx"`: owns one upstream file, rewrites it atomically with weighted servers, has
//! nginx check it (`test_command`) and reload it (`reload_command`), then confirms the reload.
//!
//! What is confirmed: nginx accepted the file (`test_command`), the reload command succeeded,
//! and then that the running master really applied it. `nginx -s reload` only signals the
//! master and exits 0 even when the master then fails to apply the configuration (it logs the
//! error and keeps the old one). A master that applies a reload starts new worker processes,
//! so with `pid_file` set the backend waits until workers that were not there before the reload
//! appear (Linux `/proc`). New workers prove a reload, not that it read our file: nginx may
//! include another path (the old target of a replaced symlink) or not include the file at all.
//! So every write carries a unique header line, and nginx's own configuration dump (`nginx
//! -T`, derived from `test_command`) must show it. With `verify_command` set, that command must
//! succeed too. Without `pid_file` and `verify_command`, validation warns.

mod loaded;
mod render;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::{Backend, BackendError, Executor, OwnCommands, WeightChange};
use crate::plan::{NginxBackend as Spec, Plan};
use loaded::Workers;
pub use render::{render, server_weights};

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
        // A dry run cannot know the token a real write will get.
        let token = if exec.is_dry_run() {
            "<token>".to_string()
        } else {
            render::write_token()
        };
        let marker = render::marker(change, &token);
        let contents = render(&self.spec, &self.commands.name, change, &marker)?;
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
        self.confirm_loaded(change, &marker).await?;
        self.verify(change).await?;
        self.current = change;
        Ok(())
    }

    /// The upstream file's directory takes new files and the pid file names a running master.
    /// A dry run only says so: creating a test file is a change.
    async fn check_paths(&self) -> Result<(), BackendError> {
        let exec = self.exec();
        let (upstream_file, pid_file) = (&self.spec.upstream_file, &self.spec.pid_file);
        if exec.is_dry_run() {
            exec.note(&format!(
                "check that rollout can create files next to {}",
                upstream_file.display()
            ));
            if let Some(pid_file) = pid_file {
                exec.note(&format!(
                    "check that {} names a running nginx master",
                    pid_file.display()
                ));
            }
            return Ok(());
        }
        let (upstream_file, pid_file): (PathBuf, Option<PathBuf>) =
            (upstream_file.clone(), pid_file.clone());
        tokio::task::spawn_blocking(move || {
            loaded::check_upstream_dir(&upstream_file)?;
            pid_file.map_or(Ok(()), |p| loaded::check_master_running(&p))
        })
        .await
        .expect("checking paths does not panic")
        .map_err(BackendError::Precondition)
    }

    /// nginx's configuration dump must hold this write's header line: proof that the files
    /// nginx reads include this very write, wherever it sees it.
    async fn confirm_loaded(&self, change: WeightChange, marker: &str) -> Result<(), BackendError> {
        let Some(dump) = self.spec.dump_command() else {
            return Ok(());
        };
        let purpose = "read the configuration nginx loads";
        let output = self.commands.read_document(&dump, change, purpose).await?;
        if self.exec().is_dry_run() {
            self.exec()
                .note("confirm that nginx's configuration holds this write's header line");
            return Ok(());
        }
        let files = loaded::parse_dump(&output.stdout);
        if loaded::holds_line(&files, marker) {
            return Ok(());
        }
        let (path, marker, dump) = (
            self.spec.upstream_file.clone(),
            marker.to_string(),
            dump.to_string(),
        );
        let why = tokio::task::spawn_blocking(move || {
            loaded::what_nginx_loads_instead(&files, &path, Some(&marker), &dump)
        })
        .await
        .expect("comparing paths does not panic");
        Err(BackendError::NotConfirmed(why))
    }

    /// Puts back the file as it was before a change nginx refused. Where there was none, the
    /// stable-only upstream is the known state to leave.
    async fn restore(&self, previous: Option<String>) -> Result<(), BackendError> {
        let contents = match previous {
            Some(previous) => previous,
            None => {
                let stable = self.current.to_stable();
                let marker = render::marker(stable, &render::write_token());
                render(&self.spec, &self.commands.name, stable, &marker)?
            }
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

    /// Everything the run will need, before anything is touched, so that a mistake in the setup
    /// is a failure to start (exit 1) rather than a half-made change: the upstream file's
    /// directory takes new files, the pid file names a running master, nginx's current
    /// configuration passes its own test and, when the file exists, includes it.
    async fn preflight(&mut self) -> Result<(), BackendError> {
        self.check_paths().await?;
        let purpose = "nginx config test (preflight)";
        let Some(dump) = self.spec.dump_command() else {
            let test = self
                .commands
                .run_checked(&self.spec.test_command, self.current, purpose);
            return test.await.map(|_| ());
        };
        let output = self
            .commands
            .read_document(&dump, self.current, purpose)
            .await?;
        let exec = self.exec();
        let path = &self.spec.upstream_file;
        if exec.is_dry_run() {
            exec.note(&format!(
                "check that nginx's configuration includes {}, if it exists yet",
                path.display()
            ));
            return Ok(());
        }
        // A file that does not exist yet (nginx including `conf.d/*.conf`) cannot be looked
        // for; the check after each reload covers it.
        let Some(contents) = exec.read_file(path).await? else {
            return Ok(());
        };
        let files = loaded::parse_dump(&output.stdout);
        let (path, dump) = (path.clone(), dump.to_string());
        tokio::task::spawn_blocking(move || {
            if loaded::loads_file(&files, &path, &contents) {
                return Ok(());
            }
            let why = loaded::what_nginx_loads_instead(&files, &path, None, &dump);
            Err(BackendError::Precondition(format!(
                "{why}; include it inside `http {{ }}`, or set upstream_file to the file nginx includes"
            )))
        })
        .await
        .expect("comparing paths does not panic")
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
