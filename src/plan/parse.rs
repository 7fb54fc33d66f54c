//! TOML text to `RawPlan`: every field read, typed and located; every problem recorded.

use super::backend_fields;
use toml::de::DeValue;

use super::condition::{self, Condition};
use super::diagnostic::{Diagnostic, Span};
use super::model::{
    HaltAction, HookEvent, MetricMode, OnNoData, Reduce, STATE_SCHEMES, StateConfig, Strategy,
};
use super::raw::*;
use super::reader::{At, Field, Table};
use super::template::Template;

const HALT_ACTIONS: [(&str, HaltAction); 2] = [
    ("rollback", HaltAction::Rollback),
    ("pause", HaltAction::Pause),
];

pub fn read_plan(root: &Table<'_, '_>) -> RawPlan {
    let mut plan = RawPlan {
        name: root
            .required("name", "name = \"checkout-api\"")
            .and_then(|f| f.get().string()),
        description: root
            .field("description")
            .and_then(|f| f.get().str().map(str::to_string)),
        strategy: root.field("strategy").and_then(|f| {
            let f = f.get();
            f.choice(&[
                ("canary", Strategy::Canary),
                ("blue-green", Strategy::BlueGreen),
            ])
            .map(|s| At::new(s, f.span()))
        }),
        ..RawPlan::default()
    };
    if let Some(table) = root.field("defaults").and_then(|f| f.get().table()) {
        plan.defaults = read_defaults(&table);
    }
    if let Some(table) = root.field("state").and_then(|f| f.get().table()) {
        plan.state = read_state(&table);
    }
    plan.backend = root
        .required("backend", "[backend] with type = \"nginx\"")
        .and_then(|f| f.get().table())
        .map(|table| backend_fields::read_backend(&table));
    if let Some(table) = root.field("sources").and_then(|f| f.get().table()) {
        plan.sources = table
            .entries()
            .into_iter()
            .filter_map(|(name, f)| read_source(name, &f))
            .collect();
        table.finish(|_| None);
    }
    if let Some(f) = root.field("metrics") {
        plan.metrics = tables(&f)
            .iter()
            .filter_map(|(path, f)| read_metric(path, f))
            .collect();
    }
    if let Some(f) = root.required("stages", "[[stages]] with weight = 100") {
        let stages = tables(&f)
            .iter()
            .filter_map(|(path, f)| read_stage(path, f))
            .collect();
        plan.stages = Some(At::new(stages, f.value.span()));
    }
    plan.notify = super::notify::read(root);
    plan.window = super::window::read(root);
    if let Some(f) = root.field("hooks") {
        plan.hooks = tables(&f)
            .iter()
            .filter_map(|(_, f)| {
                let table = f.get().table()?;
                let hook = RawPlanHook {
                    on: table
                        .required("on", "on = \"rolled-back\"")
                        .and_then(|f| f.get().choice(&HookEvent::ALL)),
                    hook: read_hook(&table),
                };
                table.finish(|_| None);
                Some(hook)
            })
            .collect();
    }
    plan
}

/// The elements of an array of tables, each with its indexed path (`stages[2]`).
fn tables<'a, 'i>(f: &Field<'a, 'i>) -> Vec<(String, Field<'a, 'i>)> {
    let Some(items) = f.get().array() else {
        return Vec::new();
    };
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            let path = format!("{}[{i}]", f.path);
            (path.clone(), Field::new(item.cx, item.value, path))
        })
        .collect()
}

fn spanned<T>(f: &Field<'_, '_>, value: Option<T>) -> Option<At<T>> {
    value.map(|v| At::new(v, f.span()))
}

fn read_defaults(table: &Table<'_, '_>) -> RawDefaults {
    let defaults = RawDefaults {
        interval: duration_at(table, "interval"),
        bake: duration_at(table, "bake"),
        max_hold: duration_at(table, "max_hold"),
        on_timeout: table
            .field("on_timeout")
            .and_then(|f| f.get().choice(&HALT_ACTIONS)),
        on_interrupt: table
            .field("on_interrupt")
            .and_then(|f| f.get().choice(&HALT_ACTIONS)),
        approval: table.field("approval").and_then(|f| f.get().bool()),
        hook_timeout: table
            .field("hook_timeout")
            .and_then(|f| f.get().positive_duration()),
        stuck_after: table
            .field("stuck_after")
            .and_then(|f| f.get().positive_duration()),
    };
    table.finish(|key| match key {
        "metrics" | "hooks" | "weight" => {
            Some(format!("`{key}` is set per stage, under [[stages]]"))
        }
        _ => None,
    });
    defaults
}

fn read_state(table: &Table<'_, '_>) -> StateConfig {
    let mut state = StateConfig::default();
    if let Some(f) = table.field("url") {
        let f = f.get();
        state.url = f.str().and_then(|url| state_url(&f, url));
    }
    if let Some(f) = table.field("lease") {
        let f = f.get();
        match f.duration() {
            Some(lease) if lease >= StateConfig::MIN_LEASE => state.lease = lease,
            Some(_) => f.cx.push(
                f.error(format!(
                    "a lease must last at least {}",
                    humantime::format_duration(StateConfig::MIN_LEASE)
                ))
                .label("too short")
                .help(format!(
                    "the holder renews it every third of its length, one store round trip each; for example: lease = \"{}\"",
                    humantime::format_duration(StateConfig::DEFAULT_LEASE)
                )),
            ),
            None => {}
        }
    }
    table.finish(|_| None);
    state
}

/// A state URL: a path, or one of the schemes rollout can keep state in.
fn state_url(f: &Field<'_, '_>, url: &str) -> Option<String> {
    let scheme = url.split_once("://").map(|(scheme, _)| scheme);
    match scheme {
        Some(s) if STATE_SCHEMES.contains(&s) => Some(url.to_string()),
        None if !url.is_empty() => Some(url.to_string()),
        _ => {
            let schemes: Vec<String> = STATE_SCHEMES.iter().map(|s| format!("{s}://")).collect();
            f.cx.push(
                f.error(format!("`{url}` is not a state URL rollout can use"))
                    .label("unknown scheme")
                    .help(format!(
                        "use a folder path, or {}; for example: url = \"s3://my-bucket/rollouts\"",
                        schemes.join(", ")
                    )),
            );
            None
        }
    }
}

fn duration_at(table: &Table<'_, '_>, key: &'static str) -> Option<At<std::time::Duration>> {
    let f = table.field(key)?;
    let f = f.get();
    spanned(&f, f.duration())
}

fn read_hook(table: &Table<'_, '_>) -> RawHook {
    RawHook {
        run: table
            .required("run", "run = [\"./scripts/notify.sh\"]")
            .and_then(|f| f.get().argv()),
        timeout: table
            .field("timeout")
            .and_then(|f| f.get().positive_duration()),
    }
}

/// A percentage field of a stage: a number from 0 to 100.
fn percent(f: &Field<'_, '_>, example: &str, meaning: &str) -> Option<At<f64>> {
    let f = f.get();
    let n = f.number(example)?;
    if (0.0..=100.0).contains(&n) {
        return Some(At::new(n, f.span()));
    }
    let key = f.path.rsplit('.').next().unwrap_or_default().to_string();
    f.cx.push(
        f.error(format!("{key} {n} is outside 0..=100"))
            .label("not a percentage")
            .help(format!("{meaning}, from 0 to 100")),
    );
    None
}

fn read_stage(path: &str, f: &Field<'_, '_>) -> Option<RawStage> {
    let table = f.get().table()?;
    let weight = table.required("weight", "weight = 25").and_then(|w| {
        percent(
            &w,
            "weight = 25",
            "a weight is the percent of traffic sent to the new version",
        )
    });
    let mirror = table.field("mirror").and_then(|m| {
        percent(
            &m,
            "mirror = 10",
            "mirror is the percent of requests also copied to the new version",
        )
    });
    let metrics = table.field("metrics").and_then(|m| {
        let m = m.get();
        spanned(&m, m.strings("metrics = [\"error-rate\"]"))
    });
    let hooks = table.field("hooks").map_or_else(Vec::new, |h| {
        tables(&h)
            .iter()
            .filter_map(|(_, h)| {
                let t = h.get().table()?;
                let hook = read_hook(&t);
                t.finish(|key| {
                    (key == "on").then(|| {
                        "stage hooks run when their stage starts; `on` is for plan-level [[hooks]]"
                            .to_string()
                    })
                });
                Some(hook)
            })
            .collect()
    });
    let stage = RawStage {
        path: path.to_string(),
        header: table.span(),
        weight,
        bake: duration_at(&table, "bake"),
        interval: duration_at(&table, "interval"),
        max_hold: table
            .field("max_hold")
            .and_then(|f| f.get().positive_duration()),
        on_timeout: table
            .field("on_timeout")
            .and_then(|f| f.get().choice(&HALT_ACTIONS)),
        approval: table.field("approval").and_then(|f| f.get().bool()),
        metrics,
        hooks,
        segments: table.field("segments").and_then(|s| {
            let s = s.get();
            spanned(&s, s.strings("segments = [\"beta-testers\"]"))
        }),
        mirror,
    };
    table.finish(|key| {
        (key == "on_interrupt")
            .then(|| "`on_interrupt` applies to the whole run: set it under [defaults]".into())
    });
    Some(stage)
}

fn read_source(name: At<String>, f: &Field<'_, '_>) -> Option<RawSource> {
    let table = f.get().table()?;
    let kind = table
        .required("type", "type = \"prometheus\"")
        .and_then(|t| {
            let t = t.get();
            spanned(&t, t.choice(&SourceType::ALL))
        });
    let is_command = kind
        .as_ref()
        .is_some_and(|k| k.value == SourceType::Command);
    // A command source has no url or headers: leaving them unread reports them as unknown.
    let url = match &kind {
        Some(k) if k.value != SourceType::Command => {
            table.required("url", "url = \"http://127.0.0.1:9090\"")
        }
        Some(_) => None,
        None => table.field("url"),
    };
    let url = url.and_then(|u| template(&u.get(), true));
    if let Some(headers) = table.peek("headers") {
        redact_header_values(&headers);
    }
    let headers = if is_command {
        Vec::new()
    } else {
        table
            .field("headers")
            .map_or_else(Vec::new, |h| read_headers(&h))
    };
    let source = RawSource {
        name,
        url,
        headers,
        timeout: table
            .field("timeout")
            .and_then(|f| f.get().positive_duration()),
        kind,
    };
    table.finish(|key| source_field_owner(key, is_command));
    Some(source)
}

fn source_field_owner(key: &str, is_command: bool) -> Option<String> {
    match key {
        "url" | "headers" if is_command => Some(format!(
            "a command source runs each metric's `run` command; it has no `{key}`"
        )),
        "query" | "baseline" | "path" | "baseline_path" | "run" | "baseline_run" | "reduce" => {
            Some(format!(
                "`{key}` belongs to each metric, under [[metrics]], not to its source"
            ))
        }
        _ => None,
    }
}

pub(super) fn read_headers(f: &Field<'_, '_>) -> Vec<(String, Template)> {
    let Some(table) = f.get().table() else {
        return Vec::new();
    };
    let headers = table
        .entries()
        .into_iter()
        .filter_map(|(name, value)| {
            let valid_name = !name.value.is_empty()
                && name
                    .value
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
            if !valid_name {
                f.cx.push(
                    Diagnostic::error(&value.path, name.span, "is not a valid HTTP header name")
                        .label("invalid header name")
                        .help("header names are letters, digits and `-`, e.g. Authorization"),
                );
                return None;
            }
            if literal_header_value(&value).is_some() {
                warn_literal_credential(&value, &name);
            }
            let template = template(&value, false)?;
            Some((name.value, template.value))
        })
        .collect();
    table.finish(|_| None);
    headers
}

/// Marks every literal header value under `headers` as secret, before anything is reported
/// about them or their neighbours: a diagnostic shows whole lines of the file.
pub(super) fn redact_header_values(headers: &Field<'_, '_>) {
    let DeValue::Table(table) = headers.value.get_ref() else {
        return;
    };
    for value in table.values() {
        let field = Field::new(headers.cx, value, headers.path());
        if literal_header_value(&field).is_some() {
            headers.cx.redact(value.span());
        }
    }
}

/// A header value with no `${VAR}` in it: possibly a secret written into the file.
fn literal_header_value<'a>(value: &Field<'a, '_>) -> Option<&'a str> {
    value.value.get_ref().as_str().filter(|v| !v.contains("${"))
}

/// Credentials belong in the environment, not in a plan file that is committed and shared.
fn warn_literal_credential(value: &Field<'_, '_>, name: &At<String>) {
    let lower = name.value.to_ascii_lowercase();
    let credential = [
        "authorization",
        "cookie",
        "token",
        "key",
        "secret",
        "password",
    ]
    .iter()
    .any(|word| lower.contains(word));
    if credential {
        value.cx.push(
            Diagnostic::warning(
                value.path(),
                value.span(),
                "a credential is written into the plan file",
            )
            .label("read it from the environment instead")
            .help(format!(
                "for example: {} = \"Bearer ${{PROM_TOKEN}}\"",
                name.value
            )),
        );
    }
}

/// A `${VAR}` template. URLs are checked for an http(s) scheme; header values are not shown.
pub(super) fn template(f: &Field<'_, '_>, is_url: bool) -> Option<At<Template>> {
    let text = f.str()?;
    match Template::parse(text) {
        Ok(t) => {
            // `${PROM_URL}` may hold the scheme; it is checked when the run resolves it.
            let scheme_known = text.starts_with("http://")
                || text.starts_with("https://")
                || text.starts_with("${");
            if is_url && !scheme_known {
                f.cx.push(
                    f.error("is not an http:// or https:// URL")
                        .label("expected a URL")
                        .help("for example: \"http://127.0.0.1:9090\""),
                );
                return None;
            }
            Some(At::new(t, f.span()))
        }
        Err(e) => {
            let span = inner_span(f, text, e.offset, e.len);
            f.cx.push(
                Diagnostic::error(f.path(), span, e.message)
                    .label("malformed variable")
                    .help("write environment variables as ${NAME}"),
            );
            None
        }
    }
}

/// The span of `len` bytes at `offset` inside a string value, when the string's text in the file
/// is the value itself (no escapes); otherwise the whole string.
pub fn inner_span(f: &Field<'_, '_>, value: &str, offset: usize, len: usize) -> Span {
    let span = f.span();
    let raw = f.cx.source(&span);
    let quote = if raw.starts_with("\"\"\"") || raw.starts_with("'''") {
        3
    } else {
        1
    };
    let body = raw.get(quote..raw.len().saturating_sub(quote));
    if body != Some(value) || offset > value.len() {
        return span;
    }
    // Whole characters only: a caret under half of `é` would not render.
    let mut end = (offset + len.max(1)).min(value.len());
    while !value.is_char_boundary(end) {
        end += 1;
    }
    let start = span.start + quote + offset;
    start..span.start + quote + end.max(offset)
}

fn read_metric(path: &str, f: &Field<'_, '_>) -> Option<RawMetric> {
    let table = f.get().table()?;
    let string = |key: &'static str| table.field(key).and_then(|f| f.get().string());
    let argv = |key: &'static str| {
        table.field(key).and_then(|f| {
            let f = f.get();
            spanned(&f, f.argv())
        })
    };
    let pointer = |key: &'static str| table.field(key).and_then(|f| json_pointer(&f.get()));
    let mut broken = false;
    let mut cond = |key: &'static str| {
        let f = table.field(key)?;
        let parsed = condition_at(&f.get());
        broken |= parsed.is_none();
        parsed
    };
    let metric = RawMetric {
        path: path.to_string(),
        header: table.span(),
        name: table
            .required("name", "name = \"error-rate\"")
            .and_then(|f| f.get().string()),
        source: table
            .required("source", "source = \"prom\"")
            .and_then(|f| f.get().string()),
        query: string("query"),
        baseline: string("baseline"),
        reduce: table.field("reduce").and_then(|f| {
            let f = f.get();
            let r = f.choice(&[
                ("max", Reduce::Max),
                ("min", Reduce::Min),
                ("sum", Reduce::Sum),
                ("avg", Reduce::Avg),
            ]);
            spanned(&f, r)
        }),
        path_pointer: pointer("path"),
        baseline_path: pointer("baseline_path"),
        url: table.field("url").and_then(|f| template(&f.get(), true)),
        run: argv("run"),
        baseline_run: argv("baseline_run"),
        advance: cond("advance"),
        rollback: cond("rollback"),
        rollback_after: table
            .field("rollback_after")
            .and_then(|f| f.get().count(1, "rollback_after = 2")),
        min_samples: table
            .field("min_samples")
            .and_then(|f| f.get().count(1, "min_samples = 3")),
        min_coverage: table.field("min_coverage").and_then(|f| fraction(&f.get())),
        on_no_data: table.field("on_no_data").and_then(|f| {
            f.get().choice(&[
                ("inconclusive", OnNoData::Inconclusive),
                ("fail", OnNoData::Fail),
                ("pass", OnNoData::Pass),
            ])
        }),
        mode: table.field("mode").and_then(|f| {
            f.get()
                .choice(&[("enforce", MetricMode::Enforce), ("warn", MetricMode::Warn)])
        }),
        broken_conditions: broken,
        judge: super::judge::read(&table),
        written: QUERY_FIELDS
            .into_iter()
            .filter(|key| table.peek(key).is_some())
            .collect(),
    };
    table.finish(|key| match key {
        "interval" | "bake" | "max_hold" => Some(format!(
            "`{key}` is set under [defaults] or per stage, not per metric"
        )),
        "headers" | "timeout" => Some(format!(
            "`{key}` belongs to the metric's source, under [sources.NAME]"
        )),
        _ => None,
    });
    Some(metric)
}

/// The fields of a metric that depend on its source's type.
const QUERY_FIELDS: [&str; 8] = [
    "query",
    "baseline",
    "reduce",
    "path",
    "baseline_path",
    "url",
    "run",
    "baseline_run",
];

fn fraction(f: &Field<'_, '_>) -> Option<f64> {
    let n = f.number("min_coverage = 0.5")?;
    if (0.0..=1.0).contains(&n) {
        return Some(n);
    }
    f.cx.push(
        f.error(format!("{n} is not a fraction between 0 and 1"))
            .label("out of range")
            .help("min_coverage is a share of measurements: 0.5 means half of them"),
    );
    None
}

fn condition_at(f: &Field<'_, '_>) -> Option<At<Condition>> {
    let text = f.str()?;
    match condition::parse(text) {
        Ok(c) => Some(At::new(c, f.span())),
        Err(e) => {
            let span = inner_span(f, text, e.offset, e.len);
            let mut d = Diagnostic::error(f.path(), span, format!("invalid condition `{text}`"))
                .label(e.message);
            if let Some(help) = e.help {
                d = d.help(help);
            }
            f.cx.push(d);
            None
        }
    }
}

/// A JSON pointer (RFC 6901): empty, or `/`-separated tokens where `~` escapes only `~0` and `~1`.
fn json_pointer(f: &Field<'_, '_>) -> Option<At<String>> {
    let text = f.str()?;
    let problem = if !text.is_empty() && !text.starts_with('/') {
        Some((0, "a JSON pointer starts with `/`"))
    } else {
        text.match_indices('~')
            .find(|(i, _)| !matches!(text.as_bytes().get(i + 1), Some(b'0' | b'1')))
            .map(|(i, _)| (i, "`~` in a JSON pointer must be followed by 0 or 1"))
    };
    match problem {
        None => Some(At::new(text.to_string(), f.span())),
        Some((offset, message)) => {
            f.cx.push(
                Diagnostic::error(f.path(), inner_span(f, text, offset, 1), message)
                    .label("invalid JSON pointer")
                    .help("for example: \"/canary/latency_p99_ms\" (write `~1` for `/` and `~0` for `~` inside a key)"),
            );
            None
        }
    }
}
