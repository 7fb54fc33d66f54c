use serde::Serialize;

use rollout::plan::diagnostic::JsonDiagnostic;

use super::args::{OutputFormat, ValidateArgs};
use super::{Exit, count_summary};

#[derive(Serialize)]
struct FileResult {
    file: String,
    valid: bool,
    errors: usize,
    warnings: usize,
    diagnostics: Vec<JsonDiagnostic>,
    /// `--live`: each metric queried once.
    #[serde(skip_serializing_if = "Option::is_none")]
    metrics: Option<Vec<super::live::Row>>,
}

/// Checks every plan and reports every problem; touches nothing and needs no network.
pub fn validate(args: &ValidateArgs, color: bool) -> anyhow::Result<Exit> {
    let mut all_valid = true;
    let mut json_files = Vec::new();
    let checked: Vec<_> = args
        .plans
        .iter()
        .map(|p| (p, rollout::plan::load(p)))
        .collect();
    for (path, result) in &checked {
        let checked = match result {
            Ok(checked) => checked,
            Err(e) => {
                all_valid = false;
                match args.output {
                    OutputFormat::Human => eprintln!("error: {e}"),
                    OutputFormat::Json => json_files.push(FileResult {
                        file: path.display().to_string(),
                        valid: false,
                        errors: 1,
                        warnings: 0,
                        diagnostics: vec![JsonDiagnostic::whole_file(path, &e.to_string())],
                        metrics: None,
                    }),
                }
                continue;
            }
        };
        let valid = checked.plan.is_some();
        all_valid &= valid;
        // A promoted flag past its cleanup_after, from the local journal (no network).
        let stale = checked
            .plan
            .as_ref()
            .and_then(|plan| super::hygiene::stale_flag(&checked.file, plan));
        let mut diagnostics: Vec<_> = checked.diagnostics.iter().chain(&stale).cloned().collect();
        diagnostics.sort_by_key(|d| (d.span.start, d.severity));
        let warnings = checked.warnings() + usize::from(stale.is_some());
        let live = match (&checked.plan, args.live) {
            (Some(plan), true) => Some(live_check(plan)?),
            _ => None,
        };
        all_valid &= live
            .as_ref()
            .is_none_or(|rows| rows.iter().all(|r| r.answered));
        match args.output {
            OutputFormat::Human => {
                eprint!("{}", checked.file.render(&diagnostics, color));
                let verdict = if valid { "valid" } else { "invalid" };
                let counts = count_summary(checked.errors(), warnings);
                eprintln!("{}: {verdict} ({counts})", path.display());
                if let Some(rows) = &live {
                    print!(
                        "{}",
                        super::live::render(rows, super::plan_cmd::output_width())
                    );
                    let unanswered = rows.iter().filter(|r| !r.answered).count();
                    eprintln!(
                        "{}: {} of {} metrics answered with a value",
                        path.display(),
                        rows.len() - unanswered,
                        rows.len()
                    );
                }
            }
            OutputFormat::Json => json_files.push(FileResult {
                file: path.display().to_string(),
                valid,
                errors: checked.errors(),
                warnings,
                diagnostics: diagnostics
                    .iter()
                    .map(|d| checked.file.to_json(d))
                    .collect(),
                metrics: live,
            }),
        }
    }
    if args.output == OutputFormat::Json {
        let out = serde_json::json!({ "valid": all_valid, "files": json_files });
        println!("{}", serde_json::to_string_pretty(&out)?);
    }
    Ok(if all_valid {
        Exit::Success
    } else {
        Exit::Invalid
    })
}

/// `--live` for one valid plan; probes that cannot be set up (a missing variable) are one row.
fn live_check(plan: &rollout::plan::Plan) -> anyhow::Result<Vec<super::live::Row>> {
    match super::runtime()?.block_on(super::live::check(plan)) {
        Ok(rows) => Ok(rows),
        Err(e) => Ok(vec![super::live::setup_failed(&format!(
            "{e}; nothing was queried"
        ))]),
    }
}
