//! `rollout status NAME|PLAN`: where a rollout stands, from its journal, told plainly.

use std::path::Path;

use serde::Serialize;

use rollout::plan::{Audience, Plan, show_number};
use rollout::state::{Holding, Journal, Pending, Status};

use super::Exit;
use super::args::{OutputFormat, StatusArgs};

/// What `--output json` prints: the journal, and what it means now.
#[derive(Serialize)]
struct StatusJson<'a> {
    name: &'a str,
    /// The journal's status, or `interrupted` when no live process drives an active rollout.
    state: String,
    /// Whether a live process is driving the rollout right now.
    running: bool,
    traffic: String,
    next: String,
    /// Who holds the rollout (or last did), and on a shared store until when.
    holder: Option<&'a Holding>,
    /// After a flag rollout is promoted: how long the flag has been fully on.
    #[serde(skip_serializing_if = "Option::is_none")]
    flag: Option<String>,
    journal: &'a Journal,
}

pub fn status(args: &StatusArgs) -> anyhow::Result<Exit> {
    let (name, plan) = match name_of(&args.rollout) {
        Ok(found) => found,
        Err(message) => {
            eprintln!("error: {message}");
            return Ok(Exit::Invalid);
        }
    };
    let plan_path = Path::new(&args.rollout);
    let plan_path = plan_path.is_file().then_some(plan_path);
    super::runtime()?.block_on(async {
        let store = match super::state::open(&args.state, plan.as_ref()) {
            Ok(store) => store,
            Err(exit) => return Ok(exit),
        };
        let journal = match super::read_journal(store.as_ref(), &name, plan_path).await {
            Ok(journal) => journal,
            Err(exit) => return Ok(exit),
        };
        let Some(journal) = journal else {
            eprintln!(
                "error: no rollout named `{name}` in {} (are --state, ROLLOUT_STATE, ROLLOUT_STATE_DIR or the plan's [state] the ones the run used?)",
                store.location()
            );
            return Ok(Exit::Invalid);
        };
        let holding = match store.holding(&name).await {
            Ok(holding) => holding,
            Err(e) => return Ok(super::state::failed(&e)),
        };
        let running = journal.status.is_active() && holding.as_ref().is_some_and(|h| h.live);
        // The plan says whether this was a flag: the one given, else the one the run used,
        // read only when it can matter (a flag's line is about a promoted rollout).
        let plan = plan.or_else(|| {
            (journal.status == Status::Promoted)
                .then(|| rollout::plan::load(&journal.plan_path).ok()?.plan)
                .flatten()
        });
        let flag = plan
            .as_ref()
            .and_then(|plan| super::hygiene::status_line(&journal, plan));
        match args.output {
            OutputFormat::Human => print!(
                "{}",
                render(&journal, running, holding.as_ref(), flag.as_deref())
            ),
            OutputFormat::Json => {
                let json = StatusJson {
                    name: &name,
                    state: state_word(&journal, running).to_string(),
                    running,
                    traffic: traffic(&journal),
                    next: next_step(&journal, running),
                    holder: holding.as_ref(),
                    flag,
                    journal: &journal,
                };
                println!("{}", serde_json::to_string_pretty(&json)?);
            }
        }
        Ok(Exit::Success)
    })
}

/// A plan file gives its name (and its `[state]`); anything else is taken as the name.
fn name_of(rollout: &str) -> Result<(String, Option<Plan>), String> {
    let path = Path::new(rollout);
    if !path.is_file() {
        return Ok((rollout.to_string(), None));
    }
    let checked = rollout::plan::load(path).map_err(|e| e.to_string())?;
    checked
        .plan
        .map(|p| (p.name.to_string(), Some(p)))
        .ok_or_else(|| {
            format!("{rollout} is not a valid plan; `rollout validate {rollout}` says why")
        })
}

fn state_word(journal: &Journal, running: bool) -> &'static str {
    if journal.status.is_active() && !running {
        "interrupted"
    } else {
        journal.status.as_str()
    }
}

/// A short phrase, for messages elsewhere ("paused at 20% in stage 1 of 3").
pub fn describe_status(journal: &Journal, running: bool) -> String {
    format!("{} {}", state_word(journal, running), position(journal))
}

fn position(journal: &Journal) -> String {
    match journal.status {
        Status::Promoted => "at 100%".to_string(),
        Status::RolledBack | Status::Failed => "with all traffic on stable".to_string(),
        Status::RollbackFailed => "with traffic in an unknown state".to_string(),
        _ if journal.stage == 0 => format!("before stage 1 of {}", journal.stages),
        _ => match journal.weight {
            Some(w) if journal.pending.is_none() => {
                format!(
                    "at {}% in stage {} of {}",
                    show_number(w),
                    journal.stage,
                    journal.stages
                )
            }
            _ => format!("in stage {} of {}", journal.stage, journal.stages),
        },
    }
}

/// Where traffic is, as precisely as the journal allows, and no more precisely.
fn traffic(journal: &Journal) -> String {
    let pct = |w: f64| format!("{}%", show_number(w));
    match (&journal.pending, journal.weight) {
        (Some(Pending::SetWeight { weight, from, .. }), _) => format!(
            "{} or {} on the new version: a change from {} to {} was under way and may not have finished",
            pct(*from),
            pct(*weight),
            pct(*from),
            pct(*weight)
        ),
        (Some(Pending::Rollback { .. }), Some(w)) => {
            format!(
                "between {} and 0% on the new version: a rollback was under way",
                pct(w)
            )
        }
        (Some(Pending::Rollback { .. }), None) => "unknown: a rollback was under way".to_string(),
        (None, Some(w)) if journal.status == Status::Promoted => {
            format!("{} on the new version", pct(w))
        }
        (None, Some(w)) => format!("{} on the new version", pct(w)),
        (None, None) => "unknown: the rollback failed".to_string(),
    }
}

/// Segments and a mirror, which reach the new version beside the weight.
fn also_on_the_new_version(journal: &Journal) -> Option<String> {
    let mut parts = Vec::new();
    if !journal.segments.is_empty() {
        parts.push(format!(
            "segment{} {} on the new version whatever the weight",
            if journal.segments.len() == 1 { "" } else { "s" },
            journal.segments.join(", ")
        ));
    }
    if let Some(share) = journal.mirror {
        parts.push(format!(
            "{}% of requests copied to it (its answers discarded)",
            show_number(share)
        ));
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}

fn next_step(journal: &Journal, running: bool) -> String {
    let plan = journal.plan_path.display();
    let name = &journal.name;
    match journal.status {
        Status::WaitingForApproval if running => {
            format!(
                "`rollout approve {name}` lets it advance; `rollout approve {name} --reject` rolls it back"
            )
        }
        _ if running => format!("wait for it; `rollout status {name}` again shows its progress"),
        Status::Running | Status::WaitingForApproval => format!(
            "`rollout resume {plan}` continues from stage {} (re-applying its weight), or `rollout rollback {plan}` returns all traffic to stable",
            journal.stage.max(1)
        ),
        Status::RollingBack => format!("`rollout rollback {plan}` finishes the rollback"),
        Status::Paused => format!(
            "`rollout resume {plan}` continues from stage {}, or `rollout rollback {plan}` returns all traffic to stable",
            journal.stage.max(1)
        ),
        Status::RollbackFailed => {
            format!("a person must check the backend; `rollout rollback {plan}` tries again")
        }
        Status::Promoted | Status::RolledBack | Status::Failed => {
            "nothing: the rollout is over".to_string()
        }
    }
}

fn render(
    journal: &Journal,
    running: bool,
    holding: Option<&Holding>,
    flag: Option<&str>,
) -> String {
    let mut out = format!(
        "{}: {} {} (since {})\n",
        journal.name,
        state_word(journal, running),
        position(journal),
        journal.since
    );
    let mut row = |label: &str, text: String| out.push_str(&format!("  {label:<8} {text}\n"));
    if journal.status.is_active() && !running {
        row(
            "process",
            format!(
                "`rollout` (pid {}) stopped without finishing; last update {}",
                journal.pid.map_or("?".to_string(), |p| p.to_string()),
                journal.updated_at
            ),
        );
    } else if let Some(holding) = holding.filter(|_| running) {
        let until = holding
            .until
            .as_deref()
            .map(|until| format!("; its lease runs until {until}"))
            .unwrap_or_default();
        row("process", format!("{}{until}", holding.holder.describe()));
    }
    match journal.audience {
        Some(Audience::Users) => row("users", traffic(journal)),
        _ => row("traffic", traffic(journal)),
    }
    if let Some(also) = also_on_the_new_version(journal) {
        row("also", also);
    }
    if let Some(opens) = journal.window_opens.as_ref().filter(|_| running) {
        row(
            "window",
            format!("closed: held at its weight (still measuring) until it opens, {opens}"),
        );
    }
    if let Some(reason) = &journal.reason {
        row("reason", reason.clone());
    }
    let mut metrics = journal.metrics.iter();
    if let Some((name, m)) = metrics.next() {
        let line = |name: &str, m: &rollout::state::journal::LastMeasurement| {
            let shown = |v: Option<f64>| {
                v.map_or("no value".to_string(), |v| {
                    rollout::plan::show_reading(v, m.shown_as_percent)
                })
            };
            let mut text = format!(
                "{name} = {}: {} (stage {}, {})",
                shown(m.value),
                m.verdict.as_str(),
                m.stage,
                m.at
            );
            if m.recent.len() > 1 {
                let latest: Vec<String> = m
                    .recent
                    .iter()
                    .map(|r| format!("{} {}", shown(r.value), r.verdict.as_str()))
                    .collect();
                text.push_str(&format!("; latest in the stage: {}", latest.join(", ")));
            }
            if m.breaches > 0 {
                let plural = if m.breaches == 1 { "" } else { "es" };
                text.push_str(&format!("; {} breach{plural} in the stage", m.breaches));
            }
            text
        };
        row("metrics", line(name, m));
        for (name, m) in metrics {
            row("", line(name, m));
        }
    }
    if let Some(flag) = flag {
        row("flag", flag.to_string());
    }
    row("plan", journal.plan_path.display().to_string());
    row("next", next_step(journal, running));
    out
}
