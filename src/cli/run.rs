//! `rollout run`: wires the plan, backend, probes, reporters and signals to the engine.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;

use rollout::backend::exec::{DryRunExecutor, RealExecutor};
use rollout::backend::{self, Executor};
use rollout::engine::Engine;
use rollout::engine::approval::{Answer, ApprovalByFile, ApproveAll, Approver};
use rollout::engine::event::{Emitter, Reporter};
use rollout::metrics;
use rollout::plan::Plan;
use rollout::report::evidence::EvidenceCollector;
use rollout::report::json::JsonReporter;
use rollout::report::plain::PlainReporter;
use rollout::report::progress::ProgressReporter;
use rollout::report::summary::SummaryCollector;
use rollout::report::text::Verbosity;

use super::args::{OutputFormat, RunArgs};
use super::{Exit, load_valid_plan};

pub fn run(args: &RunArgs, color: bool) -> anyhow::Result<Exit> {
    let Some(plan) = load_valid_plan(&args.plan, color)? else {
        return Ok(Exit::Invalid);
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run_plan(Arc::new(plan), args, color))
}

async fn run_plan(plan: Arc<Plan>, args: &RunArgs, color: bool) -> anyhow::Result<Exit> {
    let verbosity = match (args.quiet, args.verbose) {
        (true, _) => Verbosity::Quiet,
        (_, true) => Verbosity::Verbose,
        _ => Verbosity::Normal,
    };
    let stages = plan
        .stages
        .iter()
        .map(|s| (s.number, s.weight.percent()))
        .collect();
    let summary = Arc::new(SummaryCollector::new(stages));
    let evidence = Arc::new(EvidenceCollector::default());
    let mut reporters: Vec<Arc<dyn Reporter>> = vec![summary.clone(), evidence.clone()];
    reporters.push(match args.output {
        OutputFormat::Json => Arc::new(JsonReporter::new(Box::new(std::io::stdout()))),
        OutputFormat::Human if std::io::stderr().is_terminal() && !args.dry_run => {
            Arc::new(ProgressReporter::new(verbosity, color))
        }
        OutputFormat::Human => Arc::new(PlainReporter::new(
            Box::new(std::io::stderr()),
            verbosity,
            !args.dry_run,
        )),
    });
    let events = Emitter::new(reporters);

    let exec: Arc<dyn Executor> = if args.dry_run {
        Arc::new(DryRunExecutor {
            events: events.clone(),
        })
    } else {
        Arc::new(RealExecutor {
            events: events.clone(),
        })
    };
    let client = metrics::http_client()?;
    let probes = match metrics::build_all(&plan, &client) {
        Ok(probes) => probes,
        Err(e) => {
            eprintln!("error: {e}; nothing was changed");
            return Ok(Exit::Invalid);
        }
    };
    let backend = match backend::build(&plan, exec.clone()) {
        Ok(backend) => backend,
        Err(e) => {
            eprintln!("error: {e}; nothing was changed");
            return Ok(Exit::CouldNotProceed);
        }
    };
    let engine = Engine {
        plan: plan.clone(),
        backend,
        probes,
        exec,
        events,
        approver: approver(&plan, args).await,
        interrupts: listen_for_signals()?,
        dry_run: args.dry_run,
    };
    let outcome = engine.run().await;

    if args.output == OutputFormat::Human && !args.quiet && !args.dry_run {
        eprint!("\n{}", summary.render());
    }
    if let Some(path) = &args.report {
        evidence
            .write(path, plan.name.as_str(), &plan.fingerprint)
            .map_err(|e| anyhow::anyhow!("cannot write the report: {e}"))?;
    }
    Ok(match outcome.kind.exit_code() {
        0 => Exit::Promoted,
        3 => Exit::RolledBack,
        4 => Exit::Paused,
        5 => Exit::RollbackFailed,
        _ => Exit::CouldNotProceed,
    })
}

async fn approver(plan: &Plan, args: &RunArgs) -> Arc<dyn Approver> {
    if args.yes {
        return Arc::new(ApproveAll);
    }
    let by_file = ApprovalByFile {
        path: ApprovalByFile::path_for(&args.state_dir, plan.name.as_str()),
        poll: Duration::from_millis(500),
    };
    if !args.dry_run {
        // The directory tells `rollout approve` that this rollout exists; an answer left from an
        // earlier run must not approve this one.
        if let Some(dir) = by_file.path.parent() {
            let _ = tokio::fs::create_dir_all(dir).await;
        }
        let _ = tokio::fs::remove_file(&by_file.path).await;
    }
    if std::io::stdin().is_terminal() && !args.dry_run {
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

fn listen_for_signals() -> anyhow::Result<mpsc::UnboundedReceiver<String>> {
    use tokio::signal::unix::{SignalKind, signal};
    let (tx, rx) = mpsc::unbounded_channel();
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    tokio::spawn(async move {
        loop {
            let name = tokio::select! {
                _ = interrupt.recv() => "SIGINT",
                _ = terminate.recv() => "SIGTERM",
            };
            if tx.send(name.to_string()).is_err() {
                return;
            }
        }
    });
    Ok(rx)
}
