//! Wiring shared by the commands that drive a rollout (run, resume, rollback): the lock, the
//! journal, the reporters, the executor, the probes, the backend, approvals and signals.

use std::io::IsTerminal;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;

use rollout::approval::{Answer, ApproveAll, Approver};
use rollout::backend::{self, Executor, Recovery};
use rollout::engine::{Engine, Start};
use rollout::event::{Emitter, Ledger, NoLedger, Outcome, Reporter};
use rollout::exec::{DryRunExecutor, RealExecutor};
use rollout::metrics;
use rollout::plan::Plan;
use rollout::report::evidence::EvidenceCollector;
use rollout::report::json::JsonReporter;
use rollout::report::plain::PlainReporter;
use rollout::report::progress::ProgressReporter;
use rollout::report::summary::SummaryCollector;
use rollout::report::text::Verbosity;
use rollout::state::approvals::ApprovalByFile;
use rollout::state::{Journal, JournalReporter, Lock, RolloutDir};

use super::Exit;
use super::args::{DriveArgs, OutputFormat};

/// A rollout being driven by this process.
pub struct Session {
    pub engine: Engine,
    closing: Closing,
    // Held until the session ends; the kernel releases it if the process dies.
    _lock: Option<Lock>,
}

/// How the journal starts: a new rollout, or the one an earlier process left.
pub enum JournalStart {
    New,
    Continue(Box<Journal>),
}

impl Session {
    /// Opens a session; `Err(exit)` when it must not start (the reason is already printed).
    pub async fn open(
        plan: Arc<Plan>,
        plan_path: &Path,
        drive: &DriveArgs,
        command: &str,
        dry_run: bool,
        journal: JournalStart,
        color: bool,
    ) -> anyhow::Result<Result<Session, Exit>> {
        let name = plan.name.as_str();
        let dir = RolloutDir::new(&drive.state_dir, name);
        if let Some(path) = &drive.report
            && let Err(problem) = check_writable(path)
        {
            eprintln!(
                "error: --report {}: {problem}; nothing was changed",
                path.display()
            );
            return Ok(Err(Exit::Invalid));
        }
        let lock = if dry_run {
            None
        } else {
            match Lock::acquire(&dir, command) {
                Ok(lock) => {
                    if let Some(dead) = &lock.taken_over_from {
                        eprintln!(
                            "note: took over the lock of `rollout {}` (pid {}, started {}), which is no longer running",
                            dead.command, dead.pid, dead.started_at
                        );
                    }
                    Some(lock)
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    return Ok(Err(Exit::CouldNotProceed));
                }
            }
        };
        let stages = plan
            .stages
            .iter()
            .map(|s| (s.number, s.weight.percent()))
            .collect();
        let summary = Arc::new(SummaryCollector::new(stages));
        // Every event of a long run adds up: keep them only when a report was asked for.
        let report = drive
            .report
            .clone()
            .map(|path| (path, Arc::new(EvidenceCollector::default())));
        let mut reporters: Vec<Arc<dyn Reporter>> = vec![summary.clone()];
        if let Some((_, evidence)) = &report {
            reporters.push(evidence.clone());
        }
        // What the backend journaled to undo the run: handed back before it acts again.
        let backend_state = match &journal {
            JournalStart::Continue(journal) => journal.backend_state.clone(),
            JournalStart::New => None,
        };
        let journal = if dry_run {
            None
        } else {
            let journal = stop_children_left_behind(journal).await?;
            let path = dir.journal();
            let mut journal = match journal {
                JournalStart::New => Journal::new(
                    name,
                    &absolute(plan_path),
                    &plan.fingerprint,
                    plan.stages.len(),
                ),
                JournalStart::Continue(journal) => *journal,
            };
            journal.pid = Some(std::process::id());
            let reporter = Arc::new(JournalReporter::create(path, journal)?);
            reporters.push(reporter.clone());
            Some(reporter)
        };
        reporters.push(screen(drive, dry_run, color));
        let events = Emitter::new(reporters);
        let exec: Arc<dyn Executor> = if dry_run {
            Arc::new(DryRunExecutor {
                observer: events.observer(),
            })
        } else {
            Arc::new(RealExecutor {
                observer: events.observer(),
                redactor: metrics::secrets(&plan),
            })
        };
        let client = metrics::http_client()?;
        let probes = match metrics::build_all(&plan, &client) {
            Ok(probes) => probes,
            Err(e) => {
                eprintln!("error: {e}; nothing was changed");
                return Ok(Err(Exit::Invalid));
            }
        };
        let mut backend = match backend::build(&plan, exec.clone()) {
            Ok(backend) => backend,
            Err(e) => {
                eprintln!("error: {e}; nothing was changed");
                return Ok(Err(Exit::CouldNotProceed));
            }
        };
        if let Some(state) = backend_state {
            backend.restore_state(state)?;
        }
        let engine = Engine {
            plan: plan.clone(),
            backend,
            probes,
            exec,
            events,
            ledger: match &journal {
                Some(journal) => journal.clone() as Arc<dyn Ledger>,
                None => Arc::new(NoLedger),
            },
            approver: approver(&plan, drive, dry_run).await,
            interrupts: listen_for_signals(journal)?,
            dry_run,
            start: Start::Fresh,
            requested_rollback: false,
        };
        Ok(Ok(Session {
            engine,
            closing: Closing {
                summary,
                plan,
                output: drive.output,
                quiet: drive.quiet,
                dry_run,
                report,
            },
            _lock: lock,
        }))
    }

    /// Runs the engine from `start` to its end, then reports.
    pub async fn drive(self, start: Start) -> anyhow::Result<Outcome> {
        let Session {
            mut engine,
            closing,
            _lock,
        } = self;
        engine.start = start;
        let outcome = engine.run().await;
        closing.close();
        Ok(outcome)
    }

    /// Returns traffic to stable now (`rollout rollback`), then reports. `recovery` is given
    /// when no journal says what the run changed.
    pub async fn roll_back(
        self,
        reason: String,
        recovery: Option<Recovery>,
    ) -> anyhow::Result<Outcome> {
        let Session {
            engine,
            closing,
            _lock,
        } = self;
        let outcome = engine.rollback_now(reason, recovery).await;
        closing.close();
        Ok(outcome)
    }
}

/// What is left to do when the engine is done: the summary table and the evidence file.
pub struct Closing {
    summary: Arc<SummaryCollector>,
    plan: Arc<Plan>,
    output: OutputFormat,
    quiet: bool,
    dry_run: bool,
    /// `--report FILE` and what it collects.
    report: Option<(std::path::PathBuf, Arc<EvidenceCollector>)>,
}

impl Closing {
    /// A report that cannot be written is said loudly, but does not change the exit code: the
    /// code says what happened to traffic.
    fn close(self) {
        if self.output == OutputFormat::Human && !self.quiet && !self.dry_run {
            eprint!("\n{}", self.summary.render());
        }
        if let Some((path, evidence)) = &self.report
            && let Err(e) = evidence.write(path, self.plan.name.as_str(), &self.plan.fingerprint)
        {
            eprintln!(
                "error: the evidence report was NOT written: {e}; the exit code still says how the rollout ended"
            );
        }
    }
}

/// Whether a file can be created where `path` points, checked by creating (and removing) a
/// file beside it: permission bits alone do not say (root, read-only mounts).
fn check_writable(path: &Path) -> Result<(), String> {
    if path.is_dir() {
        return Err("is a directory".to_string());
    }
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Err(format!("the directory {} does not exist", dir.display()));
    }
    tempfile::Builder::new()
        .prefix(".rollout-report-check-")
        .tempfile_in(dir)
        .map(drop)
        .map_err(|e| format!("cannot create a file in {}: {e}", dir.display()))
}

/// A rollout taken over from a dead process (its lock is now ours) may still have that
/// process's commands running: a `set_weight` finishing after this process acted would undo
/// it. They are stopped, and waited for, before anything else happens.
async fn stop_children_left_behind(journal: JournalStart) -> anyhow::Result<JournalStart> {
    let JournalStart::Continue(mut journal) = journal else {
        return Ok(journal);
    };
    for group in std::mem::take(&mut journal.children) {
        let stopped = rollout::exec::children::stop(&group, Duration::from_secs(10))
            .await
            .map_err(|e| anyhow::anyhow!("{e}; stop it by hand, then try again"))?;
        if stopped {
            eprintln!(
                "note: stopped process group {} ({}), which the earlier `rollout` (pid {}) left running",
                group.pgid,
                group.purpose,
                journal.pid.map_or("?".to_string(), |p| p.to_string())
            );
        }
    }
    Ok(JournalStart::Continue(journal))
}

fn absolute(path: &Path) -> std::path::PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// What a person sees: live progress in a terminal, plain lines otherwise, or JSON.
fn screen(drive: &DriveArgs, dry_run: bool, color: bool) -> Arc<dyn Reporter> {
    let verbosity = match (drive.quiet, drive.verbose) {
        (true, _) => Verbosity::Quiet,
        (_, true) => Verbosity::Verbose,
        _ => Verbosity::Normal,
    };
    match drive.output {
        OutputFormat::Json => Arc::new(JsonReporter::new(Box::new(std::io::stdout()))),
        OutputFormat::Human if std::io::stderr().is_terminal() && !dry_run => {
            Arc::new(ProgressReporter::new(verbosity, color))
        }
        OutputFormat::Human => Arc::new(PlainReporter::new(
            Box::new(std::io::stderr()),
            verbosity,
            !dry_run,
        )),
    }
}

async fn approver(plan: &Plan, drive: &DriveArgs, dry_run: bool) -> Arc<dyn Approver> {
    if drive.yes {
        return Arc::new(ApproveAll);
    }
    let by_file = ApprovalByFile {
        path: RolloutDir::new(&drive.state_dir, plan.name.as_str()).approval(),
        poll: Duration::from_millis(500),
    };
    if !dry_run {
        // An answer left from an earlier run must not approve this one.
        let _ = tokio::fs::remove_file(&by_file.path).await;
    }
    if std::io::stdin().is_terminal() && !dry_run {
        Arc::new(TerminalOrFile { by_file })
    } else {
        Arc::new(by_file)
    }
}

/// In a terminal the run asks; `rollout approve` from another shell works too.
struct TerminalOrFile {
    by_file: ApprovalByFile,
}

#[async_trait]
impl Approver for TerminalOrFile {
    fn how(&self, plan: &str, stage: usize) -> String {
        format!(
            "type y and Enter to approve, n to refuse, or {}",
            self.by_file.how(plan, stage)
        )
    }

    async fn wait(&self, stage: usize) -> Answer {
        let user = std::env::var("USER").unwrap_or_else(|_| "the terminal user".to_string());
        let prompt = async {
            loop {
                let line = tokio::task::spawn_blocking(|| {
                    let mut line = String::new();
                    std::io::stdin().read_line(&mut line).map(|_| line)
                })
                .await;
                match line {
                    Ok(Ok(line)) if line.trim().eq_ignore_ascii_case("y") => {
                        return Answer::Approved { by: user.clone() };
                    }
                    Ok(Ok(line)) if line.trim().eq_ignore_ascii_case("n") => {
                        return Answer::Rejected { by: user.clone() };
                    }
                    // End of input: only `rollout approve` can answer now.
                    Ok(Ok(line)) if line.is_empty() => std::future::pending::<()>().await,
                    _ => {}
                }
            }
        };
        tokio::select! {
            answer = prompt => answer,
            answer = self.by_file.wait(stage) => answer,
        }
    }
}

/// SIGINT and SIGTERM go to the engine, which acts on the first by `on_interrupt`. A second
/// one while that rollback runs only says it is still running; a third leaves at once, with
/// the journal saying where things stand (its pending step is still recorded).
fn listen_for_signals(
    journal: Option<Arc<JournalReporter>>,
) -> anyhow::Result<mpsc::UnboundedReceiver<String>> {
    use tokio::signal::unix::{SignalKind, signal};
    let (tx, rx) = mpsc::unbounded_channel();
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let received = AtomicUsize::new(0);
    tokio::spawn(async move {
        loop {
            let name = tokio::select! {
                _ = interrupt.recv() => "SIGINT",
                _ = terminate.recv() => "SIGTERM",
            };
            match received.fetch_add(1, Ordering::SeqCst) + 1 {
                1 => {}
                2 => eprintln!(
                    "{name} again: the run is finishing what the first one asked for (rolling back or pausing); \
                     a third {name} abandons it half-way"
                ),
                _ => {
                    let why = format!(
                        "abandoned by a third {name} while acting on an interrupt; the pending step may be half done"
                    );
                    eprintln!("{why}: see `rollout status`");
                    if let Some(journal) = &journal {
                        journal.abandon(&why);
                    }
                    std::process::exit(Exit::RollbackFailed as i32);
                }
            }
            if tx.send(name.to_string()).is_err() {
                return;
            }
        }
    });
    Ok(rx)
}
