//! The feature-flag backends' `[backend]` fields (`type = "flagd"`, `type = "unleash"`) and
//! what validation asks of a flag plan: weights the flag can express, and its clean-up date.
//!
//! A flag backend's weight is the percent of users (by targeting key) who get the new variant.

use std::path::PathBuf;
use std::time::Duration;

use super::diagnostic::{Diagnostic, Span};
use super::model::{Stage, Weight};
use super::reader::{Cx, Table};
use super::template::Template;

/// flagd `fractional` weights are integers: the split is written out of 100,000, so 0.001% is
/// the smallest step (the same as nginx's).
pub const FLAGD_STEPS_PER_PERCENT: u64 = 1000;
/// Unleash clients bucket users into 1..=100 and compare with the rollout percentage: anything
/// finer than a whole percent would be rounded by every client.
pub const UNLEASH_STEPS_PER_PERCENT: u64 = 1;

/// How long a fully rolled-out flag may stay in the code before `rollout validate` reminds
/// people to remove it.
pub const DEFAULT_CLEANUP_AFTER: Duration = Duration::from_secs(30 * 24 * 3600);
const DEFAULT_UNLEASH_TIMEOUT: Duration = Duration::from_secs(10);

/// `type = "flagd"`: one flag in a flagd flag-definition file.
#[derive(Debug, Clone, PartialEq)]
pub struct FlagdBackend {
    pub flags_file: PathBuf,
    pub flag: String,
    pub on_variant: String,
    pub off_variant: String,
    pub cleanup_after: Duration,
}

/// `type = "unleash"`: one flag in one environment, through the Admin API.
#[derive(Debug, Clone, PartialEq)]
pub struct UnleashBackend {
    /// The server's base URL (the Admin API is under `api/admin/`).
    pub url: Template,
    /// An admin API token: a secret, resolved when the run starts.
    pub token: Template,
    pub project: String,
    pub environment: String,
    pub flag: String,
    pub stickiness: String,
    /// How long one request may take.
    pub timeout: Duration,
    pub cleanup_after: Duration,
}

/// The flag a flag backend rolls out, for people and for clean-up reminders.
pub trait FlagSpec {
    fn flag_name(&self) -> String;
    fn cleanup_after(&self) -> Duration;
}

impl FlagSpec for FlagdBackend {
    fn flag_name(&self) -> String {
        format!(
            "flagd flag `{}` in {}",
            self.flag,
            self.flags_file.display()
        )
    }
    fn cleanup_after(&self) -> Duration {
        self.cleanup_after
    }
}

impl FlagSpec for UnleashBackend {
    fn flag_name(&self) -> String {
        format!(
            "Unleash flag `{}` ({}, project {})",
            self.flag, self.environment, self.project
        )
    }
    fn cleanup_after(&self) -> Duration {
        self.cleanup_after
    }
}

fn string(table: &Table<'_, '_>, key: &'static str, example: &str) -> Option<String> {
    let f = table.required(key, example)?;
    let f = f.get();
    let text = f.str()?;
    if text.trim().is_empty() {
        table.push(f.error("must not be empty").label("empty"));
        return None;
    }
    Some(text.to_string())
}

fn optional(table: &Table<'_, '_>, key: &'static str, default: &str) -> Option<String> {
    match table.field(key) {
        None => Some(default.to_string()),
        Some(_) => string(table, key, ""),
    }
}

fn cleanup_after(table: &Table<'_, '_>) -> Option<Duration> {
    match table.field("cleanup_after") {
        None => Some(DEFAULT_CLEANUP_AFTER),
        Some(f) => f.get().positive_duration(),
    }
}

pub fn flagd(table: &Table<'_, '_>) -> Option<FlagdBackend> {
    let flags_file = string(
        table,
        "flags_file",
        "flags_file = \"/etc/flagd/flags.json\"",
    );
    let flag = string(table, "flag", "flag = \"new-checkout\"");
    let on_variant = optional(table, "on_variant", "on");
    let off_variant = optional(table, "off_variant", "off");
    let cleanup_after = cleanup_after(table);
    let (Some(flags_file), Some(flag), Some(on_variant), Some(off_variant), Some(cleanup_after)) =
        (flags_file, flag, on_variant, off_variant, cleanup_after)
    else {
        return None;
    };
    if on_variant == off_variant {
        let f = table
            .field("off_variant")
            .or_else(|| table.field("on_variant"))?;
        table.push(
            f.get()
                .error(format!("`on_variant` and `off_variant` are both \"{on_variant}\""))
                .label("the same variant")
                .help("the new variant and the one everyone gets on rollback must differ, e.g. on_variant = \"on\" and off_variant = \"off\""),
        );
        return None;
    }
    Some(FlagdBackend {
        flags_file: PathBuf::from(flags_file),
        flag,
        on_variant,
        off_variant,
        cleanup_after,
    })
}

/// Characters Unleash allows in flag, project and environment names: they go into URL paths.
fn url_safe(text: &str) -> bool {
    text.chars()
        .all(|c| c.is_ascii_alphanumeric() || "-._~".contains(c))
}

fn name(
    table: &Table<'_, '_>,
    key: &'static str,
    example: &str,
    default: Option<&str>,
) -> Option<String> {
    let value = match default {
        Some(default) => optional(table, key, default)?,
        None => string(table, key, example)?,
    };
    if url_safe(&value) {
        return Some(value);
    }
    table.push(
        table
            .field(key)?
            .get()
            .error(format!("`{value}` is not a name Unleash accepts"))
            .label("not URL-friendly")
            .help("Unleash names are letters, digits, `-`, `_`, `.` and `~`"),
    );
    None
}

pub fn unleash(table: &Table<'_, '_>) -> Option<UnleashBackend> {
    let url = url(table);
    let token = token(table);
    let project = name(table, "project", "", Some("default"));
    let environment = name(table, "environment", "environment = \"production\"", None);
    let flag = name(table, "flag", "flag = \"new-checkout\"", None);
    let stickiness = optional(table, "stickiness", "default");
    let timeout = match table.field("timeout") {
        None => Some(DEFAULT_UNLEASH_TIMEOUT),
        Some(f) => f.get().positive_duration(),
    };
    let cleanup_after = cleanup_after(table);
    Some(UnleashBackend {
        url: url?,
        token: token?,
        project: project?,
        environment: environment?,
        flag: flag?,
        stickiness: stickiness?,
        timeout: timeout?,
        cleanup_after: cleanup_after?,
    })
}

fn url(table: &Table<'_, '_>) -> Option<Template> {
    let f = table.required("url", "url = \"https://unleash.example.com\"")?;
    let f = f.get();
    let text = f.str()?;
    let parsed = template(&f, text)?;
    // `${UNLEASH_URL}` may hold the scheme; it is checked when the run resolves it.
    if text.starts_with("http://") || text.starts_with("https://") || text.starts_with("${") {
        return Some(parsed);
    }
    table.push(
        f.error("is not an http:// or https:// URL")
            .label("expected a URL")
            .help("the Unleash server's address, e.g. \"https://unleash.example.com\""),
    );
    None
}

/// The token is a secret: a literal one is never shown in a diagnostic, and is warned about.
fn token(table: &Table<'_, '_>) -> Option<Template> {
    if let Some(f) = table.peek("token")
        && f.value
            .get_ref()
            .as_str()
            .is_some_and(|t| !t.contains("${"))
    {
        f.cx.redact(f.span());
    }
    let f = table.required("token", "token = \"${UNLEASH_TOKEN}\"")?;
    let f = f.get();
    let text = f.str()?;
    let parsed = template(&f, text)?;
    if parsed.vars().next().is_none() {
        table.push(
            Diagnostic::warning(
                f.path(),
                f.span(),
                "a credential is written into the plan file",
            )
            .label("read it from the environment instead")
            .help("for example: token = \"${UNLEASH_TOKEN}\""),
        );
    }
    Some(parsed)
}

fn template(f: &super::reader::Field<'_, '_>, text: &str) -> Option<Template> {
    match Template::parse(text) {
        Ok(t) => Some(t),
        Err(e) => {
            let span = super::parse::inner_span(f, text, e.offset, e.len);
            f.cx.push(
                Diagnostic::error(f.path(), span, e.message)
                    .label("malformed variable")
                    .help("write environment variables as ${NAME}"),
            );
            None
        }
    }
}

/// A weight the flag cannot express is refused rather than rounded: every report would say
/// one share while users got another.
pub fn check_step(
    cx: &Cx,
    stage: &Stage,
    path: String,
    span: Span,
    backend: &str,
    steps_per_percent: u64,
) {
    if stage.weight.in_steps(steps_per_percent).is_some() {
        return;
    }
    let steps = steps_per_percent as f64;
    let scaled = stage.weight.percent() * steps;
    let (below, above) = (scaled.floor() / steps, scaled.ceil() / steps);
    let step = Weight::new(1.0 / steps).map_or(String::new(), |w| w.to_string());
    cx.push(
        Diagnostic::error(
            path,
            span,
            format!(
                "stage {}'s weight {} is finer than the {backend} backend can split users",
                stage.number, stage.weight
            ),
        )
        .label(format!("not a multiple of {step}"))
        .help(format!(
            "the {backend} backend's smallest step is {step}; use {below} or {above}"
        )),
    );
}
