use super::args::PlanArgs;
use super::{Exit, load_valid_plan};

/// Prints the plan's stages as a table; exit 2 if the plan is invalid.
pub fn plan(args: &PlanArgs, color: bool) -> anyhow::Result<Exit> {
    let Some(plan) = load_valid_plan(&args.plan, color)? else {
        return Ok(Exit::Invalid);
    };
    print!("{}", rollout::report::plan_table::render(&plan));
    Ok(Exit::Promoted)
}
