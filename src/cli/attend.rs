//! What a driven rollout attends to besides its engine: people answering approval gates, and
//! signals.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;

use rollout::approval::{Answer, ApproveAll, Approver};
use rollout::plan::Plan;
use rollout::state::approvals::StoreApprover;
use rollout::state::{JournalReporter, StateStore};

use super::Exit;

/// Who answers approval gates: `--yes`, a person at this terminal, or `rollout approve` with
/// the same state, from anywhere.
pub async fn approver(
    plan: &Plan,
    yes: bool,
    store: Arc<dyn StateStore>,
    dry_run: bool,
) -> Arc<dyn Approver> {
    if yes {
        return Arc::new(ApproveAll);
    }
    // A shared store is asked less often: each look is a request.
    let poll = if store.is_shared() {
        Duration::from_secs(1)
    } else {
        Duration::from_millis(500)
    };
    let by_store = StoreApprover {
        store: store.clone(),
        name: plan.name.to_string(),
        poll,
    };
    if !dry_run {
        // An answer left from an earlier run must not approve this one.
        if let Err(e) = store.clear_answer(plan.name.as_str()).await {
            eprintln!("warning: cannot clear an old approval answer: {e}");
        }
    }
    if std::io::stdin().is_terminal() && !dry_run {
        Arc::new(TerminalOrStore { by_store })
    } else {
        Arc::new(by_store)
    }
}

/// In a terminal the run asks; `rollout approve` from another shell or machine works too.
struct TerminalOrStore {
    by_store: StoreApprover,
}

#[async_trait]
impl Approver for TerminalOrStore {
    fn how(&self, plan: &str, stage: usize) -> String {
        format!(
            "type y and Enter to approve, n to refuse, or {}",
            self.by_store.how(plan, stage)
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
            answer = self.by_store.wait(stage) => answer,
        }
    }
}

/// SIGINT and SIGTERM go to the engine, which acts on the first by `on_interrupt`. A second
/// one while that rollback runs only says it is still running; a third leaves at once, with
/// the journal saying where things stand (its pending step is still recorded).
pub fn listen_for_signals(
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
                        journal.abandon(&why).await;
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
