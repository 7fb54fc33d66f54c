//! Wiring shared by the commands that drive a rollout (run, resume, rollback): the hold on the
//! rollout in its state store, the journal, the reporters, the executor, the probes, the
//! backend, approvals and signals.

use std::io::IsTerminal;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rollout::backend::{self, Executor, Recovery};
use rollout::engine::{Engine, Start};
use rollout::event::{Emitter, Event, Ledger, NoLedger, Outcome, Reporter};
use rollout::exec::{DryRunExecutor, RealExecutor};
use rollout::metrics;
use rollout::notify::Notifier;
use rollout::plan::Plan;
use rollout::report::evidence::EvidenceCollector;
use rollout::report::json::JsonReporter;
use rollout::report::plain::PlainReporter;
use rollout::report::progress::ProgressReporter;
use rollout::report::summary::SummaryCollector;
use rollout::report::text::Verbosity;
use rollout::state::{Hold, Holder, Journal, JournalReporter, StateStore};

use super::Exit;
use super::args::{DriveArgs, OutputFormat};
use super::attend::{approver, listen_for_signals};

/// A rollout being driven by this process.
pub struct Session {
    pub engine: Engine,
    closing: Closing,
    /// The lock or lease, let go when the session ends (a dead process's lock goes with it; a
    /// lease runs out).
    hold: Option<Arc<dyn Hold>>,
    /// `[[notify]]`, delivering in the background; given time to finish before the exit.
    notifier: Option<Arc<Notifier>>,
}

/// How the journal starts: a new rollout, or the one an earlier process left.
pub enum JournalStart {
    New,
    Continue(Box<Journal>),
}

/// What a session needs to know besides the plan.
pub struct Opening<'a> {
    pub plan_path: &'a Path,
    pub drive: &'a DriveArgs,
    /// `run`, `resume` or `rollback`, for the holder's name.
    pub command: &'static str,
    pub dry_run: bool,
    pub journal: JournalStart,
    pub store: Arc<dyn StateStore>,
    /// Take over a shared store's lease that has not run out.
    pub force: bool,
    pub color: bool,
}

impl Session {
    /// Opens a session; `Err(exit)` when it must not start (the reason is already printed).
    pub async fn open(
        plan: Arc<Plan>,
        opening: Opening<'_>,
    ) -> anyhow::Result<Result<Session, Exit>> {
        let Opening {
            plan_path,
            drive,
            command,
            dry_run,
            journal,
            store,
            force,
            color,
        } = opening;
        let name = plan.name.as_str();
        if let Some(path) = &drive.report
            && let Err(problem) = check_writable(path)
        {
            eprintln!(
                "error: --report {}: {problem}; nothing was changed",
                path.display()
            );
            return Ok(Err(Exit::Invalid));
        }
        // Warnings from the hold go to the run's events once there are any.
        let events_later: Arc<OnceLock<Emitter>> = Arc::new(OnceLock::new());
        let notifier = match notifier(&plan, dry_run, &events_later) {
            Ok(notifier) => notifier,
            Err(e) => {
                eprintln!("error: {e}; nothing was changed");
                return Ok(Err(Exit::Invalid));
            }
        };
        let hold = if dry_run {
            None
        } else {
            let warn_into = events_later.clone();
            let warn = Arc::new(move |message: String| match warn_into.get() {
                Some(events) => events.emit(Event::Warning { message }),
                None => eprintln!("warning: {message}"),
            });
            let holder = Holder::this_process(command);
            match store
                .hold(name, holder, force, plan.state.lease, warn)
                .await
            {
                Ok(hold) => {
                    if let Some(before) = hold.taken_over_from() {
                        eprintln!(
                            "note: took over rollout `{name}` from {}, which no longer held it",
                            before.describe()
                        );
                    }
                    Some(hold)
                }
                Err(e) => return Ok(Err(super::state::failed(&e))),
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
        let journal = match &hold {
            None => None,
            Some(hold) => {
                let journal = stop_children_left_behind(journal).await?;
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
                journal.host = Some(rollout::state::holder::host_name());
                let gap = measurement_gap(&plan, store.is_shared());
                match JournalReporter::create(hold.clone(), journal, gap, store.is_shared()).await {
                    Ok(reporter) => {
                        let reporter = Arc::new(reporter);
                        reporters.push(reporter.clone());
                        Some(reporter)
                    }
                    Err(e) => return Ok(Err(super::state::failed(&e))),
                }
            }
        };
        if let Some(notifier) = &notifier {
            reporters.push(notifier.clone());
        }
        let github = super::ci::github(&plan, plan_path, drive);
        if let Some(github) = &github {
            reporters.push(github.clone());
        }
        reporters.push(screen(drive, dry_run, color));
        let events = Emitter::new(reporters);
        let _ = events_later.set(events.clone());
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
                // Like a source's, a backend's `${VAR}` that is not set is a usage error.
                let usage = matches!(e, backend::BackendError::Setup(_));
                return Ok(Err(if usage {
                    Exit::Invalid
                } else {
                    Exit::CouldNotProceed
                }));
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
            approver: approver(&plan, drive.yes, store, dry_run).await,
            interrupts: listen_for_signals(journal)?,
            dry_run,
            start: Start::Fresh,
            requested_rollback: false,
            clock: rollout::engine::system_clock(),
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
                github,
            },
            hold,
            notifier,
        }))
    }

    /// Runs the engine from `start` to its end, then reports.
    pub async fn drive(self, start: Start) -> anyhow::Result<Outcome> {
        let Session {
            mut engine,
            closing,
            hold,
            notifier,
        } = self;
        engine.start = start;
        let outcome = engine.run().await;
        drain(notifier).await;
        release(hold).await;
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
            hold,
            notifier,
        } = self;
        let outcome = engine.rollback_now(reason, recovery).await;
        drain(notifier).await;
        release(hold).await;
        closing.close();
        Ok(outcome)
    }
}

/// The notifier for a real run of a plan with `[[notify]]`; a dry run tells nobody.
fn notifier(
    plan: &Plan,
    dry_run: bool,
    events_later: &Arc<OnceLock<Emitter>>,
) -> Result<Option<Arc<Notifier>>, rollout::notify::SetupError> {
    if dry_run || plan.notify.is_empty() {
        return Ok(None);
    }
    let warn_into = events_later.clone();
    let warn = Arc::new(move |message: String| match warn_into.get() {
        Some(events) => events.emit(Event::Warning { message }),
        None => eprintln!("warning: {message}"),
    });
    Notifier::start(plan, metrics::secrets(plan), warn).map(|n| Some(Arc::new(n)))
}

/// What is still being delivered gets its retries, then the process may exit.
async fn drain(notifier: Option<Arc<Notifier>>) {
    if let Some(notifier) = notifier {
        notifier.finish(notifier.drain_limit()).await;
    }
}

async fn release(hold: Option<Arc<dyn Hold>>) {
    if let Some(hold) = hold {
        hold.release().await;
    }
}

/// How often measurements alone are written: every second to a local folder; a shared store
/// gets at most one write per poll interval (each is a request).
fn measurement_gap(plan: &Plan, shared: bool) -> Duration {
    let second = Duration::from_secs(1);
    if !shared {
        return second;
    }
    plan.stages
        .iter()
        .map(|s| s.interval)
        .min()
        .unwrap_or(second)
        .max(second)
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
    /// `--ci github`: the step summary to append.
    github: Option<Arc<rollout::report::github::GithubReporter>>,
}

impl Closing {
    /// A report that cannot be written is said loudly, but does not change the exit code: the
    /// code says what happened to traffic.
    fn close(self) {
        if self.output == OutputFormat::Human && !self.quiet && !self.dry_run {
            eprint!("\n{}", self.summary.render());
        }
        if let Some(github) = &self.github {
            super::ci::write_summary(github);
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
/// it. They are stopped, and waited for, before anything else happens. Those of a process on
/// another machine cannot be seen from here: that is said.
async fn stop_children_left_behind(journal: JournalStart) -> anyhow::Result<JournalStart> {
    let JournalStart::Continue(mut journal) = journal else {
        return Ok(journal);
    };
    let here = rollout::state::holder::host_name();
    if let Some(host) = journal.host.clone().filter(|host| *host != here)
        && !journal.children.is_empty()
    {
        eprintln!(
            "warning: the earlier `rollout` ran on {host} and had {} command(s) running there ({}); \
             rollout cannot stop processes on another machine: make sure they are gone",
            journal.children.len(),
            journal
                .children
                .iter()
                .map(|c| c.purpose.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
        journal.children.clear();
    }
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
    let verbosity = Verbosity::from_flags(drive.quiet, drive.verbose);
    match drive.output {
        OutputFormat::Json => Arc::new(JsonReporter::new(Box::new(std::io::stdout()))),
        OutputFormat::Human if std::io::stderr().is_terminal() && !dry_run => {
            Arc::new(ProgressReporter::new(verbosity, color))
        }
        OutputFormat::Human => super::ci::plain(
            drive,
            PlainReporter::new(Box::new(std::io::stderr()), verbosity, !dry_run),
        ),
    }
}
