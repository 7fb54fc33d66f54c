//! The rollout plan: TOML text in, a validated `Plan` (or every problem with it) out.
//!
//! Reading happens in two steps, so that raw strings never reach the engine: `parse` turns the
//! spanned TOML tree into a `RawPlan` (each field typed on its own), then `validate` checks the
//! rules that span several fields and builds the model.

mod backend_fields;
pub mod condition;
pub mod diagnostic;
mod flags;
mod judge;
mod mirror;
pub mod model;
pub mod notify;
mod parse;
mod raw;
mod reader;
pub mod schema;
mod segments;
pub mod template;
mod validate;
pub mod window;

use std::path::Path;

use sha2::{Digest, Sha256};
use thiserror::Error;
use toml::de::DeTable;

pub use diagnostic::{Diagnostic, Severity, SourceFile};
pub use flags::{
    DEFAULT_CLEANUP_AFTER, FLAGD_STEPS_PER_PERCENT, FlagSpec, FlagdBackend,
    UNLEASH_STEPS_PER_PERCENT, UnleashBackend,
};
pub use judge::{Direction, Judge, PROMETHEUS_MAX_POINTS, default_max_breaches};
pub use mirror::{METHODS, SAFE_METHODS};
pub use model::*;
pub use notify::{Notify, NotifyKind, NotifyOn};
pub use segments::{AttributeTest, MAX_SEGMENTS, Segment, SegmentRule, SegmentSet};
pub use window::Window;

/// The outcome of checking one plan file: the plan when it is valid, and every diagnostic
/// (errors and warnings) in file order either way.
#[derive(Debug)]
pub struct Checked {
    pub file: SourceFile,
    pub plan: Option<Plan>,
    pub diagnostics: Vec<Diagnostic>,
}

impl Checked {
    pub fn errors(&self) -> usize {
        self.diagnostics.iter().filter(|d| d.is_error()).count()
    }

    pub fn warnings(&self) -> usize {
        self.diagnostics.len() - self.errors()
    }
}

#[derive(Debug, Error)]
#[error("cannot read {path}: {source}")]
pub struct ReadError {
    pub path: String,
    #[source]
    pub source: std::io::Error,
}

/// Reads and checks a plan file. Only an unreadable file is an `Err`; an invalid plan is a
/// `Checked` without a plan.
pub fn load(path: &Path) -> Result<Checked, ReadError> {
    let bytes = std::fs::read(path).map_err(|source| ReadError {
        path: path.display().to_string(),
        source,
    })?;
    let text = match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => {
            let offset = e.utf8_error().valid_up_to();
            let text = String::from_utf8_lossy(e.as_bytes()).into_owned();
            let d = Diagnostic::error("", offset..offset + 1, "the plan file is not valid UTF-8")
                .label("invalid byte")
                .help("save the file as UTF-8");
            return Ok(Checked {
                file: SourceFile::new(path, text),
                plan: None,
                diagnostics: vec![d],
            });
        }
    };
    Ok(check(SourceFile::new(path, text)))
}

/// Checks plan text that is already in memory.
pub fn check(file: SourceFile) -> Checked {
    let fingerprint = hex(&Sha256::digest(file.text.as_bytes()));
    let (root, syntax_errors) = DeTable::parse_recoverable(&file.text);
    if !syntax_errors.is_empty() {
        let diagnostics = syntax_diagnostics(&file.text, &syntax_errors);
        return Checked {
            file,
            plan: None,
            diagnostics,
        };
    }
    let cx = reader::Cx::new(&file.text);
    let table = reader::Table::root(&cx, &root);
    let raw = parse::read_plan(&table);
    table.finish(top_level_owner);
    let plan = validate::validate(&cx, raw, root.span(), fingerprint);
    let (mut diagnostics, redacted) = cx.finish();
    let mut file = file;
    file.redacted = redacted;
    // Stable order: by position, errors before warnings at the same place.
    diagnostics.sort_by_key(|d| (d.span.start, d.severity));
    // One rule can fire once per stage at a shared place (a default); say it once.
    let mut seen = Vec::with_capacity(diagnostics.len());
    diagnostics.retain(|d| {
        let first = !seen.contains(d);
        if first {
            seen.push(d.clone());
        }
        first
    });
    Checked {
        file,
        plan,
        diagnostics,
    }
}

/// TOML syntax errors as diagnostics. A table defined twice makes every key in its second
/// body a duplicate too; only the table is reported.
fn syntax_diagnostics(text: &str, errors: &[toml::de::Error]) -> Vec<Diagnostic> {
    let mut out = syntax_diagnostics_as_reported(text, errors);
    // The parser's recovery can report the same problem twice, and not in file order.
    out.sort_by_key(|d| d.span.start);
    out.dedup();
    out
}

fn syntax_diagnostics_as_reported(text: &str, errors: &[toml::de::Error]) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let mut duplicate_table_until: Option<usize> = None;
    for e in errors {
        let span = e.span().unwrap_or(0..0);
        let message = e.message().trim();
        if message != "duplicate key" {
            out.push(Diagnostic::error("", span, "invalid TOML").label(message.to_string()));
            continue;
        }
        if duplicate_table_until.is_some_and(|end| span.start < end) {
            continue;
        }
        let key = text.get(span.clone()).unwrap_or("");
        let line_start = text[..span.start.min(text.len())]
            .rfind('\n')
            .map_or(0, |i| i + 1);
        if text[line_start..].starts_with('[') {
            // The duplicate table's body runs to the next table header.
            let body = span.end.min(text.len());
            let next = text[body..].find("\n[").map_or(text.len(), |i| body + i);
            duplicate_table_until = Some(next);
        }
        out.push(
            Diagnostic::error("", span, format!("`{key}` is defined twice"))
                .label("duplicate key")
                .help("each key and table may be defined only once; merge the two definitions"),
        );
    }
    out
}

/// Fields people put at the top level that belong in a table.
fn top_level_owner(key: &str) -> Option<String> {
    match key {
        "interval" | "bake" | "max_hold" | "on_timeout" | "on_interrupt" | "approval"
        | "hook_timeout" | "stuck_after" => Some(format!(
            "`{key}` goes under [defaults] (or in a [[stages]] entry)"
        )),
        "weight" => Some("`weight` belongs to each [[stages]] entry".to_string()),
        "type" => Some("`type` belongs under [backend] or [sources.NAME]".to_string()),
        "source" => {
            Some("did you mean [sources.NAME]? (`source` is a field of each metric)".to_string())
        }
        "stage" | "metric" | "hook" => Some(format!("write the array of tables as [[{key}s]]")),
        _ => None,
    }
}

/// Lowercase hexadecimal, two digits a byte (digests, signatures).
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
