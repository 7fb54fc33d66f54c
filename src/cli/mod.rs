//! The edge of the program: arguments in, exit code out. Errors become `anyhow` only here.

mod approve;
mod args;
mod attend;
mod backtest;
mod ci;
mod completions;
mod hygiene;
mod list;
mod live;
mod plan_cmd;
mod resume;
mod rollback;
mod run;
mod session;
mod state;
mod status;
mod validate;
mod window;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;

pub use args::Cli;
use args::{ColorChoice, Command};

pub use rollout::exit::Exit;

/// The async runtime of the commands that drive a rollout.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
}

/// Whether to color what goes to stderr: `--color`, then NO_COLOR, then whether it is a terminal.
pub fn use_color(choice: ColorChoice) -> bool {
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => {
            std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
                && std::io::stderr().is_terminal()
        }
    }
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let color = use_color(cli.color);
    let result = match cli.command {
        Command::Validate(args) => validate::validate(&args, color),
        Command::Backtest(args) => backtest::backtest(&args, color),
        Command::Plan(args) => plan_cmd::plan(&args, color),
        Command::Run(args) => run::run(&args, color),
        Command::Status(args) => status::status(&args),
        Command::Resume(args) => resume::resume(&args, color),
        Command::Rollback(args) => rollback::rollback(&args, color),
        Command::Approve(args) => approve::approve(&args),
        Command::List(args) => list::list(&args),
        Command::Completions(args) => completions::completions(&args),
        Command::Schema => completions::schema(),
        Command::Man(args) => completions::man(&args),
    };
    match result {
        Ok(exit) => exit.into(),
        Err(error) => {
            eprintln!("error: {error:#}");
            Exit::CouldNotProceed.into()
        }
    }
}

/// Loads a plan for a command that needs a valid one, printing its diagnostics (warnings too).
/// `Ok(None)` means the plan was invalid and the diagnostics were shown: exit 2.
pub fn load_valid_plan(
    path: &std::path::Path,
    color: bool,
) -> anyhow::Result<Option<rollout::plan::Plan>> {
    let checked = match rollout::plan::load(path) {
        Ok(checked) => checked,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(None);
        }
    };
    eprint!("{}", checked.file.render(&checked.diagnostics, color));
    if checked.plan.is_none() {
        eprintln!(
            "error: {} is not a valid plan ({})",
            path.display(),
            count_summary(checked.errors(), checked.warnings())
        );
    }
    Ok(checked.plan)
}

/// Reads a rollout's journal for a command that cannot go on without it (status, resume,
/// run). A journal that cannot be read is explained with the way out, and `Err(exit)` returned.
pub async fn read_journal(
    store: &dyn rollout::state::StateStore,
    name: &str,
    plan: Option<&std::path::Path>,
) -> Result<Option<rollout::state::Journal>, Exit> {
    use rollout::state::StoreError;
    store.journal(name).await.map_err(|e| {
        let plan = plan.map_or("PLAN".to_string(), |p| p.display().to_string());
        match &e {
            StoreError::Damaged { .. } => eprintln!(
                "error: {e}\n  so rollout cannot tell where this rollout's traffic is. \
                 `rollout rollback {plan}` returns traffic to stable from the plan alone (and moves \
                 the damaged journal aside); after that, `rollout run {plan}` starts afresh"
            ),
            _ => eprintln!(
                "error: {e}\n  so rollout cannot tell where this rollout's traffic is; nothing was changed"
            ),
        }
        Exit::CouldNotProceed
    })
}

pub fn count_summary(errors: usize, warnings: usize) -> String {
    let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
    match (errors, warnings) {
        (0, 0) => "no problems".to_string(),
        (e, 0) => plural(e, "error"),
        (0, w) => plural(w, "warning"),
        (e, w) => format!("{}, {}", plural(e, "error"), plural(w, "warning")),
    }
}
