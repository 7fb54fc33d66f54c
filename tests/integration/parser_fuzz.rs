//! Property tests of the plan reader: no input, however malformed, makes `plan::check` or the
//! diagnostic renderer panic, and every diagnostic points at text that exists, so its caret can
//! be drawn.
//!
//! The inputs come from four directions: arbitrary strings, valid plans mutated at random,
//! soups of TOML fragments, and well-formed TOML built from the plan's own vocabulary (which gets
//! past the TOML parser and into validation). Each property runs a modest number of cases so the
//! whole file stays within a few seconds in a debug build; set `PROPTEST_CASES` for a longer
//! campaign, e.g. `PROPTEST_CASES=20000 cargo test --release --test integration parser_fuzz`.
//!
//! The defects these properties found are pinned by example-based tests, after
//! `pathological_inputs_do_not_panic`.

use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::TestCaseError;
use rollout::plan::{Checked, SourceFile, check, condition};

/// The name every fuzzed plan is checked under; each rendered diagnostic must name it.
const FILE: &str = "plans/fuzz.toml";

/// A canary on nginx, gated by a Prometheus metric with a baseline and an http-json metric,
/// with a migration stage, stage hooks and plan-level hooks.
const NGINX_CANARY: &str = r#"name = "checkout-api"
description = "v2.3.0, new pricing"
strategy = "canary"

[defaults]
interval = "30s"
bake = "5m"
max_hold = "30m"
on_timeout = "rollback"
on_interrupt = "pause"

[backend]
type = "nginx"
upstream_file = "/etc/nginx/conf.d/checkout-upstream.conf"
upstream = "checkout"
stable = ["10.0.0.1:8080", "10.0.0.2:8080"]
canary = ["10.0.1.1:8080"]
extra = ["keepalive 32;"]
pid_file = "/run/nginx.pid"

[sources.prom]
type = "prometheus"
url = "http://127.0.0.1:9090"
timeout = "5s"
headers = { Authorization = "Bearer ${PROM_TOKEN}" }

[sources.stats]
type = "http-json"
url = "http://127.0.0.1:8081/stats"

[[metrics]]
name = "error-rate"
source = "prom"
query = 'sum(rate(http_requests_total{track="canary",code=~"5.."}[1m])) / sum(rate(http_requests_total{track="canary"}[1m]))'
baseline = 'sum(rate(http_requests_total{track="stable",code=~"5.."}[1m])) / sum(rate(http_requests_total{track="stable"}[1m]))'
advance = "<= baseline * 1.1 + 0.001"
rollback = "> 5%"
rollback_after = 2
min_samples = 3
min_coverage = 0.5
on_no_data = "inconclusive"
mode = "enforce"

[[metrics]]
name = "p99-latency"
source = "stats"
path = "/canary/latency_p99_ms"
baseline_path = "/stable/latency_p99_ms"
advance = "< 300"
rollback = "> baseline * 2 + 100"
on_no_data = "fail"

[[stages]]
weight = 0
[[stages.hooks]]
run = ["./scripts/migrate.sh", "--expand"]
timeout = "10m"

[[stages]]
weight = 1
bake = "10m"
metrics = ["error-rate"]

[[stages]]
weight = 25
[[stages.hooks]]
run = ["./scripts/smoke.sh", "--weight", "25"]

[[stages]]
weight = 50
approval = true

[[stages]]
weight = 100
bake = "15m"
metrics = ["p99-latency"]

[[hooks]]
on = "rolled-back"
run = ["./scripts/notify.sh", "rolled back"]

[[hooks]]
on = "promoted"
run = ["./scripts/notify.sh", "promoted"]
timeout = "30s"
"#;

/// A blue-green switch through the command backend, gated by command metrics.
const COMMAND_BLUE_GREEN: &str = r#"name = "billing-worker"
strategy = "blue-green"

[defaults]
bake = "2m"
interval = "10s"
on_timeout = "pause"

[backend]
type = "command"
set_weight = ["./scripts/set-weight.sh", "billing"]
promote = ["./scripts/promote.sh"]
rollback = ["./scripts/rollback.sh"]
verify = ["./scripts/verify.sh"]

[sources.probe]
type = "command"

[[metrics]]
name = "queue-lag"
source = "probe"
run = ["./scripts/queue-lag.sh", "--canary"]
baseline_run = ["./scripts/queue-lag.sh", "--stable"]
advance = "<= 100"
rollback = "> baseline * 3 + 1000"
rollback_after = 3

[[metrics]]
name = "failed-jobs"
source = "probe"
run = ["./scripts/failed-jobs.sh"]
rollback = ">= 10"
mode = "warn"

[[stages]]
weight = 0
[[stages.hooks]]
run = ["./scripts/warm-up.sh"]
timeout = "1m"

[[stages]]
weight = 100
bake = "20m"
"#;

/// A canary with decimal weights, a per-metric URL override, a reduced Prometheus vector and
/// a metric without `advance`.
const NGINX_DECIMAL: &str = r#"name = "search"

[backend]
type = "nginx"
upstream_file = "/tmp/search-upstream.conf"
upstream = "search_v1"
stable = ["127.0.0.1:9001"]
canary = ["127.0.0.1:9002", "127.0.0.1:9003"]
test_command = ["nginx", "-t", "-c", "/etc/nginx/nginx.conf"]
reload_command = ["nginx", "-s", "reload"]
verify_command = ["curl", "-fsS", "http://127.0.0.1/healthz"]

[sources.prom]
type = "prometheus"
url = "https://prom.example.com"

[sources.json]
type = "http-json"
url = "http://${STATS_HOST}:8081/stats"
headers = { X-Api-Key = "${STATS_KEY}" }

[[metrics]]
name = "saturation"
source = "prom"
query = 'max by (instance) (process_cpu_seconds_total{job="search"})'
reduce = "max"
rollback = "> 0.9"

[[metrics]]
name = "hit-ratio"
source = "json"
url = "http://127.0.0.1:8082/other"
path = "/cache/hit~1ratio"
advance = ">= 80%"
rollback = "< (50 - 10) / 100"
min_samples = 2

[[stages]]
weight = 0.1
interval = "15s"
[[stages]]
weight = 5
max_hold = "1h"
on_timeout = "pause"
[[stages]]
weight = 100
"#;

const VALID_PLANS: [&str; 3] = [NGINX_CANARY, COMMAND_BLUE_GREEN, NGINX_DECIMAL];

// ---------------------------------------------------------------------------------------------
// The properties every input must satisfy.

/// Checks `text` and asserts what must hold for any input: no panic (a panic fails the case and
/// is shrunk by proptest), spans inside the text on character boundaries, and a rendering of
/// each diagnostic that names the file, at the line and column the JSON output reports.
fn check_text(text: &str) -> Result<Checked, TestCaseError> {
    let checked = check(SourceFile::new(FILE, text));
    let len = text.len();
    for d in &checked.diagnostics {
        let span = &d.span;
        prop_assert!(
            span.start <= span.end && span.end <= len,
            "span {span:?} of `{}` is outside the text (len {len})",
            d.message
        );
        prop_assert!(
            text.is_char_boundary(span.start) && text.is_char_boundary(span.end),
            "span {span:?} of `{}` splits a character",
            d.message
        );
        prop_assert!(!d.message.is_empty(), "a diagnostic without a message");
        let json = checked.file.to_json(d);
        prop_assert!(json.line >= 1 && json.column >= 1);
        prop_assert!((json.end_line, json.end_column) >= (json.line, json.column));
        let one = checked.file.render(std::slice::from_ref(d), false);
        let named = one.contains(&format!("--> {FILE}:"));
        prop_assert!(
            named,
            "the rendering of `{}` does not name {FILE}:\n{one}",
            d.message
        );
        // At the very end of the file the renderer shows the end of the last line where the
        // JSON says "the line after it"; elsewhere they agree.
        if span.start < len {
            let location = format!("--> {FILE}:{}:{}\n", json.line, json.column);
            prop_assert!(
                one.contains(&location),
                "the rendering of `{}` is not at {location}{one}",
                d.message
            );
        }
    }
    // Syntax errors come from the TOML parser's recovery, which can repeat itself: see
    // `syntax_errors_are_reported_once`.
    let validation = checked
        .diagnostics
        .iter()
        .filter(|d| d.message != "invalid TOML");
    for (i, d) in validation.clone().enumerate() {
        prop_assert!(
            !validation.clone().take(i).any(|e| e == d),
            "reported twice: {}",
            checked.file.render(std::slice::from_ref(d), false)
        );
    }
    if checked.plan.is_some() {
        prop_assert_eq!(checked.errors(), 0, "a plan came with errors");
    } else {
        prop_assert!(checked.errors() > 0, "no plan, yet no error says why");
    }
    let plain = checked.file.render(&checked.diagnostics, false);
    let locations = plain.matches(&format!("--> {FILE}:")).count();
    prop_assert!(
        locations >= checked.diagnostics.len(),
        "{} diagnostics but {locations} locations in:\n{plain}",
        checked.diagnostics.len()
    );
    let _ = checked.file.render(&checked.diagnostics, true);
    Ok(checked)
}

// ---------------------------------------------------------------------------------------------
// Strategy (b): valid plans, mutated.

#[derive(Debug, Clone)]
enum Mutation {
    Delete {
        at: usize,
        len: usize,
    },
    Insert {
        at: usize,
        text: String,
    },
    Replace {
        at: usize,
        len: usize,
        text: String,
    },
    DuplicateLine(usize),
    DropLine(usize),
    SwapLines(usize, usize),
    /// Swaps the values of two `key = value` lines.
    SwapValues(usize, usize),
    /// Replaces the value of a `key = value` line with an arbitrary TOML value.
    ReplaceValue {
        nth: usize,
        value: String,
    },
    InjectStages(usize),
    DeepNest {
        line: usize,
        depth: usize,
        kind: usize,
    },
    HugeNumber {
        nth: usize,
        number: String,
    },
    WeirdDuration {
        nth: usize,
        duration: String,
    },
    ConditionSoup {
        nth: usize,
        soup: String,
        literal: bool,
    },
    TemplateSoup {
        nth: usize,
        soup: String,
    },
}

fn floor_boundary(text: &str, at: usize) -> usize {
    let mut at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

fn pick(n: usize, len: usize) -> Option<usize> {
    (len > 0).then(|| n % len)
}

/// The byte ranges of the values of `key = value` lines (to the end of the line), with keys.
fn values(text: &str) -> Vec<(String, std::ops::Range<usize>)> {
    let mut out = Vec::new();
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let body = line.trim_end_matches(['\n', '\r']);
        let trimmed = body.trim_start();
        if !trimmed.starts_with(['[', '#'])
            && let Some(eq) = body.find(" = ")
        {
            let key = body[..eq].trim().to_string();
            out.push((key, offset + eq + 3..offset + body.len()));
        }
        offset += line.len();
    }
    out
}

fn values_where(text: &str, want: impl Fn(&str, &str) -> bool) -> Vec<std::ops::Range<usize>> {
    values(text)
        .into_iter()
        .filter(|(key, range)| want(key, &text[range.clone()]))
        .map(|(_, range)| range)
        .collect()
}

/// A TOML basic string holding `s`, escaped where TOML requires it. Control characters are left
/// raw on purpose: TOML rejects them, which is one more error to report well.
fn basic_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            _ => out.push(c),
        }
    }
    out.push('"');
    out
}

fn apply(text: &mut String, m: &Mutation) {
    let mut lines: Vec<String> = text.split_inclusive('\n').map(String::from).collect();
    let splice = |text: &mut String, range: std::ops::Range<usize>, with: &str| {
        text.replace_range(range, with);
    };
    match m {
        Mutation::Delete { at, len } => {
            let start = floor_boundary(text, *at % (text.len() + 1));
            let end = floor_boundary(text, start + len);
            text.replace_range(start..end, "");
        }
        Mutation::Insert { at, text: insert } => {
            let at = floor_boundary(text, *at % (text.len() + 1));
            text.insert_str(at, insert);
        }
        Mutation::Replace {
            at,
            len,
            text: with,
        } => {
            let start = floor_boundary(text, *at % (text.len() + 1));
            let end = floor_boundary(text, start + len);
            text.replace_range(start..end, with);
        }
        Mutation::DuplicateLine(i) => {
            if let Some(i) = pick(*i, lines.len()) {
                let line = lines[i].clone();
                lines.insert(i, line);
                *text = lines.concat();
            }
        }
        Mutation::DropLine(i) => {
            if let Some(i) = pick(*i, lines.len()) {
                lines.remove(i);
                *text = lines.concat();
            }
        }
        Mutation::SwapLines(i, j) => {
            if let (Some(i), Some(j)) = (pick(*i, lines.len()), pick(*j, lines.len())) {
                lines.swap(i, j);
                *text = lines.concat();
            }
        }
        Mutation::SwapValues(i, j) => {
            let all = values(text);
            if let (Some(i), Some(j)) = (pick(*i, all.len()), pick(*j, all.len())) {
                let (a, b) = (all[i].1.clone(), all[j].1.clone());
                if a.start != b.start {
                    let (first, second) = if a.start < b.start { (a, b) } else { (b, a) };
                    let first_text = text[first.clone()].to_string();
                    let second_text = text[second.clone()].to_string();
                    splice(text, second, &first_text);
                    splice(text, first, &second_text);
                }
            }
        }
        Mutation::ReplaceValue { nth, value } => {
            let all = values(text);
            if let Some(i) = pick(*nth, all.len()) {
                splice(text, all[i].1.clone(), value);
            }
        }
        Mutation::InjectStages(i) => {
            let at = pick(*i, lines.len() + 1).unwrap_or(0);
            lines.insert(at, "[[stages]]\n".to_string());
            *text = lines.concat();
        }
        Mutation::DeepNest { line, depth, kind } => {
            let nested = match kind % 4 {
                0 => format!("a = {}1{}\n", "[".repeat(*depth), "]".repeat(*depth)),
                1 => format!("a = {}1{}\n", "{ b = ".repeat(*depth), " }".repeat(*depth)),
                2 => format!("{} = 1\n", vec!["k"; depth + 1].join(".")),
                // Unclosed: the parser must give up gracefully.
                _ => format!("a = {}\n", "[{ x = ".repeat(*depth)),
            };
            let at = pick(*line, lines.len() + 1).unwrap_or(0);
            lines.insert(at, nested);
            *text = lines.concat();
        }
        Mutation::HugeNumber { nth, number } => {
            let numbers = values_where(text, |_, v| {
                v.starts_with(|c: char| c.is_ascii_digit() || c == '-' || c == '+')
            });
            if let Some(i) = pick(*nth, numbers.len()) {
                splice(text, numbers[i].clone(), number);
            }
        }
        Mutation::WeirdDuration { nth, duration } => {
            let durations = values_where(text, |key, _| {
                matches!(
                    key,
                    "interval" | "bake" | "max_hold" | "timeout" | "hook_timeout"
                )
            });
            if let Some(i) = pick(*nth, durations.len()) {
                splice(text, durations[i].clone(), &basic_string(duration));
            }
        }
        Mutation::ConditionSoup { nth, soup, literal } => {
            let conditions = values_where(text, |key, _| matches!(key, "advance" | "rollback"));
            if let Some(i) = pick(*nth, conditions.len()) {
                let value = if *literal && !soup.contains(['\'', '\n', '\r']) {
                    format!("'{soup}'")
                } else {
                    basic_string(soup)
                };
                splice(text, conditions[i].clone(), &value);
            }
        }
        Mutation::TemplateSoup { nth, soup } => {
            let templates = values_where(text, |key, v| {
                key == "url" || key == "headers" || v.contains("${")
            });
            if let Some(i) = pick(*nth, templates.len()) {
                let value = if *nth % 3 == 0 {
                    format!("{{ X-Key = {} }}", basic_string(soup))
                } else {
                    basic_string(&format!("http://{soup}"))
                };
                splice(text, templates[i].clone(), &value);
            }
        }
    }
}

/// Pieces of TOML and of plan syntax, for insertions and token soup.
const FRAGMENTS: &[&str] = &[
    "[",
    "]",
    "[[",
    "]]",
    "{",
    "}",
    "=",
    " = ",
    ",",
    ".",
    "#",
    "\n",
    "\r\n",
    "\r",
    "\t",
    " ",
    "\"",
    "'",
    "\"\"\"",
    "'''",
    "\\",
    "\\u",
    "\\U0010FFFF",
    "\\uD800",
    "\\x41",
    "\\n",
    "[[stages]]",
    "[[stages.hooks]]",
    "[[metrics]]",
    "[[hooks]]",
    "[backend]",
    "[defaults]",
    "[sources.prom]",
    "[sources.\"\"]",
    "[stages]",
    "[metrics.x]",
    "[[backend]]",
    "name",
    "weight",
    "bake",
    "interval",
    "max_hold",
    "source",
    "type",
    "url",
    "query",
    "baseline",
    "path",
    "run",
    "advance",
    "rollback",
    "metrics",
    "hooks",
    "stages",
    "on",
    "approval",
    "strategy",
    "a.b.c",
    "\"quoted key\"",
    "'lit'",
    "é",
    "日本",
    "🦀",
    "\u{200b}",
    "\u{feff}",
    "\u{0}",
    "\u{7f}",
    "\u{1b}[31m",
    "0",
    "1",
    "-1",
    "100",
    "101",
    "0.1",
    "1e309",
    "-0.0",
    "nan",
    "+inf",
    "-inf",
    "0x7fffffffffffffff",
    "0o777",
    "0b101",
    "1_000",
    "9223372036854775808",
    "99999999999999999999999999",
    "true",
    "false",
    "1979-05-27T07:32:00Z",
    "1979-05-27",
    "07:32:00",
    "1979-13-45T25:61:61Z",
    "\"30s\"",
    "\"5m\"",
    "\"1h 30m\"",
    "\"0s\"",
    "\"\"",
    "\"canary\"",
    "\"blue-green\"",
    "\"nginx\"",
    "\"command\"",
    "\"prometheus\"",
    "\"http-json\"",
    "\"prom\"",
    "\"< 1%\"",
    "\"> baseline * 2\"",
    "\"<= (1 + \"",
    "[\"./x.sh\"]",
    "[]",
    "{}",
    "${",
    "${X}",
    "${}",
    "}",
];

fn fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => select(FRAGMENTS).prop_map(String::from),
        1 => any::<char>().prop_map(String::from),
        1 => "\\PC{0,6}",
    ]
}

/// Text for the inside of a condition: operators, numbers, parentheses, `baseline`, noise.
fn condition_soup() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        6 => select(vec![
            "<", "<=", ">", ">=", "==", "!=", "=", "=<", "=>", "!", "<>", "+", "-", "*", "/", "%",
            "(", ")", "((", "))", " ", "  ", "\t", "baseline", "basline", "x", "_", "0", "1",
            "0.5", "5%", "1e3", "1e-3", "1e+", "1e309", "1e-400", "1.2.3", ".5", "5.", "2baseline",
            "99999999999999999999999999999", "0.1%", "1e99999999999999999999%", "e", "é", "≤",
            "×", "🦀", "\u{0}", "\n", "\\", "\"", "'", "#",
        ])
        .prop_map(String::from),
        1 => any::<char>().prop_map(String::from),
    ];
    prop::collection::vec(token, 0..16).prop_map(|t| t.concat())
}

fn template_soup() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        5 => select(vec![
            "${", "}", "$", "{", "${X}", "${1X}", "${ X }", "${}", "${é}", "host", ":", "/", "~",
            "é", "🦀", "\u{0}", " ", "${A_B}", "$${X}", "\\",
        ])
        .prop_map(String::from),
        1 => any::<char>().prop_map(String::from),
    ];
    prop::collection::vec(token, 0..10).prop_map(|t| t.concat())
}

fn weird_duration() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => select(vec![
            "", "0s", "0", "1", "5", "5 minutes", "5m5m", "1ns", "1y", "1.5h", "5m 5s", "-5m",
            "+5m", "∞", "5 m", "18446744073709551615s", "18446744073709551616s",
            "99999999999999999999999d", "584942417355y", "584942417356y", "9999999999y",
            "1000000000000000000000ns", "1h 1h 1h", "1e3s", "0x10s", "5秒", "🦀",
        ])
        .prop_map(String::from),
        1 => "[0-9]{1,25}(ns|us|ms|s|m|h|d|w|M|y|x| )?",
    ]
}

fn huge_number() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => select(vec![
            "9223372036854775807", "-9223372036854775808", "9223372036854775808",
            "99999999999999999999999999", "1e309", "-1e309", "1.7976931348623157e308", "5e-324",
            "nan", "+nan", "-nan", "inf", "+inf", "-inf", "-0", "-0.0", "0x7fffffffffffffff",
            "0o777", "0b1", "1_000", "100.0000000000000001", "100.00000000000001",
            "-0.0000000001", "1e2", "0e0", "00", "01", "1__0", "1.", ".1", "0.1e-0",
        ])
        .prop_map(String::from),
        1 => any::<i64>().prop_map(|n| n.to_string()),
        1 => any::<f64>().prop_map(|n| format!("{n:?}")),
    ]
}

/// An arbitrary, mostly well-formed TOML value (with some ill-formed ones among the leaves).
fn toml_value() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        2 => huge_number(),
        2 => select(vec![
            "true", "false", "\"\"", "''", "\"5m\"", "\"30s\"", "\"canary\"", "\"blue-green\"",
            "\"nginx\"", "\"command\"", "\"kubectl\"", "\"ecs\"", "\"prometheus\"", "\"http-json\"",
            "\"prom\"", "\"stats\"", "\"error-rate\"", "\"rollback\"", "\"pause\"", "\"warn\"",
            "\"max\"", "\"< 1%\"", "\"> baseline\"", "\"http://127.0.0.1:9090\"", "\"/a/b\"",
            "\"a:1\"", "\"127.0.0.1:8080\"", "[\"./x.sh\"]", "[\"\"]", "[]", "{}",
            "1979-05-27T07:32:00Z", "1979-05-27", "07:32:00", "'''multi\nline'''",
            "\"\"\"\nbasic\n\"\"\"", "\"\\u00e9\\t\\\"\"", "\"${X}\"",
        ])
        .prop_map(String::from),
        1 => "\\PC{0,10}".prop_map(|s| basic_string(&s)),
        1 => condition_soup().prop_map(|s| basic_string(&s)),
    ];
    leaf.prop_recursive(3, 24, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(|v| format!("[{}]", v.join(", "))),
            prop::collection::vec((plan_key(), inner), 0..4).prop_map(|kv| {
                let body: Vec<String> = kv.into_iter().map(|(k, v)| format!("{k} = {v}")).collect();
                format!("{{ {} }}", body.join(", "))
            }),
        ]
    })
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let n = any::<usize>;
    prop_oneof![
        1 => (n(), 0..40usize).prop_map(|(at, len)| Mutation::Delete { at, len }),
        1 => (n(), fragment()).prop_map(|(at, text)| Mutation::Insert { at, text }),
        1 => (n(), 0..8usize, fragment()).prop_map(|(at, len, text)| Mutation::Replace {
            at,
            len,
            text
        }),
        1 => n().prop_map(Mutation::DuplicateLine),
        1 => n().prop_map(Mutation::DropLine),
        1 => (n(), n()).prop_map(|(i, j)| Mutation::SwapLines(i, j)),
        2 => (n(), n()).prop_map(|(i, j)| Mutation::SwapValues(i, j)),
        2 => (n(), toml_value()).prop_map(|(nth, value)| Mutation::ReplaceValue { nth, value }),
        1 => n().prop_map(Mutation::InjectStages),
        1 => (n(), prop_oneof![1..40usize, 200..3000usize], 0..4usize).prop_map(
            |(line, depth, kind)| Mutation::DeepNest { line, depth, kind }
        ),
        1 => (n(), huge_number()).prop_map(|(nth, number)| Mutation::HugeNumber { nth, number }),
        1 => (n(), weird_duration())
            .prop_map(|(nth, duration)| Mutation::WeirdDuration { nth, duration }),
        2 => (n(), condition_soup(), any::<bool>()).prop_map(|(nth, soup, literal)| {
            Mutation::ConditionSoup { nth, soup, literal }
        }),
        1 => (n(), template_soup()).prop_map(|(nth, soup)| Mutation::TemplateSoup { nth, soup }),
    ]
}

// ---------------------------------------------------------------------------------------------
// Strategy (d): well-formed TOML in the plan's vocabulary.

const KEYS: &[&str] = &[
    "name",
    "description",
    "strategy",
    "type",
    "url",
    "timeout",
    "headers",
    "interval",
    "bake",
    "max_hold",
    "on_timeout",
    "on_interrupt",
    "approval",
    "hook_timeout",
    "upstream_file",
    "upstream",
    "stable",
    "canary",
    "extra",
    "test_command",
    "reload_command",
    "verify_command",
    "command_timeout",
    "set_weight",
    "promote",
    "rollback",
    "verify",
    "namespace",
    "mode",
    "replicas",
    "cluster",
    "service",
    "source",
    "query",
    "baseline",
    "path",
    "baseline_path",
    "run",
    "baseline_run",
    "reduce",
    "advance",
    "rollback_after",
    "min_samples",
    "min_coverage",
    "on_no_data",
    "weight",
    "metrics",
    "hooks",
    "on",
    "stages",
    "sources",
    "defaults",
    "backend",
    "nmae",
    "wieght",
    "\"\"",
    "\"a b\"",
    "'é'",
    "a.b",
];

fn plan_key() -> impl Strategy<Value = &'static str> {
    select(KEYS)
}

/// A value that is plausible for `key` most of the time, so validation goes deep.
fn value_for(key: &'static str) -> BoxedStrategy<String> {
    let plausible: Vec<&'static str> = match key {
        "name" | "upstream" => vec!["\"checkout-api\"", "\"Bad Name\"", "\"-x\"", "\"a\""],
        "strategy" => vec!["\"canary\"", "\"blue-green\"", "\"linear\""],
        "type" => vec![
            "\"nginx\"",
            "\"command\"",
            "\"kubectl\"",
            "\"ecs\"",
            "\"prometheus\"",
            "\"http-json\"",
            "\"graphite\"",
        ],
        "url" => vec![
            "\"http://127.0.0.1:9090\"",
            "\"ftp://x\"",
            "\"http://${H}:1\"",
            "\"${\"",
        ],
        "headers" => vec![
            "{ Authorization = \"Bearer ${T}\" }",
            "{ \"bad name\" = \"x\" }",
        ],
        "interval" | "bake" | "max_hold" | "timeout" | "hook_timeout" | "command_timeout" => {
            vec![
                "\"30s\"",
                "\"0s\"",
                "\"5m\"",
                "30",
                "\"1h 30m\"",
                "\"584942417355y\"",
            ]
        }
        "on_timeout" | "on_interrupt" => vec!["\"rollback\"", "\"pause\"", "\"ignore\""],
        "approval" => vec!["true", "false", "\"yes\""],
        "stable" | "canary" => vec![
            "[\"10.0.0.1:8080\"]",
            "[]",
            "[\"nohost\"]",
            "[\"[::1]:80\"]",
        ],
        "set_weight" | "promote" | "rollback" | "verify" | "run" | "baseline_run"
        | "test_command" | "reload_command" | "verify_command" => {
            vec!["[\"./x.sh\"]", "\"./x.sh --y\"", "[]", "[\"\"]", "\"> 5%\""]
        }
        "source" => vec!["\"prom\"", "\"stats\"", "\"cmd\"", "\"nope\""],
        "query" | "baseline" => vec!["'up'", "'sum(rate(x[1m]))'", "\"\""],
        "path" | "baseline_path" => vec!["\"/a/b\"", "\"a\"", "\"/~2\"", "\"\"", "\"/é~\""],
        "reduce" => vec!["\"max\"", "\"avg\"", "\"median\""],
        "advance" | "rollback_condition" => vec!["\"< 1%\"", "\"<= baseline * 1.1\"", "\"5\""],
        "rollback_after" | "min_samples" => vec!["1", "3", "0", "-1", "1.5"],
        "min_coverage" => vec!["0.5", "1", "1.5", "-0.1"],
        "on_no_data" => vec!["\"fail\"", "\"pass\"", "\"inconclusive\"", "\"maybe\""],
        "mode" => vec!["\"enforce\"", "\"warn\"", "\"replicas\"", "\"alb\""],
        "weight" => vec!["0", "1", "25", "50", "100", "0.1", "101", "-1", "nan"],
        "metrics" => vec!["[\"error-rate\"]", "[\"missing\"]", "[]", "\"error-rate\""],
        "on" => vec![
            "\"rolled-back\"",
            "\"promoted\"",
            "\"started\"",
            "\"never\"",
        ],
        _ => vec![],
    };
    if plausible.is_empty() {
        toml_value().boxed()
    } else {
        prop_oneof![
            3 => select(plausible).prop_map(String::from),
            1 => toml_value(),
        ]
        .boxed()
    }
}

fn key_value() -> impl Strategy<Value = String> {
    plan_key().prop_flat_map(|key| value_for(key).prop_map(move |v| format!("{key} = {v}\n")))
}

const HEADERS: &[&str] = &[
    "",
    "[defaults]",
    "[backend]",
    "[sources.prom]",
    "[sources.stats]",
    "[sources.cmd]",
    "[[metrics]]",
    "[[metrics]]",
    "[[stages]]",
    "[[stages]]",
    "[[stages]]",
    "[[stages.hooks]]",
    "[[hooks]]",
    "[sources]",
    "[stages]",
    "[[defaults]]",
    "[metrics.error-rate]",
    "[backend.extra]",
];

fn vocabulary_plan() -> impl Strategy<Value = String> {
    let section = (select(HEADERS), prop::collection::vec(key_value(), 0..7))
        .prop_map(|(header, kvs)| format!("{header}\n{}", kvs.concat()));
    (
        prop::collection::vec(key_value(), 0..4),
        prop::collection::vec(section, 0..12),
    )
        .prop_map(|(top, sections)| format!("{}{}", top.concat(), sections.concat()))
}

// ---------------------------------------------------------------------------------------------
// Benign edits, which must leave a valid plan valid.

#[derive(Debug, Clone)]
enum Benign {
    CommentLine(usize, String),
    BlankLine(usize),
    TrailingComment(usize, String),
    SpacesAroundEquals(usize, usize),
    Indent(usize, usize),
    CrLf,
}

fn benign() -> impl Strategy<Value = Benign> {
    let n = any::<usize>;
    let comment = "[^\r\n\u{0}-\u{8}\u{a}-\u{1f}\u{7f}]{0,20}";
    prop_oneof![
        (n(), comment).prop_map(|(i, c)| Benign::CommentLine(i, c)),
        n().prop_map(Benign::BlankLine),
        (n(), comment).prop_map(|(i, c)| Benign::TrailingComment(i, c)),
        (n(), 0..4usize).prop_map(|(i, s)| Benign::SpacesAroundEquals(i, s)),
        (n(), 0..8usize).prop_map(|(i, s)| Benign::Indent(i, s)),
        Just(Benign::CrLf),
    ]
}

fn apply_benign(text: &str, edit: &Benign) -> String {
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    let newline = if text.contains("\r\n") { "\r\n" } else { "\n" };
    let count = lines.len();
    match edit {
        Benign::CommentLine(i, c) => lines.insert(i % (count + 1), format!("# {c}")),
        Benign::BlankLine(i) => lines.insert(i % (count + 1), String::new()),
        Benign::TrailingComment(i, c) => {
            if count > 0 {
                lines[i % count].push_str(&format!(" # {c}"));
            }
        }
        Benign::SpacesAroundEquals(i, s) => {
            if count > 0 {
                let line = &mut lines[i % count];
                let spaced = format!("{0}={0}", " ".repeat(*s));
                if !line.trim_start().starts_with('[')
                    && let Some(eq) = line.find(" = ")
                {
                    line.replace_range(eq..eq + 3, &spaced);
                }
            }
        }
        Benign::Indent(i, s) => {
            if count > 0 {
                lines[i % count].insert_str(0, &" ".repeat(*s));
            }
        }
        Benign::CrLf => return lines.join("\r\n") + "\r\n",
    }
    lines.join(newline) + newline
}

// ---------------------------------------------------------------------------------------------
// Secrets: a literal header value is never shown, whatever else is wrong with the plan.

const SECRET_HEADER_LINE: &str = "headers = { Authorization = \"Bearer ${PROM_TOKEN}\" }\n";

/// Ways to write a literal secret into a header, `SECRET` standing for the secret.
const SECRET_HEADERS: &[&str] = &[
    "headers = { Authorization = \"Bearer SECRET\" }",
    "headers = { X-Trace = \"on\", Authorization = \"SECRET\" }",
    "headers = { Authorization = 'SECRET' }",
    "headers = { Authorization = \"\"\"Bearer SECRET\"\"\" }",
    "headers.Authorization = \"Bearer SECRET\"",
    "headers = { \"bad name\" = \"SECRET\" }",
    "headers = { Authorization = \"Bearer SECRET\", \"\" = \"x\" }",
    "headers = { Authorization = \"🦀SECRET🦀\", X-Count = 1 }",
    "headers = { Authorization = \"\"\"\nBearer\nSECRET\n\"\"\" }",
];

// ---------------------------------------------------------------------------------------------
// The tests.

fn cases(n: u32) -> ProptestConfig {
    // `PROPTEST_CASES` in the environment, when set, overrides `n` for longer campaigns.
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(n);
    ProptestConfig {
        cases,
        max_shrink_iters: 2_000,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

#[test]
fn valid_example_plans_are_valid() {
    for text in VALID_PLANS {
        let checked = check_text(text).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            checked.plan.is_some() && checked.errors() == 0,
            "an example plan is invalid:\n{}",
            checked.file.render(&checked.diagnostics, false)
        );
        assert_eq!(checked.warnings(), 0, "{:?}", checked.diagnostics);
    }
}

#[test]
fn pathological_inputs_do_not_panic() {
    let deep = |n: usize| format!("a = {}{}", "[".repeat(n), "]".repeat(n));
    let inputs = [
        String::new(),
        "\u{feff}".to_string(),
        "\u{0}".to_string(),
        "\r".to_string(),
        "é".to_string(),
        "name = \"é".to_string(),
        "name = '\u{7f}'".to_string(),
        "[".to_string(),
        "[[".to_string(),
        "[[stages]]".to_string(),
        "[[stages]]\nweight =".to_string(),
        "a = \"\\uD800\"".to_string(),
        "a = 1979-13-45T25:61:61Z".to_string(),
        deep(1_000),
        deep(10_000),
        format!("a = {}", "[".repeat(10_000)),
        format!("{} = 1", vec!["k"; 2_000].join(".")),
        format!("a = {}1{}", "{ b = ".repeat(2_000), " }".repeat(2_000)),
        "[[stages]]\n".repeat(300),
        format!("{}[[stages]]\nweight = 100\n", NGINX_CANARY),
        NGINX_CANARY.replace("\n", "\r\n"),
        NGINX_CANARY.replace("\n", "\r"),
        NGINX_CANARY.replace("> 5%", "> 1e99999999999999999999%"),
        NGINX_CANARY.replace("\"10m\"", "\"584942417355y\""),
        NGINX_CANARY.replace("\"5m\"", "\"584942417355y\""),
        NGINX_CANARY.replace("\"30m\"", "\"584942417355y\""),
        NGINX_CANARY.replace("\"30s\"", "\"584942417355y\""),
    ];
    for text in &inputs {
        if let Err(e) = check_text(text) {
            panic!(
                "{e}\ninput (first 200 bytes): {:?}",
                &text[..floor_boundary(text, 200)]
            );
        }
    }
}

/// Found by fuzzing: a top-level "missing field" pointed at `0..1`, past the end of an empty
/// file and inside a leading byte-order mark.
#[test]
fn top_level_spans_fit_an_empty_or_bom_led_file() {
    for text in ["", "\u{feff}", "\u{feff}# a comment\n"] {
        let checked = check(SourceFile::new(FILE, text));
        for d in &checked.diagnostics {
            assert!(
                d.span.end <= text.len()
                    && text.is_char_boundary(d.span.start)
                    && text.is_char_boundary(d.span.end),
                "{text:?}: span {:?} of `{}`",
                d.span,
                d.message
            );
        }
    }
}

/// Found by fuzzing: a literal header value was shown when its header was reported as unknown
/// (on a command source) or invalid (a bad header name).
#[test]
fn header_secrets_are_hidden_when_the_header_is_wrong() {
    let secret = "hunter2-regression";
    let cases = [
        // A command source has no headers: "unknown field `headers`" shows the line.
        ("command", "headers = { Authorization = \"Bearer SECRET\" }"),
        // An invalid header name is reported on the line that holds its value.
        ("prometheus", "headers = { \"bad name\" = \"SECRET\" }"),
    ];
    for (kind, header) in cases {
        let text = NGINX_CANARY
            .replacen("type = \"prometheus\"", &format!("type = \"{kind}\""), 1)
            .replacen(
                SECRET_HEADER_LINE,
                &format!("{}\n", header.replace("SECRET", secret)),
                1,
            );
        let checked = check(SourceFile::new(FILE, text));
        let out = checked.file.render(&checked.diagnostics, false);
        assert!(!out.contains(secret), "{kind}: the secret is shown:\n{out}");
    }
}

/// Found by fuzzing: validation panicked ("overflow when adding durations") adding a stage's
/// bake of about 585 billion years to its max_hold.
#[test]
fn huge_durations_are_rejected_without_panicking() {
    let text = r#"name = "x"
[backend]
type = "command"
set_weight = ["x"]
[[stages]]
weight = 100
bake = "18446744073709551615s"
"#;
    let checked = check_text(text).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        checked.plan.is_none(),
        "a bake of 585 billion years is accepted"
    );
}

/// Found by fuzzing: "a JSON pointer starts with `/`" pointed at the first byte of the pointer,
/// splitting a first character that is not ASCII.
#[test]
fn json_pointer_spans_keep_characters_whole() {
    let text = NGINX_DECIMAL.replace("\"/cache/hit~1ratio\"", "\"é/x\"");
    let checked = check(SourceFile::new(FILE, text.as_str()));
    for d in &checked.diagnostics {
        assert!(
            text.is_char_boundary(d.span.start) && text.is_char_boundary(d.span.end),
            "span {:?} of `{}`",
            d.span,
            d.message
        );
    }
}

/// Found by fuzzing: a redacted header value was masked with one `*` per byte, which moved the
/// rendered columns after it, and the lines after a multi-line value.
#[test]
fn redaction_keeps_rendered_locations() {
    let cases = [
        // Multi-byte characters: the columns after them.
        NGINX_CANARY.replacen(
            SECRET_HEADER_LINE,
            "headers = { Authorization = \"🦀🦀\", X-Count = 1 }\n",
            1,
        ),
        // A multi-line value: every later line number.
        NGINX_CANARY
            .replacen(
                SECRET_HEADER_LINE,
                "headers = { Authorization = \"\"\"\nBearer\nabc\n\"\"\" }\n",
                1,
            )
            .replacen("bake = \"15m\"", "bake = 15", 1),
    ];
    for text in cases {
        let checked = check(SourceFile::new(FILE, text));
        for d in checked.diagnostics.iter().filter(|d| d.is_error()) {
            let json = checked.file.to_json(d);
            let out = checked.file.render(std::slice::from_ref(d), false);
            let location = format!("--> {FILE}:{}:{}\n", json.line, json.column);
            assert!(out.contains(&location), "expected {location}in:\n{out}");
        }
    }
}

/// Found by fuzzing: some diagnostics were reported several times at the same place.
#[test]
fn no_diagnostic_is_reported_twice() {
    let cases = [
        // The default interval is longer than the default bake: once per stage.
        NGINX_CANARY.replacen("interval = \"30s\"", "interval = \"10m\"", 1),
        // A header value that is not a string: reported twice.
        NGINX_CANARY.replacen(SECRET_HEADER_LINE, "headers = { Authorization = 1 }\n", 1),
    ];
    for text in cases {
        let checked = check(SourceFile::new(FILE, text));
        for (i, d) in checked.diagnostics.iter().enumerate() {
            assert!(
                !checked.diagnostics[..i].contains(d),
                "reported twice: {}",
                checked.file.render(std::slice::from_ref(d), false)
            );
        }
    }
}

/// The TOML parser's recovery reports some syntax errors twice at the same place, and
/// `plan::check` passes them on as they come (validation diagnostics are deduplicated).
#[test]
fn syntax_errors_are_reported_once() {
    for text in ["=[${\\", "on_interrupt = [[\"\n'\"]]\n"] {
        let checked = check(SourceFile::new(FILE, text));
        for (i, d) in checked.diagnostics.iter().enumerate() {
            assert!(
                !checked.diagnostics[..i].contains(d),
                "{text:?}: reported twice: {}",
                checked.file.render(std::slice::from_ref(d), false)
            );
        }
    }
}

proptest! {
    #![proptest_config(cases(256))]

    /// (a) Any string at all, control characters and unassigned code points included.
    #[test]
    fn arbitrary_strings_do_not_panic(text in any::<String>()) {
        check_text(&text)?;
    }

    /// (a) Strings drawn mostly from TOML's punctuation, so they get further into the parser.
    #[test]
    fn toml_alphabet_strings_do_not_panic(
        text in "[\\[\\]{}=\"'.,#\\\\ \t\r\na-z0-9_+\\-:$%<>()*/é🦀\u{0}-\u{1f}]{0,200}",
    ) {
        check_text(&text)?;
    }
}

proptest! {
    #![proptest_config(cases(200))]

    /// (b) A valid plan with a few random mutations.
    #[test]
    fn mutated_plans_do_not_panic(
        plan in select(VALID_PLANS.to_vec()),
        mutations in prop::collection::vec(mutation(), 1..6),
    ) {
        let mut text = plan.to_string();
        for m in &mutations {
            apply(&mut text, m);
        }
        check_text(&text)?;
    }

    /// (b) A valid plan whose conditions are replaced by operator soup.
    #[test]
    fn condition_soup_does_not_panic(
        plan in select(VALID_PLANS.to_vec()),
        soups in prop::collection::vec((any::<usize>(), condition_soup(), any::<bool>()), 1..4),
    ) {
        let mut text = plan.to_string();
        for (nth, soup, literal) in soups {
            apply(&mut text, &Mutation::ConditionSoup { nth, soup, literal });
        }
        check_text(&text)?;
    }

    /// (c) Token soup of TOML fragments.
    #[test]
    fn token_soup_does_not_panic(tokens in prop::collection::vec(fragment(), 0..60)) {
        check_text(&tokens.concat())?;
    }

    /// (d) Well-formed TOML in the plan's vocabulary, which reaches validation.
    #[test]
    fn vocabulary_plans_do_not_panic(text in vocabulary_plan()) {
        check_text(&text)?;
    }

    /// Comments, blank lines, indentation, spacing and line endings change nothing.
    #[test]
    fn benign_edits_keep_a_valid_plan_valid(
        plan in select(VALID_PLANS.to_vec()),
        edits in prop::collection::vec(benign(), 1..8),
    ) {
        let mut text = plan.to_string();
        for edit in &edits {
            text = apply_benign(&text, edit);
        }
        let checked = check_text(&text)?;
        prop_assert!(
            checked.plan.is_some(),
            "a benign edit made the plan invalid:\n{}\n{text}",
            checked.file.render(&checked.diagnostics, false)
        );
        let original = check(SourceFile::new(FILE, plan)).plan.expect("a valid plan");
        let edited = checked.plan.expect("checked above");
        prop_assert_eq!(edited.stages, original.stages);
        prop_assert_eq!(edited.metrics, original.metrics);
        prop_assert_eq!(edited.hooks, original.hooks);
    }

    /// A literal header value never appears in the rendered diagnostics, even when the plan
    /// around it is broken or the source it belongs to is of the wrong type.
    #[test]
    fn literal_header_values_are_never_rendered(
        secret in "[a-z0-9]{12}".prop_map(|s| format!("hunter2-{s}")),
        header in select(SECRET_HEADERS),
        kind in select(vec!["prometheus", "http-json", "command", "graphite"]),
        mutations in prop::collection::vec(mutation(), 0..4),
    ) {
        let header_line = format!("{}\n", header.replace("SECRET", &secret));
        let plan = NGINX_CANARY
            .replacen("type = \"prometheus\"", &format!("type = \"{kind}\""), 1)
            .replacen(SECRET_HEADER_LINE, &header_line, 1);
        // Mutate only what follows the header, so the secret stays a header value.
        let cut = plan.find(&header_line).expect("the header line") + header_line.len();
        let (head, tail) = plan.split_at(cut);
        let mut tail = tail.to_string();
        for m in &mutations {
            apply(&mut tail, m);
        }
        let text = format!("{head}{tail}");
        let checked = check_text(&text)?;
        for color in [false, true] {
            let out = checked.file.render(&checked.diagnostics, color);
            prop_assert!(!out.contains(&secret), "the secret is shown:\n{out}");
        }
        for d in &checked.diagnostics {
            let json = serde_json::to_string(&checked.file.to_json(d)).expect("json");
            prop_assert!(!json.contains(&secret), "the secret is in the JSON: {json}");
        }
    }

    /// The condition parser on its own: an error points inside the text, or just past its end.
    #[test]
    fn condition_errors_point_into_the_text(text in condition_soup()) {
        if let Err(e) = condition::parse(&text) {
            prop_assert!(e.offset <= text.len(), "offset {} past {:?}", e.offset, text);
            prop_assert!(e.offset + e.len <= text.len() + 1, "{e:?} past {text:?}");
            prop_assert!(text.is_char_boundary(e.offset), "{e:?} splits a character of {text:?}");
            if e.offset + e.len <= text.len() {
                prop_assert!(
                    text.is_char_boundary(e.offset + e.len),
                    "{e:?} splits a character of {text:?}"
                );
            }
            prop_assert!(!e.message.is_empty());
        }
    }
}
