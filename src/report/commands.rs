//! The exact commands that operate one rollout, as a person would paste them: for the runbook
//! and for a CI summary. Arguments are quoted for a POSIX shell.

use crate::plan::{Argv, HaltAction, Plan};

/// How to reach this rollout from a shell: its plan file and, when it is not the default, where
/// its state lives.
#[derive(Debug, Clone)]
pub struct Commands {
    plan_path: String,
    name: String,
    /// `--state URL` the rollout was driven with: every command needs it.
    state: Option<String>,
    /// The plan's `[state] url`: the commands given a plan find it there, the others need it.
    plan_state: Option<String>,
    on_interrupt: HaltAction,
}

impl Commands {
    /// `state`: where the rollout's state was said to be (`--state`, `--state-dir` or the
    /// environment), if anywhere.
    pub fn new(plan: &Plan, plan_path: &str, state: Option<&str>) -> Commands {
        Commands {
            plan_path: plan_path.to_string(),
            name: plan.name.to_string(),
            state: state.map(str::to_string),
            plan_state: plan.state.url.clone(),
            on_interrupt: plan.on_interrupt,
        }
    }

    fn command(&self, args: &[&str], by_name: bool) -> String {
        let mut argv: Vec<String> = ["rollout"]
            .iter()
            .chain(args)
            .map(|a| a.to_string())
            .collect();
        let state = match (&self.state, by_name) {
            (Some(state), _) => Some(state),
            (None, true) => self.plan_state.as_ref(),
            (None, false) => None,
        };
        if let Some(state) = state {
            argv.extend(["--state".to_string(), state.clone()]);
        }
        Argv::new(argv).map_or_else(String::new, |a| a.to_string())
    }

    pub fn run(&self) -> String {
        self.command(&["run", &self.plan_path], false)
    }

    pub fn status(&self) -> String {
        self.command(&["status", &self.plan_path], false)
    }

    pub fn approve(&self) -> String {
        self.command(&["approve", &self.name], true)
    }

    pub fn reject(&self) -> String {
        self.command(&["approve", &self.name, "--reject"], true)
    }

    pub fn resume(&self) -> String {
        self.command(&["resume", &self.plan_path], false)
    }

    pub fn rollback(&self) -> String {
        self.command(&["rollback", &self.plan_path], false)
    }

    /// There is no `pause` command: a running rollout pauses when interrupted, if its plan says
    /// so. One sentence saying what pausing takes for this plan.
    pub fn how_to_pause(&self) -> String {
        match self.on_interrupt {
            HaltAction::Pause => {
                "rollout has no pause command: interrupt the running `rollout run` \
                 (Ctrl-C in its terminal, or SIGINT/SIGTERM to its pid, which `rollout status` \
                 names). This plan has on_interrupt = \"pause\", so traffic stays at its current \
                 weight (exit 4); then resume or roll back:"
                    .to_string()
            }
            HaltAction::Rollback => {
                "rollout has no pause command, and this plan has on_interrupt = \
                 \"rollback\": interrupting the running `rollout run` (Ctrl-C, SIGINT or SIGTERM) \
                 rolls back. To be able to pause, set on_interrupt = \"pause\" under [defaults] \
                 before starting. A paused rollout (by max_hold with on_timeout = \"pause\") \
                 continues with:"
                    .to_string()
            }
        }
    }
}
