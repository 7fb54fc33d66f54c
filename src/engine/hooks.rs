//! Hooks: the user's commands, run with an argv array and their context in the environment.

use crate::backend::{Cmd, Executor, WeightChange, context_env};
use crate::plan::{Hook, HookEvent, Plan};

use crate::event::{Emitter, Event};

pub fn stage_env(plan: &Plan, change: WeightChange) -> Vec<(String, String)> {
    context_env(plan.name.as_str(), change)
}

/// Runs one hook; `Err` says why it failed (exit status and output, or timeout).
pub async fn run(
    exec: &dyn Executor,
    events: &Emitter,
    hook: &Hook,
    env: Vec<(String, String)>,
    stage: Option<usize>,
) -> Result<(), String> {
    let cmd = Cmd {
        argv: hook.run.as_slice().to_vec(),
        env,
        timeout: hook.timeout,
        purpose: "hook".to_string(),
        stdout_keep: crate::exec::KEEP,
    };
    let result = match exec.run(&cmd).await {
        Ok(output) if output.success() => Ok(()),
        Ok(output) => {
            let tail = output.tail();
            Err(if tail.is_empty() {
                output.status_text()
            } else {
                format!("{}: {tail}", output.status_text())
            })
        }
        Err(e) => Err(e.to_string()),
    };
    if exec.is_dry_run() {
        return result;
    }
    events.emit(Event::HookFinished {
        stage,
        argv: cmd.argv,
        ok: result.is_ok(),
        detail: result.clone().err().unwrap_or_default(),
    });
    result
}

/// Plan-level hooks notify; their failure is reported but never changes the outcome.
pub async fn run_plan_hooks(
    exec: &dyn Executor,
    events: &Emitter,
    plan: &Plan,
    on: HookEvent,
    at: WeightChange,
    reason: Option<&str>,
) {
    for plan_hook in plan.hooks.iter().filter(|h| h.on == on) {
        let mut env = context_env(plan.name.as_str(), at);
        env.push(("ROLLOUT_EVENT".into(), on.as_str().to_string()));
        if let Some(reason) = reason {
            env.push(("ROLLOUT_REASON".into(), reason.to_string()));
        }
        let stage = (at.stage > 0).then_some(at.stage);
        if let Err(failure) = run(exec, events, &plan_hook.hook, env, stage).await {
            events.emit(Event::Warning {
                message: format!(
                    "the {} hook `{}` failed: {failure}",
                    on.as_str(),
                    plan_hook.hook.run
                ),
            });
        }
    }
}
