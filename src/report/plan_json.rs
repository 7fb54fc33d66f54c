//! `rollout plan --format json`: the validated plan as one JSON document, every default
//! applied, durations in seconds. Never a secret: notification targets are named, not shown,
//! and sources appear by name and type.

use serde_json::{Value, json};

use super::plan_table::durations;
use crate::plan::{Hook, Plan};

pub fn render(plan: &Plan) -> String {
    let (min, worst) = durations(plan);
    let document = json!({
        "name": plan.name,
        "description": plan.description,
        "strategy": plan.strategy,
        "backend": plan.backend.type_name(),
        "on_interrupt": plan.on_interrupt,
        "sources": plan.sources.iter().map(|s| json!({"name": s.name, "type": s.kind.type_name()})).collect::<Vec<_>>(),
        "metrics": plan.metrics.iter().map(|m| json!({
            "name": m.name,
            "source": plan.sources[m.source].name,
            "advance": m.advance.as_ref().map(|c| c.to_string()),
            "rollback": m.rollback.as_ref().map(|c| c.to_string()),
            "rollback_after": m.rollback_after,
            "min_samples": m.min_samples,
            "min_coverage": m.min_coverage,
            "on_no_data": m.on_no_data,
            "mode": m.mode,
        })).collect::<Vec<_>>(),
        "stages": plan.stages.iter().map(|s| json!({
            "stage": s.number,
            "weight": s.weight,
            "bake": s.bake.as_secs_f64(),
            "interval": s.interval.as_secs_f64(),
            "max_hold": s.max_hold.as_secs_f64(),
            "on_timeout": s.on_timeout,
            "approval": s.approval,
            "metrics": s.metrics.iter().map(|&i| plan.metrics[i].name.to_string()).collect::<Vec<_>>(),
            "hooks": s.hooks.iter().map(hook).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "hooks": plan.hooks.iter().map(|h| {
            let mut v = hook(&h.hook);
            v["on"] = json!(h.on);
            v
        }).collect::<Vec<_>>(),
        "window": plan.window.as_ref().map(|w| json!({
            "days": w.day_names(),
            "hours": w.hours_text(),
            "timezone": w.timezone_name,
            "freeze": w.freeze.iter().map(|(a, b)| format!("{a}/{b}")).collect::<Vec<_>>(),
        })),
        "stuck_after": plan.stuck_after.map(|d| d.as_secs_f64()),
        "notify": plan.notify.iter().map(|n| json!({
            "name": n.label,
            "type": n.type_name(),
            "on": n.on,
        })).collect::<Vec<_>>(),
        "duration": {"min": min.as_secs_f64(), "worst": worst.as_secs_f64()},
        "fingerprint": plan.fingerprint,
    });
    let mut text = serde_json::to_string_pretty(&document).unwrap_or_default();
    text.push('\n');
    text
}

fn hook(h: &Hook) -> Value {
    json!({"run": h.run, "timeout": h.timeout.as_secs_f64()})
}
