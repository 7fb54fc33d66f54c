//! GitHub Actions: the decision, warnings and failures as workflow annotations (`::error
//! title=...::message`), and a Markdown summary of the run for `$GITHUB_STEP_SUMMARY`: the
//! stages, the decision, each metric's last values and verdicts, and for a paused run the
//! commands that continue it.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::SystemTime;

use super::Sink;
use super::commands::Commands;
use super::text;
use crate::event::{Event, Measurement, Outcome, OutcomeKind, Reporter, Stamped};
use crate::plan::Plan;

/// Escapes a workflow command's message: `%`, CR and LF would end or change the command.
pub fn escape_data(text: &str) -> String {
    text.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// Escapes a workflow command's property value: as its message, and `:` and `,` too.
pub fn escape_property(text: &str) -> String {
    escape_data(text).replace(':', "%3A").replace(',', "%2C")
}

/// `::LEVEL title=TITLE::MESSAGE`.
pub fn annotation(level: &str, title: &str, message: &str) -> String {
    format!(
        "::{level} title={}::{}",
        escape_property(title),
        escape_data(message)
    )
}

#[derive(Default)]
struct Stage {
    started: Option<SystemTime>,
    ended: Option<SystemTime>,
    passed: bool,
    last: BTreeMap<String, Measurement>,
}

#[derive(Default)]
struct Seen {
    stages: BTreeMap<usize, Stage>,
    outcome: Option<Outcome>,
}

pub struct GithubReporter {
    name: String,
    /// (number, weight with its segments and mirror) of every stage in the plan.
    plan_stages: Vec<(usize, String)>,
    commands: Commands,
    annotations: Mutex<Sink>,
    seen: Mutex<Seen>,
}

impl GithubReporter {
    pub fn new(plan: &Plan, commands: Commands, annotations: Sink) -> Self {
        let plan_stages = plan
            .stages
            .iter()
            .map(|s| (s.number, super::plan_table::weight(plan, s)))
            .collect();
        GithubReporter {
            name: plan.name.as_str().to_string(),
            plan_stages,
            commands,
            annotations: Mutex::new(annotations),
            seen: Mutex::new(Seen::default()),
        }
    }

    fn annotate(&self, level: &str, title: &str, message: &str) {
        let mut out = self.annotations.lock().expect("reporter lock");
        let _ = writeln!(out, "{}", annotation(level, title, message));
        let _ = out.flush();
    }

    /// The annotation an event deserves, if any.
    fn annotation_for(&self, event: &Event) -> Option<(&'static str, String, String)> {
        let name = &self.name;
        Some(match event {
            Event::Finished(outcome) => {
                let (level, what) = decision(outcome);
                (
                    level,
                    format!("rollout {name}: {what}"),
                    outcome.reason.clone(),
                )
            }
            Event::Warning { message } => ("warning", format!("rollout {name}"), message.clone()),
            Event::Stuck { .. } | Event::HookFinished { ok: false, .. } => (
                "warning",
                format!("rollout {name}"),
                text::line(event, text::Verbosity::Normal)?,
            ),
            _ => return None,
        })
    }

    /// The step summary, in Markdown.
    pub fn summary(&self) -> String {
        let seen = self.seen.lock().expect("reporter lock");
        let mut out = String::new();
        let heading = seen
            .outcome
            .as_ref()
            .map_or("did not finish", |o| decision(o).1);
        out.push_str(&format!("## rollout {}: {heading}\n\n", self.name));
        out.push_str("| Stage | Weight | Time | Result |\n|---|---|---|---|\n");
        for (number, weight) in &self.plan_stages {
            let stage = seen.stages.get(number);
            let time = stage
                .and_then(|s| s.ended?.duration_since(s.started?).ok())
                .map_or_else(|| "-".to_string(), text::duration);
            let result = match stage {
                None => "not reached",
                Some(s) if s.passed => "passed",
                Some(_) => seen.outcome.as_ref().map_or("running", |o| decision(o).1),
            };
            out.push_str(&format!("| {number} | {weight} | {time} | {result} |\n"));
        }
        let reason = seen
            .outcome
            .as_ref()
            .map_or("the run did not finish", |o| o.reason.as_str());
        out.push_str(&format!(
            "\n**Decision:** {}\n",
            text::markdown_cell(reason)
        ));
        metrics_table(&mut out, &seen.stages);
        if let Some(outcome) = &seen.outcome
            && outcome.kind == OutcomeKind::Paused
        {
            out.push_str(&self.paused_commands(outcome));
        }
        out
    }

    fn paused_commands(&self, outcome: &Outcome) -> String {
        let weight = outcome
            .weight
            .map_or_else(|| "its current weight".to_string(), text::percent);
        format!(
            "\n### Held at {weight}\n\nTo return everyone to the stable version:\n\n```sh\n{}\n```\n\nTo go on from where it stopped:\n\n```sh\n{}\n```\n",
            self.commands.rollback(),
            self.commands.resume()
        )
    }
}

/// The annotation level and the word for an outcome.
fn decision(outcome: &Outcome) -> (&'static str, &'static str) {
    match outcome.kind {
        OutcomeKind::Promoted if outcome.reason.starts_with("Dry run") => {
            ("notice", "dry run complete")
        }
        OutcomeKind::Promoted => ("notice", "promoted"),
        OutcomeKind::Paused => ("warning", "paused"),
        OutcomeKind::RolledBack => ("error", "rolled back"),
        OutcomeKind::Failed => ("error", "could not proceed"),
        OutcomeKind::RollbackFailed => ("error", "ROLLBACK FAILED"),
        OutcomeKind::Undecided => ("warning", "undecided"),
    }
}

fn metrics_table(out: &mut String, stages: &BTreeMap<usize, Stage>) {
    let rows: Vec<(usize, &Measurement)> = stages
        .iter()
        .flat_map(|(n, s)| s.last.values().map(move |m| (*n, m)))
        .collect();
    if rows.is_empty() {
        return;
    }
    out.push_str("\n### Metrics (last measurement in each stage)\n\n");
    out.push_str("| Stage | Metric | Value | Baseline | Verdict |\n|---|---|---|---|---|\n");
    for (stage, m) in rows {
        let shown = |v: Option<f64>| {
            v.map_or_else(
                || "-".to_string(),
                |v| crate::plan::show_reading(v, m.shown_as_percent),
            )
        };
        let mut verdict = m.verdict.as_str().to_string();
        if m.verdict == crate::event::Verdict::Breach && !m.warn_only {
            verdict.push_str(&format!(" ({} in a row)", m.breach_streak));
        }
        if m.warn_only {
            verdict.push_str(" [warn only]");
        }
        if let Some(detail) = &m.detail {
            verdict.push_str(&format!(": {detail}"));
        }
        out.push_str(&format!(
            "| {stage} | {} | {} | {} | {} |\n",
            m.metric,
            shown(m.value),
            shown(m.baseline),
            text::markdown_cell(&verdict)
        ));
    }
}

impl Reporter for GithubReporter {
    fn report(&self, stamped: &Stamped) {
        if let Some((level, title, message)) = self.annotation_for(&stamped.event) {
            self.annotate(level, &title, &message);
        }
        let mut seen = self.seen.lock().expect("reporter lock");
        match &stamped.event {
            Event::StageStarted { stage, .. } => {
                seen.stages.entry(*stage).or_default().started = Some(stamped.time);
            }
            Event::Measured(m) => {
                let stage = seen.stages.entry(m.stage).or_default();
                stage.last.insert(m.metric.clone(), m.clone());
            }
            Event::StagePassed { stage, .. } => {
                let stage = seen.stages.entry(*stage).or_default();
                stage.passed = true;
                stage.ended = Some(stamped.time);
            }
            Event::Finished(outcome) => {
                for stage in seen.stages.values_mut().filter(|s| s.ended.is_none()) {
                    stage.ended = Some(stamped.time);
                }
                seen.outcome = Some(outcome.clone());
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests;
