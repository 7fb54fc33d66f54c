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
//!
//! With `location_file`, the backend owns a second file, included in the location that
//! proxies to the upstream, for segments and mirroring (see `location`). The two are one
//! change: both written (the upstream file first: it defines every name the location file
//! uses), one `test_command` for the pair, one reload, both write markers confirmed in
//! nginx's dump, and both put back together when nginx refuses the pair.

mod config;
mod loaded;
mod location;
mod render;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::{Backend, BackendError, Executor, OwnCommands, WeightChange};
use crate::plan::{NginxBackend as Spec, Plan, Segment};
use config::{Enclosing, Placement};
use loaded::Workers;
use location::Routing;
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
    /// The plan's segments, which changes name by index.
    segments: Vec<Segment>,
    /// Whether any stage mirrors: then preflight must find where the mirror can go.
    mirrors: bool,
    /// Where nginx includes the location file, read from its configuration at preflight.
    placement: Option<Placement>,
}

/// One write of the files the backend owns, and the header lines that prove nginx loads it.
struct Files {
    upstream: String,
    location: Option<String>,
    markers: Vec<(PathBuf, String)>,
}

/// The files as they were before a write, to put back if nginx refuses it.
struct Previous {
    upstream: Option<String>,
    location: Option<String>,
}

impl Nginx {
    pub fn new(plan: &Plan, spec: Spec, exec: Arc<dyn Executor>) -> Self {
        Nginx {
            commands: OwnCommands::new(plan, spec.command_timeout, exec),
            spec,
            current: WeightChange::BEFORE_START,
            segments: plan.segments.clone(),
            mirrors: plan.stages.iter().any(|s| s.mirror.is_some()),
            placement: None,
        }
    }

    fn exec(&self) -> &dyn Executor {
        self.commands.exec.as_ref()
    }

    /// A token for one write; a dry run cannot know the token a real write will get.
    fn token(&self) -> String {
        if self.exec().is_dry_run() {
            "<token>".to_string()
        } else {
            render::write_token()
        }
    }

    fn files(&self, change: WeightChange, token: &str) -> Result<Files, BackendError> {
        let spec = &self.spec;
        let marker = render::marker(change, token);
        let upstream = render(spec, &self.commands.name, change, &marker, &self.segments)?;
        let mut markers = vec![(spec.upstream_file.clone(), marker)];
        let location = match &spec.location_file {
            None => None,
            Some(path) => {
                let routing = Routing::of(change, &self.segments);
                self.check_placement(&routing)?;
                let marker = render::location_marker(change, &routing, token);
                let text = location::render(
                    spec,
                    &self.commands.name,
                    &routing,
                    &marker,
                    self.placement.as_ref(),
                );
                markers.push((path.clone(), marker));
                Some(text)
            }
        };
        Ok(Files {
            upstream,
            location,
            markers,
        })
    }

    /// A real mirror needs the prefix of the location it nests in, which preflight read.
    fn check_placement(&self, routing: &Routing<'_>) -> Result<(), BackendError> {
        let known = matches!(
            self.placement.as_ref().map(|p| &p.location),
            Some(Enclosing::Prefix(_))
        );
        if routing.mirror.is_none() || known || self.exec().is_dry_run() {
            return Ok(());
        }
        Err(BackendError::Precondition(
            "rollout does not know the prefix location that includes location_file, under which nginx's mirror location goes; the preflight check reads it from nginx's configuration".into(),
        ))
    }

    async fn read_previous(&self) -> Result<Previous, BackendError> {
        let exec = self.exec();
        let upstream = exec.read_file(&self.spec.upstream_file).await?;
        let location = match &self.spec.location_file {
            Some(path) => exec.read_file(path).await?,
            None => None,
        };
        Ok(Previous { upstream, location })
    }

    /// The upstream file first: it defines every name either location file uses.
    async fn write(&self, files: &Files) -> Result<(), BackendError> {
        let exec = self.exec();
        exec.write_file(&self.spec.upstream_file, &files.upstream)
            .await?;
        if let (Some(path), Some(text)) = (&self.spec.location_file, &files.location) {
            exec.write_file(path, text).await?;
        }
        Ok(())
    }

    async fn apply(&mut self, change: WeightChange) -> Result<(), BackendError> {
        let previous = self.read_previous().await?;
        let files = self.files(change, &self.token())?;
        self.write(&files).await?;
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
        } else if let (true, Some(pid_file)) = (self.exec().is_dry_run(), &self.spec.pid_file) {
            self.exec().note(&format!(
                "confirm the reload: wait until the nginx master in {} has started new worker processes",
                pid_file.display()
            ));
        }
        self.confirm_loaded(change, &files.markers).await?;
        self.verify(change).await?;
        self.current = change;
        Ok(())
    }

    /// The owned files' directories take new files and the pid file names a running master.
    /// A dry run only says so: creating a test file is a change.
    async fn check_paths(&self) -> Result<(), BackendError> {
        let exec = self.exec();
        let owned: Vec<PathBuf> = std::iter::once(&self.spec.upstream_file)
            .chain(&self.spec.location_file)
            .cloned()
            .collect();
        let pid_file = self.spec.pid_file.clone();
        if exec.is_dry_run() {
            for path in &owned {
                exec.note(&format!(
                    "check that rollout can create files next to {}",
                    path.display()
                ));
            }
            if let Some(pid_file) = pid_file {
                exec.note(&format!(
                    "check that {} names a running nginx master",
                    pid_file.display()
                ));
            }
            return Ok(());
        }
        tokio::task::spawn_blocking(move || {
            for path in &owned {
                loaded::check_upstream_dir(path)?;
            }
            pid_file.map_or(Ok(()), |p| loaded::check_master_running(&p))
        })
        .await
        .expect("checking paths does not panic")
        .map_err(BackendError::Precondition)
    }

    /// nginx's configuration dump must hold this write's header lines: proof that the files
    /// nginx reads include this very write of each, wherever it sees them.
    async fn confirm_loaded(
        &self,
        change: WeightChange,
        markers: &[(PathBuf, String)],
    ) -> Result<(), BackendError> {
        let Some(dump) = self.spec.dump_command() else {
            return Ok(());
        };
        let purpose = "read the configuration nginx loads";
        let output = self.commands.read_document(&dump, change, purpose).await?;
        if self.exec().is_dry_run() {
            let what = if markers.len() > 1 {
                "both files' header lines"
            } else {
                "this write's header line"
            };
            self.exec()
                .note(&format!("confirm that nginx's configuration holds {what}"));
            return Ok(());
        }
        let files = loaded::parse_dump(&output.stdout);
        let Some((path, marker)) = markers
            .iter()
            .find(|(_, marker)| !loaded::holds_line(&files, marker))
        else {
            return Ok(());
        };
        let (path, marker, dump) = (path.clone(), marker.clone(), dump.to_string());
        let why = tokio::task::spawn_blocking(move || {
            loaded::what_nginx_loads_instead(&files, &path, Some(&marker), &dump)
        })
        .await
        .expect("comparing paths does not panic");
        Err(BackendError::NotConfirmed(why))
    }

    /// Puts back the files as they were before a change nginx refused, the location file
    /// first (the upstream file nginx was given defines all it uses). Where there was none,
    /// the stable-only upstream and the neutral location file are the known state to leave.
    async fn restore(&self, previous: Previous) -> Result<(), BackendError> {
        let fallback = self.files(self.current.to_stable(), &render::write_token())?;
        let exec = self.exec();
        if let Some(path) = &self.spec.location_file {
            let text = previous.location.or(fallback.location).unwrap_or_default();
            exec.write_file(path, &text).await?;
        }
        let upstream = previous.upstream.unwrap_or(fallback.upstream);
        exec.write_file(&self.spec.upstream_file, &upstream).await?;
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

    /// nginx reads the location file from its first reload on, so it must exist before.
    /// Returns what it holds, for the check of where nginx includes it (`None` without a
    /// location file, or in a dry run).
    async fn check_location_file_exists(&self) -> Result<Option<String>, BackendError> {
        let Some(path) = &self.spec.location_file else {
            return Ok(None);
        };
        let exec = self.exec();
        if exec.is_dry_run() {
            exec.note(&format!("check that {} exists", path.display()));
            return Ok(None);
        }
        if let Some(text) = exec.read_file(path).await? {
            return Ok(Some(text));
        }
        Err(BackendError::Precondition(format!(
            "the nginx location_file {} does not exist: create it empty, and add `include {};` inside the location that proxies to http://{}, before its proxy_pass",
            path.display(),
            path.display(),
            self.spec.upstream
        )))
    }

    /// nginx's configuration dump includes the upstream file (when it exists yet: nginx may
    /// include `conf.d/*.conf`, and the check after each reload covers it) and the location
    /// file inside the location that proxies to the upstream, a prefix location if a stage
    /// mirrors. Learns that location for the mirror.
    /// `location`: what the location file holds, as `check_location_file_exists` read it.
    async fn check_includes(
        &mut self,
        stdout: &str,
        dump: &str,
        location: Option<String>,
    ) -> Result<(), BackendError> {
        let exec = self.exec();
        if exec.is_dry_run() {
            exec.note(&format!(
                "check that nginx's configuration includes {}, if it exists yet",
                self.spec.upstream_file.display()
            ));
            if let Some(path) = &self.spec.location_file {
                exec.note(&format!(
                    "check that nginx's configuration includes {} inside the location that proxies to http://{}, and learn that location's prefix",
                    path.display(),
                    self.spec.upstream
                ));
            }
            return Ok(());
        }
        let upstream = exec.read_file(&self.spec.upstream_file).await?;
        let files = loaded::parse_dump(stdout);
        let (spec, dump, mirrors) = (self.spec.clone(), dump.to_string(), self.mirrors);
        let placement = tokio::task::spawn_blocking(move || {
            if let Some(contents) = upstream
                && !loaded::loads_file(&files, &spec.upstream_file, &contents)
            {
                let why = loaded::what_nginx_loads_instead(&files, &spec.upstream_file, None, &dump);
                return Err(format!(
                    "{why}; include it inside `http {{ }}`, or set upstream_file to the file nginx includes"
                ));
            }
            let Some(path) = &spec.location_file else {
                return Ok(None);
            };
            let Some(file) = loaded::find_file(&files, path, location.as_deref().unwrap_or("")) else {
                let why = loaded::what_nginx_loads_instead(&files, path, None, &dump);
                return Err(format!(
                    "{why}; add `include {};` inside the location that proxies to http://{}, before its proxy_pass",
                    path.display(),
                    spec.upstream
                ));
            };
            let placement = config::placement(&files, &file.path, &spec.upstream)?;
            if let (true, Enclosing::Other(location)) = (mirrors, &placement.location) {
                return Err(format!(
                    "nginx includes {} in `{location}`, where a mirror cannot go: nginx nests the mirror's location in the location that includes the file, which must be a prefix location such as `location /` or `location /api/`",
                    path.display()
                ));
            }
            Ok(Some(placement))
        })
        .await
        .expect("reading nginx's configuration does not panic")
        .map_err(BackendError::Precondition)?;
        self.placement = placement;
        Ok(())
    }

    /// The location file as a stage without segments or mirror has it.
    async fn write_neutral_location(&self) -> Result<(), BackendError> {
        let Some(path) = &self.spec.location_file else {
            return Ok(());
        };
        let files = self.files(self.current.to_stable(), &self.token())?;
        let text = files.location.unwrap_or_default();
        self.exec().write_file(path, &text).await?;
        Ok(())
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
        let location = self
            .spec
            .location_file
            .as_ref()
            .map_or(String::new(), |path| {
                format!(" (mirror and segments in {})", path.display())
            });
        format!(
            "nginx upstream `{}` in {}{location}",
            self.spec.upstream,
            self.spec.upstream_file.display()
        )
    }

    /// Everything the run will need, before anything is touched, so that a mistake in the setup
    /// is a failure to start (exit 1) rather than a half-made change: the owned files'
    /// directories take new files, the pid file names a running master, the location file
    /// exists, nginx's current configuration passes its own test and includes the upstream
    /// file (when it exists) and the location file inside the location that proxies to the
    /// upstream. Then the location file is written neutral: it proxies plainly until a stage
    /// says otherwise, and nginx reads it so at its next reload.
    async fn preflight(&mut self) -> Result<(), BackendError> {
        self.check_paths().await?;
        let location = self.check_location_file_exists().await?;
        let purpose = "nginx config test (preflight)";
        match self.spec.dump_command() {
            None => {
                let test =
                    self.commands
                        .run_checked(&self.spec.test_command, self.current, purpose);
                test.await?;
            }
            Some(dump) => {
                let output = self
                    .commands
                    .read_document(&dump, self.current, purpose)
                    .await?;
                self.check_includes(&output.stdout, &dump.to_string(), location)
                    .await?;
            }
        }
        self.write_neutral_location().await
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
