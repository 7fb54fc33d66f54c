use rollout::report::commands::Commands;

use super::args::{PlanArgs, PlanFormat};
use super::{Exit, load_valid_plan};

/// Where output is not a terminal (a file, a CI log), lines this long still read well.
const WIDTH_WITHOUT_TERMINAL: u16 = 100;

/// Prints the plan's stages as a table; exit 2 if the plan is invalid.
pub fn plan(args: &PlanArgs, color: bool) -> anyhow::Result<Exit> {
    let Some(plan) = load_valid_plan(&args.plan, color)? else {
        return Ok(Exit::Invalid);
    };
    let text = match args.format {
        PlanFormat::Table => rollout::report::plan_table::render(&plan, output_width()),
        PlanFormat::Json => rollout::report::plan_json::render(&plan),
        PlanFormat::Markdown => {
            let path = args.plan.display().to_string();
            let commands = Commands::new(&plan, &path, args.state.as_deref());
            rollout::report::runbook::render(&plan, &commands)
        }
    };
    print!("{text}");
    Ok(Exit::Success)
}

/// The terminal's width; otherwise `COLUMNS` when set, else a width that reads well in a log.
pub fn output_width() -> u16 {
    if let Some((_, columns)) = console::Term::stdout().size_checked() {
        return columns;
    }
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(WIDTH_WITHOUT_TERMINAL)
}
