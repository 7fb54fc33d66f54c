//! The command line, as clap sees it.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "rollout",
    version,
    about = "Ship a new version safely: canary and blue-green rollouts gated by metrics",
    long_about = "Ship a new version safely: canary and blue-green rollouts gated by metrics.\n\n\
        A plan (TOML) names the traffic backend, the stages of traffic weight, how long each \
        bakes, and the metrics that decide. `rollout run` drives the backend stage by stage, \
        promotes when every gate holds and rolls back by itself when one breaks.",
    after_help = format!(
        "Examples:\n  rollout validate plans/*.toml\n  rollout plan plans/nginx-canary.toml\n  rollout run plans/nginx-canary.toml --dry-run\n\n{}",
        rollout::exit::Exit::help()
    ),
    propagate_version = true
)]
pub struct Cli {
    /// When to color output [default: auto, which honors NO_COLOR]
    #[arg(long, value_enum, global = true, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Text for people: live progress in a terminal, timestamped lines otherwise
    Human,
    /// One JSON object per line on stdout
    Json,
}

/// Which CI's language the output speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Ci {
    /// GitHub Actions: annotations and a step summary
    Github,
    /// GitLab CI: a collapsible log section per stage
    Gitlab,
    /// Plain output only
    None,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a rollout: move traffic stage by stage, gated by the plan's metrics
    #[command(
        after_help = "Examples:\n  rollout run plans/nginx-canary.toml\n  rollout run plans/nginx-canary.toml --dry-run\n  rollout run plan.toml --yes --output json --report evidence.json"
    )]
    Run(RunArgs),

    /// Check plan files without touching anything; exit 2 if any is invalid
    #[command(
        after_help = "Examples:\n  rollout validate plan.toml\n  rollout validate plans/*.toml --output json\n  rollout validate --live plan.toml   # also query every metric once, now"
    )]
    Validate(ValidateArgs),

    /// Replay a plan over a past window of Prometheus history; touches nothing (exit 0, 3 or 4
    /// as `run` would have)
    #[command(
        after_help = "Examples:\n  rollout backtest plan.toml --start -6h --end now\n  rollout backtest plan.toml --start 2026-05-01T09:00:00Z --end 2026-05-01T15:00:00Z --output json"
    )]
    Backtest(BacktestArgs),

    /// Show a plan's stages as a table, with minimum and worst-case durations
    #[command(after_help = "Example:\n  rollout plan plans/nginx-canary.toml")]
    Plan(PlanArgs),

    /// Show where a rollout stands: its status, stage, weight and latest metrics
    #[command(
        after_help = "Examples:\n  rollout status checkout-api\n  rollout status plans/checkout.toml --output json"
    )]
    Status(StatusArgs),

    /// Continue a paused or interrupted rollout from its last confirmed stage
    #[command(
        after_help = "Examples:\n  rollout resume plans/checkout.toml\n  rollout resume plans/checkout.toml --force   # the plan changed since it started"
    )]
    Resume(ResumeArgs),

    /// Return traffic to the stable version now, from any state (exit 0 done, 5 failed)
    #[command(after_help = "Example:\n  rollout rollback plans/checkout.toml")]
    Rollback(RollbackArgs),

    /// List every rollout in a state store: status, stage, weight, holder, last change
    #[command(
        after_help = "Examples:\n  rollout list\n  rollout list --state s3://deploys/rollouts --output json"
    )]
    List(ListArgs),

    /// Answer a rollout that is waiting for approval, from another shell or CI job
    #[command(
        after_help = "Examples:\n  rollout approve checkout-api\n  rollout approve checkout-api --reject --by alice"
    )]
    Approve(ApproveArgs),

    /// Print a JSON Schema of the plan format, for editors (Taplo reads it from a `#:schema`
    /// comment at the top of a plan)
    #[command(
        after_help = "Example:\n  rollout schema > rollout.schema.json\n  # then, as a plan's first line:  #:schema ./rollout.schema.json"
    )]
    Schema,

    /// Write the man pages, one per command, into a directory
    #[command(after_help = "Example:\n  rollout man /usr/local/share/man/man1")]
    Man(ManArgs),

    /// Print a shell completion script
    #[command(
        after_help = "Examples:\n  rollout completions bash > /etc/bash_completion.d/rollout\n  rollout completions zsh > \"${fpath[1]}/_rollout\"\n  rollout completions fish > ~/.config/fish/completions/rollout.fish"
    )]
    Completions(CompletionsArgs),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The plan file
    pub plan: PathBuf,

    /// Walk the whole plan and print what would be done, touching nothing
    #[arg(long)]
    pub dry_run: bool,

    /// Outside the plan's change window, wait for it to open instead of exiting 2
    #[arg(long)]
    pub wait_for_window: bool,

    #[command(flatten)]
    pub drive: DriveArgs,
}

/// What every command that drives a rollout (run, resume, rollback) shares.
#[derive(Debug, Args)]
pub struct DriveArgs {
    /// Approve every approval gate up front
    #[arg(long, short = 'y')]
    pub yes: bool,

    /// Output format
    #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
    pub output: OutputFormat,

    #[command(flatten)]
    pub state: StateArgs,

    /// Write the full evidence (every measurement and decision) as JSON to this file
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,

    /// Print only warnings, the final decision and errors
    #[arg(long, short = 'q', conflicts_with = "verbose")]
    pub quiet: bool,

    /// Also print every measurement and backend command
    #[arg(long, short = 'v')]
    pub verbose: bool,

    /// Speak the CI's language [default: github when GITHUB_ACTIONS=true, gitlab when
    /// GITLAB_CI=true, else none]
    #[arg(long, value_enum, value_name = "CI")]
    pub ci: Option<Ci>,
}

impl DriveArgs {
    /// `--ci`, else what the environment says this is.
    pub fn ci(&self) -> Ci {
        let set = |key: &str| std::env::var(key).is_ok_and(|v| v == "true");
        self.ci.unwrap_or(if set("GITHUB_ACTIONS") {
            Ci::Github
        } else if set("GITLAB_CI") {
            Ci::Gitlab
        } else {
            Ci::None
        })
    }

    /// Where the state was said to be, for commands a person pastes: `--state`, `--state-dir`
    /// or the environment.
    pub fn state_location(&self) -> Option<String> {
        let env = |key: &str| std::env::var(key).ok().filter(|v| !v.is_empty());
        self.state
            .state
            .clone()
            .or_else(|| {
                self.state
                    .state_dir
                    .as_ref()
                    .map(|d| d.display().to_string())
            })
            .or_else(|| env("ROLLOUT_STATE"))
            .or_else(|| env("ROLLOUT_STATE_DIR"))
    }
}

#[derive(Debug, Args)]
pub struct ResumeArgs {
    /// The plan file of the paused or interrupted rollout
    pub plan: PathBuf,

    /// Resume even though the plan file changed since the rollout started, or its lease on a
    /// shared store has not run out yet
    #[arg(long)]
    pub force: bool,

    #[command(flatten)]
    pub drive: DriveArgs,
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// The plan file of the rollout to roll back
    pub plan: PathBuf,

    /// ECS service mode without a journal: the task definition (family:revision or ARN) to
    /// return the service to
    #[arg(long, value_name = "TASK_DEFINITION")]
    pub task_definition: Option<String>,

    /// Take the rollout over from a holder whose lease on a shared store has not run out yet
    #[arg(long)]
    pub force: bool,

    #[command(flatten)]
    pub drive: DriveArgs,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The rollout's name, or its plan file
    pub rollout: String,

    /// Output format
    #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
    pub output: OutputFormat,

    #[command(flatten)]
    pub state: StateArgs,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// One or more plan files
    #[arg(required = true)]
    pub plans: Vec<PathBuf>,

    /// Output format
    #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
    pub output: OutputFormat,

    /// Also query every metric and baseline once, now, and report what each answered, the
    /// verdict it would get and every problem (exit 2 unless every metric answered a value)
    #[arg(long)]
    pub live: bool,
}

#[derive(Debug, Args)]
pub struct BacktestArgs {
    /// The plan file
    pub plan: PathBuf,

    /// Where the replay starts: RFC 3339 (2026-05-01T09:00:00Z), or relative to now (-6h)
    #[arg(long, allow_hyphen_values = true)]
    pub start: String,

    /// Where the history ends: RFC 3339, relative to now (-1h), or `now`
    #[arg(long, allow_hyphen_values = true)]
    pub end: String,

    /// Refuse every approval gate instead of counting it as given
    #[arg(long)]
    pub deny_approvals: bool,

    /// Output format
    #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
    pub output: OutputFormat,

    /// Write the full evidence (every measurement and decision) as JSON to this file
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,

    /// Print only warnings, the final decision and errors
    #[arg(long, short = 'q', conflicts_with = "verbose")]
    pub quiet: bool,

    /// Also print every measurement and what hooks would have run
    #[arg(long, short = 'v')]
    pub verbose: bool,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The plan file
    pub plan: PathBuf,

    /// table: the stages for a terminal; markdown: a runbook for a change ticket; json: the
    /// validated plan with every default applied
    #[arg(long, value_enum, default_value_t = PlanFormat::Table)]
    pub format: PlanFormat,

    /// Where the rollout's state will live, for the runbook's commands (a folder or URL, as
    /// --state of run) [default: the plan's [state] url, else .rollout]
    #[arg(long, value_name = "URL")]
    pub state: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PlanFormat {
    Table,
    Markdown,
    Json,
}

#[derive(Debug, Args)]
pub struct ApproveArgs {
    /// The rollout's name (the plan's `name`)
    pub name: String,

    /// Refuse instead: the rollout rolls back
    #[arg(long)]
    pub reject: bool,

    /// Who answers, for the log [default: $USER]
    #[arg(long)]
    pub by: Option<String>,

    #[command(flatten)]
    pub state: StateArgs,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Output format
    #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
    pub output: OutputFormat,

    #[command(flatten)]
    pub state: StateArgs,
}

/// Where rollout state (journals, locks or leases, approvals) lives. Without either option:
/// env ROLLOUT_STATE, then ROLLOUT_STATE_DIR, then the plan's `[state] url`, then `.rollout`.
#[derive(Debug, Args)]
pub struct StateArgs {
    /// Where rollout state lives: a folder, file://PATH, s3://BUCKET/PREFIX, gs://BUCKET/PREFIX
    /// or az://CONTAINER/PREFIX [env: ROLLOUT_STATE] [default: the plan's [state] url, else
    /// .rollout]
    #[arg(long, value_name = "URL")]
    pub state: Option<String>,

    /// A local state folder, as --state DIR [env: ROLLOUT_STATE_DIR]
    #[arg(long, value_name = "DIR", conflicts_with = "state")]
    pub state_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// The directory to write rollout.1, rollout-run.1, ... into
    pub dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to generate completions for
    pub shell: clap_complete::Shell,
}
