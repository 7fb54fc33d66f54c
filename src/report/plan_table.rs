//! `rollout plan`: the stages as a table, with the minimum and worst-case durations.

use std::time::Duration;

use comfy_table::{ContentArrangement, Table};

use super::text;
use crate::plan::{Metric, MetricMode, Plan, Stage};

/// The table wraps its cells to fit `width` columns.
pub fn render(plan: &Plan, width: u16) -> String {
    let mut table = Table::new();
    table.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
    table.set_content_arrangement(ContentArrangement::Dynamic);
    table.set_width(width);
    table.set_header([
        "#",
        "Weight",
        "Bake",
        "Gates",
        "Approval",
        "Hooks",
        "Elapsed (min)",
    ]);
    let mut elapsed = Duration::ZERO;
    for stage in &plan.stages {
        elapsed += stage.bake;
        table.add_row(vec![
            stage.number.to_string(),
            weight(plan, stage),
            bake(stage),
            gates(plan, stage),
            if stage.approval {
                "required".to_string()
            } else {
                "-".to_string()
            },
            hooks(stage),
            text::duration(elapsed),
        ]);
    }
    let (min, worst) = durations(plan);
    let description = plan
        .description
        .as_deref()
        .map(|d| format!(" ({d})"))
        .unwrap_or_default();
    format!(
        "{name}{description}: {strategy} through the {backend} backend\n{table}\n\
         Minimum duration: {min} (every stage passes when its bake ends)\n\
         Worst case:       {worst} (every stage uses its full max_hold; hooks run to their timeouts)\n{extra}",
        extra = extras(plan),
        name = plan.name,
        strategy = plan.strategy,
        backend = plan.backend.type_name(),
        min = text::duration(min),
        worst = text::duration(worst),
    )
}

/// The window, the stuck alarm and the notifications, one line each when the plan has them.
fn extras(plan: &Plan) -> String {
    let mut out = String::new();
    if let Some(window) = &plan.window {
        out.push_str(&format!(
            "Change window:    {window} (outside it nothing starts or advances; rolling back is always allowed)\n"
        ));
    }
    if let Some(after) = plan.stuck_after {
        out.push_str(&format!(
            "Stuck after:      {} in a stage\n",
            text::duration(after)
        ));
    }
    for notify in &plan.notify {
        let on: Vec<&str> = notify.on.iter().map(|on| on.as_str()).collect();
        out.push_str(&format!(
            "Notifies:         {notify} on {}\n",
            on.join(", ")
        ));
    }
    out
}

/// The weight, the segments that get the new version whatever it is, and the mirror.
pub(crate) fn weight(plan: &Plan, stage: &Stage) -> String {
    let names: Vec<&str> = stage
        .segments
        .iter()
        .filter_map(|i| plan.segments.get(i))
        .map(|s| s.name.as_str())
        .collect();
    let mut out = stage.weight.to_string();
    if !names.is_empty() && !stage.weight.is_full() {
        out = format!("{out} + {}", names.join(", "));
    }
    if let Some(share) = stage.mirror {
        out = format!("{out} + mirror {share}");
    }
    out
}

pub(crate) fn gates(plan: &Plan, stage: &Stage) -> String {
    if !stage.gets_traffic() {
        return "- (no traffic to measure)".to_string();
    }
    if stage.metrics.is_empty() {
        return "none: advances on time alone".to_string();
    }
    let lines: Vec<String> = stage
        .metrics
        .iter()
        .map(|&i| gate(&plan.metrics[i]))
        .collect();
    lines.join("\n")
}

fn bake(stage: &Stage) -> String {
    match (!stage.gets_traffic(), stage.metrics.is_empty()) {
        (true, _) => "-".to_string(),
        (false, true) => text::duration(stage.bake),
        (false, false) => format!(
            "{}, poll {}",
            text::duration(stage.bake),
            text::duration(stage.interval)
        ),
    }
}

fn gate(metric: &Metric) -> String {
    let mut parts = Vec::new();
    if let Some(judge) = &metric.judge {
        parts.push(format!(
            "judge mann-whitney ({} is worse by > {}% at {}% confidence, last {})",
            match judge.direction {
                crate::plan::Direction::Increase => "higher",
                crate::plan::Direction::Decrease => "lower",
                crate::plan::Direction::Either => "any difference",
            },
            text::value(judge.tolerance * 100.0),
            text::value(judge.confidence * 100.0),
            text::duration(judge.window)
        ));
    }
    if let Some(advance) = &metric.advance {
        parts.push(format!("advance {advance}"));
    }
    if let Some(rollback) = &metric.rollback {
        let times = if metric.rollback_after > 1 {
            format!(" ({} in a row)", metric.rollback_after)
        } else {
            String::new()
        };
        parts.push(format!("rollback {rollback}{times}"));
    }
    let warn = if metric.mode == MetricMode::Warn {
        " [warn only]"
    } else {
        ""
    };
    format!("{}: {}{warn}", metric.name, parts.join("; "))
}

fn hooks(stage: &Stage) -> String {
    if stage.hooks.is_empty() {
        return "-".to_string();
    }
    stage
        .hooks
        .iter()
        .map(|h| h.run.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

/// The shortest run (every gate passes as its bake ends, hooks take no time) and the longest
/// one that still ends on its own (every stage waits out its max_hold, every hook its timeout).
pub fn durations(plan: &Plan) -> (Duration, Duration) {
    let min = plan.stages.iter().map(|s| s.bake).sum();
    let worst = plan
        .stages
        .iter()
        .map(|s| {
            let hooks: Duration = s.hooks.iter().map(|h| h.timeout).sum();
            // Only gates and approvals can hold a stage past its bake.
            let waits = !s.metrics.is_empty() || s.approval;
            s.bake + hooks + if waits { s.max_hold } else { Duration::ZERO }
        })
        .sum();
    (min, worst)
}
