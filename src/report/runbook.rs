//! `rollout plan --format markdown`: a deployment runbook to paste into a change ticket. The
//! stages with their weights, bakes, gates and hooks; what rolls the release back; the change
//! window; and the exact commands to start, watch, approve, pause and roll back this rollout.

use super::commands::Commands;
use super::plan_table::{durations, gates};
use super::text;
use crate::plan::{HaltAction, Metric, MetricMode, Plan, Stage};

pub fn render(plan: &Plan, commands: &Commands) -> String {
    let mut out = String::new();
    out.push_str(&format!("# Rollout runbook: {}\n\n", plan.name));
    if let Some(description) = &plan.description {
        out.push_str(&format!("{}\n\n", description.replace(['\r', '\n'], " ")));
    }
    let (min, worst) = durations(plan);
    out.push_str(&format!(
        "A {} rollout in {} stages through the {} backend. It takes at least {} (every stage \
         passes when its bake ends) and at most {} (every stage uses its full max_hold).\n",
        plan.strategy,
        plan.stages.len(),
        plan.backend.type_name(),
        text::duration(min),
        text::duration(worst)
    ));
    stages(&mut out, plan);
    triggers(&mut out, plan);
    window(&mut out, plan);
    operate(&mut out, plan, commands);
    out
}

fn stages(out: &mut String, plan: &Plan) {
    out.push_str("\n## Stages\n\n");
    out.push_str("| # | Weight | Bake | Gates | Approval | Hooks |\n|---|---|---|---|---|---|\n");
    for stage in &plan.stages {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} |\n",
            stage.number,
            text::markdown_cell(&super::plan_table::weight(plan, stage)),
            bake(stage),
            text::markdown_cell(&gates(plan, stage).replace('\n', "; ")),
            if stage.approval { "required" } else { "-" },
            hooks(stage),
        ));
    }
}

fn bake(stage: &Stage) -> String {
    if !stage.gets_traffic() {
        return "-".to_string();
    }
    let mut text = text::duration(stage.bake);
    if !stage.metrics.is_empty() || stage.approval {
        text.push_str(&format!(
            ", then up to {} more (then {})",
            text::duration(stage.max_hold),
            stage.on_timeout
        ));
    }
    text
}

fn hooks(stage: &Stage) -> String {
    if stage.hooks.is_empty() {
        return "-".to_string();
    }
    let hooks: Vec<String> = stage
        .hooks
        .iter()
        .map(|h| format!("`{}` (timeout {})", h.run, text::duration(h.timeout)))
        .collect();
    text::markdown_cell(&hooks.join("; "))
}

fn triggers(out: &mut String, plan: &Plan) {
    out.push_str(
        "\n## What rolls it back\n\nTraffic returns to the stable version at once when:\n\n",
    );
    for (index, metric) in plan.metrics.iter().enumerate() {
        if let Some(line) = metric_trigger(plan, index, metric) {
            out.push_str(&format!("- {line}\n"));
        }
    }
    out.push_str("- a stage hook fails or outlives its timeout;\n");
    out.push_str("- the new version does not become ready when its weight is applied;\n");
    let timeouts: Vec<String> = plan
        .stages
        .iter()
        .filter(|s| s.on_timeout == HaltAction::Rollback && (!s.metrics.is_empty() || s.approval))
        .map(|s| s.number.to_string())
        .collect();
    if !timeouts.is_empty() {
        out.push_str(&format!(
            "- a stage cannot pass its gates within its max_hold (on_timeout = \"rollback\": {});\n",
            stage_list(&timeouts)
        ));
    }
    if plan.stages.iter().any(|s| s.approval) {
        out.push_str("- an approval is refused;\n");
    }
    if plan.on_interrupt == HaltAction::Rollback {
        out.push_str(
            "- the run is interrupted (SIGINT or SIGTERM; on_interrupt = \"rollback\").\n",
        );
    }
    out.push_str("\nA source that cannot be reached never rolls back and never advances: it holds the stage.\n");
}

fn metric_trigger(plan: &Plan, index: usize, metric: &Metric) -> Option<String> {
    let rollback = metric.rollback.as_ref()?;
    let in_stages: Vec<String> = plan
        .stages
        .iter()
        .filter(|s| s.metrics.contains(&index))
        .map(|s| s.number.to_string())
        .collect();
    if metric.mode == MetricMode::Warn {
        return Some(format!(
            "never for **{}** (mode = \"warn\"): `{rollback}` is reported only;",
            metric.name
        ));
    }
    let times = if metric.rollback_after > 1 {
        format!("{} measurements in a row", metric.rollback_after)
    } else {
        "one measurement".to_string()
    };
    Some(format!(
        "**{}** is `{rollback}` for {times} ({});",
        metric.name,
        stage_list(&in_stages)
    ))
}

/// "stage 2" or "stages 2, 3".
fn stage_list(numbers: &[String]) -> String {
    match numbers {
        [one] => format!("stage {one}"),
        many => format!("stages {}", many.join(", ")),
    }
}

fn window(out: &mut String, plan: &Plan) {
    if let Some(window) = &plan.window {
        out.push_str(&format!(
            "\n## Change window\n\n{window}. Outside it nothing starts and no stage advances: a ready stage holds at its weight, still measuring, until the window opens. Rolling back is always allowed.\n"
        ));
    }
    if let Some(after) = plan.stuck_after {
        out.push_str(&format!(
            "\nA stage that has not advanced {} into its bake is reported as stuck.\n",
            text::duration(after)
        ));
    }
    if !plan.notify.is_empty() {
        out.push_str("\n## Who is told\n\n");
        for notify in &plan.notify {
            let on: Vec<&str> = notify.on.iter().map(|on| on.as_str()).collect();
            out.push_str(&format!("- {notify}: {}\n", on.join(", ")));
        }
    }
}

fn operate(out: &mut String, plan: &Plan, commands: &Commands) {
    let block =
        |title: &str, lines: &[String]| format!("\n{title}\n\n```sh\n{}\n```\n", lines.join("\n"));
    out.push_str("\n## Commands\n");
    out.push_str(&block("Start:", &[commands.run()]));
    out.push_str(&block(
        "Watch (stage, weight, latest metrics, who holds it):",
        &[commands.status()],
    ));
    let approvals: Vec<String> = plan
        .stages
        .iter()
        .filter(|s| s.approval)
        .map(|s| s.number.to_string())
        .collect();
    if !approvals.is_empty() {
        out.push_str(&block(
            &format!(
                "Approve when it waits ({}), or refuse, which rolls back:",
                stage_list(&approvals)
            ),
            &[commands.approve(), commands.reject()],
        ));
    }
    out.push_str(&format!(
        "\nPause: {}\n\n```sh\n{}\n```\n",
        commands.how_to_pause(),
        commands.resume()
    ));
    out.push_str(&block(
        "Roll back now, from any state, from any machine that reaches the state (exit 0 when traffic is confirmed on stable, 5 when not):",
        &[commands.rollback()],
    ));
}
