//! `RawPlan` to `Plan`: defaults applied, references resolved, and the rules that span several
//! fields checked (weights in order, strategy shape, conditions against baselines, ...).

use std::collections::HashMap;
use std::time::Duration;

use super::diagnostic::{Diagnostic, Span};
use super::mirror::{gets_traffic, stage_mirror};
use super::model::*;
use super::raw::*;
use super::reader::{At, Cx, join, suggest};
use super::segments::SegmentSet;
use super::template::Template;

const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
const DEFAULT_BAKE: Duration = Duration::from_secs(5 * 60);
const DEFAULT_MAX_HOLD: Duration = Duration::from_secs(30 * 60);
const DEFAULT_HOOK_TIMEOUT: Duration = Duration::from_secs(5 * 60);
const DEFAULT_HTTP_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// Every measurement sends a query or runs a command: a shorter interval floods the source
/// (or forks thousands of processes a second) without telling anything more.
const MIN_INTERVAL: Duration = Duration::from_millis(100);

pub fn validate(cx: &Cx, raw: RawPlan, root_span: Span, fingerprint: String) -> Option<Plan> {
    let name = raw.name.as_ref().and_then(|n| name(cx, "name", n));
    let strategy = raw.strategy.as_ref().map_or(Strategy::Canary, |s| s.value);
    let defaults = Defaults::resolve(cx, &raw.defaults);
    let sources = sources(cx, &raw.sources);
    let metrics = metrics(cx, &raw.metrics, &raw.sources, &sources);
    let mut stages = raw
        .stages
        .as_ref()
        .and_then(|s| stages(cx, s, strategy, &defaults, &raw.metrics, metrics.len()));
    let (backend, segments) = raw.backend.map_or((None, Vec::new()), |b| {
        (b.spec.map(|spec| (spec, b.header)), b.segments)
    });
    let cannot_route = backend
        .as_ref()
        .map(|(b, _)| b)
        .filter(|b| !super::segments::routes_segments(b));
    match (&mut stages, &raw.stages, cannot_route) {
        (Some(_), Some(raw), Some(backend)) => {
            super::segments::cannot_route(cx, backend, &raw.value);
        }
        (Some(stages), Some(raw), None) => {
            super::segments::resolve(cx, stages, &raw.value, &segments);
        }
        _ => {}
    }
    if let (Some((backend, header)), Some(stages)) = (&backend, &stages) {
        super::backend_fields::check_backend_weights(
            cx,
            backend,
            header,
            stages,
            raw.stages.as_ref(),
        );
    }
    let hooks = plan_hooks(&raw.hooks, defaults.hook_timeout);
    if cx.has_errors() {
        return None;
    }
    let _ = root_span;
    Some(Plan {
        name: name?,
        description: raw.description,
        strategy,
        on_interrupt: defaults.on_interrupt,
        backend: backend?.0,
        sources: sources.into_iter().collect::<Option<Vec<_>>>()?,
        metrics,
        stages: stages?,
        hooks: hooks?,
        segments: segments.into_iter().map(|s| s.value).collect(),
        state: raw.state,
        notify: raw.notify,
        window: raw.window,
        stuck_after: raw.defaults.stuck_after,
        fingerprint,
    })
}

fn name(cx: &Cx, path: &str, raw: &At<String>) -> Option<Name> {
    let parsed = Name::parse(&raw.value);
    if parsed.is_none() {
        cx.push(
            Diagnostic::error(path, raw.span.clone(), format!("`{}` is not a valid name", raw.value))
                .label("invalid name")
                .help("names are lowercase letters, digits and `-`, starting with a letter or digit, e.g. \"checkout-api\""),
        );
    }
    parsed
}

struct Defaults {
    interval: Duration,
    bake: Duration,
    max_hold: Duration,
    on_timeout: HaltAction,
    on_interrupt: HaltAction,
    approval: bool,
    hook_timeout: Duration,
    interval_span: Option<Span>,
}

impl Defaults {
    fn resolve(cx: &Cx, raw: &RawDefaults) -> Defaults {
        if let Some(interval) = &raw.interval {
            poll_interval(cx, "defaults.interval", interval);
        }
        if let Some(max_hold) = &raw.max_hold {
            positive(cx, "defaults.max_hold", max_hold);
        }
        Defaults {
            interval: raw.interval.as_ref().map_or(DEFAULT_INTERVAL, |i| i.value),
            bake: raw.bake.as_ref().map_or(DEFAULT_BAKE, |b| b.value),
            max_hold: raw.max_hold.as_ref().map_or(DEFAULT_MAX_HOLD, |m| m.value),
            on_timeout: raw.on_timeout.unwrap_or(HaltAction::Rollback),
            on_interrupt: raw.on_interrupt.unwrap_or(HaltAction::Rollback),
            approval: raw.approval.unwrap_or(false),
            hook_timeout: raw.hook_timeout.unwrap_or(DEFAULT_HOOK_TIMEOUT),
            interval_span: raw.interval.as_ref().map(|i| i.span.clone()),
        }
    }
}

fn positive(cx: &Cx, path: &str, d: &At<Duration>) -> bool {
    if !d.value.is_zero() {
        return true;
    }
    cx.push(
        Diagnostic::error(path, d.span.clone(), "must be longer than zero")
            .label("zero")
            .help("for example: \"30s\""),
    );
    false
}

fn poll_interval(cx: &Cx, path: &str, d: &At<Duration>) {
    if d.value < MIN_INTERVAL {
        cx.push(
            Diagnostic::error(
                path,
                d.span.clone(),
                "the poll interval must be at least 100ms",
            )
            .label("shorter than 100ms")
            .help("use an interval of 100ms or longer, e.g. \"30s\""),
        );
    }
}

/// One entry per raw source, in order, so metric references by index stay aligned.
fn sources(cx: &Cx, raw: &[RawSource]) -> Vec<Option<Source>> {
    raw.iter()
        .map(|s| {
            let path = format!("sources.{}", s.name.value);
            let name = name(cx, &path, &s.name);
            let kind = match s.kind.as_ref()?.value {
                SourceType::Prometheus => SourceKind::Prometheus {
                    url: s.url.as_ref()?.value.clone(),
                    headers: s.headers.clone(),
                },
                SourceType::HttpJson => SourceKind::HttpJson {
                    url: s.url.as_ref()?.value.clone(),
                    headers: s.headers.clone(),
                },
                SourceType::Command => SourceKind::Command,
            };
            let default_timeout = match kind {
                SourceKind::Command => DEFAULT_COMMAND_TIMEOUT,
                _ => DEFAULT_HTTP_TIMEOUT,
            };
            Some(Source {
                name: name?,
                kind,
                timeout: s.timeout.unwrap_or(default_timeout),
            })
        })
        .collect()
}

fn metrics(
    cx: &Cx,
    raw: &[RawMetric],
    raw_sources: &[RawSource],
    sources: &[Option<Source>],
) -> Vec<Metric> {
    let mut seen: HashMap<&str, &Span> = HashMap::new();
    let mut out = Vec::new();
    for m in raw {
        if let Some(n) = &m.name {
            if let Some(first) = seen.get(n.value.as_str()) {
                let line_hint = if first.start < n.span.start {
                    "above"
                } else {
                    "below"
                };
                cx.push(
                    Diagnostic::error(
                        join(&m.path, "name"),
                        n.span.clone(),
                        format!("a metric named `{}` is already defined", n.value),
                    )
                    .label("duplicate name")
                    .help(format!(
                        "metric names must be unique; the first `{}` is {line_hint}",
                        n.value
                    )),
                );
            } else {
                seen.insert(&n.value, &n.span);
            }
        }
        if let Some(metric) = metric(cx, m, raw_sources, sources) {
            out.push(metric);
        }
    }
    out
}

fn metric(
    cx: &Cx,
    m: &RawMetric,
    raw_sources: &[RawSource],
    sources: &[Option<Source>],
) -> Option<Metric> {
    let name = m
        .name
        .as_ref()
        .and_then(|n| name(cx, &join(&m.path, "name"), n));
    let source = m
        .source
        .as_ref()
        .and_then(|s| source_ref(cx, m, s, raw_sources));
    let source_type = source
        .and_then(|i| raw_sources[i].kind.as_ref())
        .map(|k| k.value);
    let kind = source.and_then(|i| sources[i].as_ref()).map(|s| &s.kind);
    let query = source_type.and_then(|t| query(cx, m, t, kind));
    let has_baseline = query.as_ref().is_some_and(Query::has_baseline);
    for (field, cond) in [("advance", &m.advance), ("rollback", &m.rollback)] {
        let Some(cond) = cond else { continue };
        if query.is_some() && !has_baseline && cond.value.uses_baseline() {
            let key = baseline_key(source_type);
            cx.push(
                Diagnostic::error(
                    join(&m.path, field),
                    cond.span.clone(),
                    "the condition uses `baseline`, but the metric has no baseline",
                )
                .label("uses `baseline`")
                .help(format!(
                    "add `{key}` to the metric, or compare against a fixed number"
                )),
            );
        }
    }
    let judge = super::judge::check(cx, m, source_type, has_baseline);
    if m.advance.is_none() && m.rollback.is_none() && !m.broken_conditions && !m.judge.written {
        cx.push(
            Diagnostic::error(&m.path, m.header.clone(), "the metric has neither `advance` nor `rollback`")
                .label("this metric decides nothing")
                .help("add advance = \"< 0.01\" (must hold to advance) and/or rollback = \"> 0.05\" (rolls back)"),
        );
    }
    if let (Some(a), Some(r)) = (&m.advance, &m.rollback)
        && a.value.overlaps(&r.value) == Some(true)
    {
        cx.push(
            Diagnostic::warning(join(&m.path, "rollback"), r.span.clone(), format!("some values both pass `advance` ({}) and breach `rollback` ({})", a.value, r.value))
                .label("overlaps the advance range")
                .help("a breach wins: those values roll back. Make the ranges disjoint if that is not intended"),
        );
    }
    Some(Metric {
        name: name?,
        source: source?,
        query: query?,
        advance: m.advance.as_ref().map(|a| a.value.clone()),
        rollback: m.rollback.as_ref().map(|r| r.value.clone()),
        rollback_after: m.rollback_after.unwrap_or(1),
        min_samples: m.min_samples.unwrap_or(1),
        min_coverage: m.min_coverage.unwrap_or(0.5),
        on_no_data: m.on_no_data.unwrap_or(OnNoData::Inconclusive),
        mode: m.mode.unwrap_or(MetricMode::Enforce),
        judge: judge.ok()?,
        max_breaches: super::judge::max_breaches(m),
    })
}

fn baseline_key(source_type: Option<SourceType>) -> &'static str {
    match source_type {
        Some(SourceType::HttpJson) => "baseline_path",
        Some(SourceType::Command) => "baseline_run",
        _ => "baseline",
    }
}

fn source_ref(cx: &Cx, m: &RawMetric, s: &At<String>, raw_sources: &[RawSource]) -> Option<usize> {
    if let Some(i) = raw_sources.iter().position(|r| r.name.value == s.value) {
        return Some(i);
    }
    let names = raw_sources.iter().map(|r| r.name.value.as_str());
    let help = match suggest(&s.value, names.clone()) {
        Some(close) => format!("did you mean \"{close}\"?"),
        None if raw_sources.is_empty() => {
            "define it under [sources.NAME] with a type and url".to_string()
        }
        None => {
            let all: Vec<String> = names.map(|n| format!("\"{n}\"")).collect();
            format!("defined sources: {}", all.join(", "))
        }
    };
    cx.push(
        Diagnostic::error(
            join(&m.path, "source"),
            s.span.clone(),
            format!("no source named `{}`", s.value),
        )
        .label("unknown source")
        .help(help),
    );
    None
}

/// The fields each source type reads from a metric; the rest must be absent.
/// The query, with the endpoint of its source; `kind` is `None` when the source itself is
/// invalid (already reported).
fn query(
    cx: &Cx,
    m: &RawMetric,
    source_type: SourceType,
    kind: Option<&SourceKind>,
) -> Option<Query> {
    let given: [(&str, Option<&Span>); 8] = [
        ("query", m.query.as_ref().map(|f| &f.span)),
        ("baseline", m.baseline.as_ref().map(|f| &f.span)),
        ("reduce", m.reduce.as_ref().map(|f| &f.span)),
        ("path", m.path_pointer.as_ref().map(|f| &f.span)),
        ("baseline_path", m.baseline_path.as_ref().map(|f| &f.span)),
        ("url", m.url.as_ref().map(|f| &f.span)),
        ("run", m.run.as_ref().map(|f| &f.span)),
        ("baseline_run", m.baseline_run.as_ref().map(|f| &f.span)),
    ];
    let (allowed, required, example): (&[&str], &str, &str) = match source_type {
        SourceType::Prometheus => (
            &["query", "baseline", "reduce"],
            "query",
            "query = 'sum(rate(http_requests_total{code=~\"5..\"}[1m]))'",
        ),
        SourceType::HttpJson => (
            &["path", "baseline_path", "url"],
            "path",
            "path = \"/canary/error_rate\"",
        ),
        SourceType::Command => (
            &["run", "baseline_run"],
            "run",
            "run = [\"./scripts/error-rate.sh\"]",
        ),
    };
    let source = format!("{} source", article(source_type.name()));
    let mut ok = true;
    for (key, span) in given {
        if let Some(span) = span
            && !allowed.contains(&key)
        {
            ok = false;
            let fields: Vec<String> = allowed.iter().map(|k| format!("`{k}`")).collect();
            cx.push(
                Diagnostic::error(
                    join(&m.path, key),
                    span.clone(),
                    format!("`{key}` does not apply to {source}"),
                )
                .label(format!("not read by {source}"))
                .help(format!("a metric on {source} takes {}", fields.join(", "))),
            );
        }
    }
    let required_given = m.written.contains(&required);
    if !required_given {
        ok = false;
        cx.push(
            Diagnostic::error(
                join(&m.path, required),
                m.header.clone(),
                format!("missing field `{required}`"),
            )
            .label(format!("a metric on {source} needs `{required}`"))
            .help(format!("add it, for example: {example}")),
        );
    }
    if let Some(q) = m.query.as_ref().filter(|q| q.value.trim().is_empty()) {
        ok = false;
        cx.push(
            Diagnostic::error(join(&m.path, "query"), q.span.clone(), "the query is empty")
                .label("empty"),
        );
    }
    if !ok {
        return None;
    }
    let argv = |a: &Option<At<Vec<String>>>| a.as_ref().and_then(|a| Argv::new(a.value.clone()));
    let endpoint = |url: &Template, headers: &Headers| Endpoint {
        url: url.clone(),
        headers: headers.clone(),
    };
    // The fields were checked for `source_type` above; `kind` comes from the same field.
    Some(match kind? {
        SourceKind::Prometheus { url, headers } => Query::Prometheus {
            endpoint: endpoint(url, headers),
            query: m.query.as_ref()?.value.clone(),
            baseline: m.baseline.as_ref().map(|b| b.value.clone()),
            reduce: m.reduce.as_ref().map(|r| r.value),
        },
        SourceKind::HttpJson { url, headers } => Query::HttpJson {
            endpoint: endpoint(m.url.as_ref().map_or(url, |u| &u.value), headers),
            path: m.path_pointer.as_ref()?.value.clone(),
            baseline_path: m.baseline_path.as_ref().map(|b| b.value.clone()),
        },
        SourceKind::Command => Query::Command {
            run: argv(&m.run)?,
            baseline_run: argv(&m.baseline_run),
        },
    })
}

fn stages(
    cx: &Cx,
    raw: &At<Vec<RawStage>>,
    strategy: Strategy,
    defaults: &Defaults,
    raw_metrics: &[RawMetric],
    metric_count: usize,
) -> Option<Vec<Stage>> {
    if raw.value.is_empty() {
        cx.push(
            Diagnostic::error("stages", raw.span.clone(), "the plan has no stages")
                .label("empty")
                .help("add at least [[stages]] with weight = 100"),
        );
        return None;
    }
    check_weight_order(cx, &raw.value);
    check_shape(cx, raw, strategy);
    // Only the first stage with traffic is told that nothing gates it: once is enough.
    let first_gated = raw
        .value
        .iter()
        .position(|s| s.weight.as_ref().is_some_and(|w| w.value > 0.0) || gets_traffic(s));
    let out: Vec<Option<Stage>> = raw
        .value
        .iter()
        .enumerate()
        .map(|(i, s)| {
            stage(
                cx,
                i,
                s,
                defaults,
                raw_metrics,
                metric_count,
                first_gated == Some(i),
            )
        })
        .collect();
    out.into_iter().collect()
}

fn check_weight_order(cx: &Cx, stages: &[RawStage]) {
    let mut previous: Option<&At<f64>> = None;
    for s in stages {
        let Some(w) = &s.weight else { continue };
        if let Some(p) = previous
            && w.value < p.value
        {
            cx.push(
                Diagnostic::error(
                    join(&s.path, "weight"),
                    w.span.clone(),
                    format!(
                        "weight {} is lower than the previous stage's {}",
                        w.value, p.value
                    ),
                )
                .label("weights must never decrease")
                .help(format!(
                    "use a weight of at least {}, or reorder the stages",
                    p.value
                )),
            );
        }
        previous = Some(w);
    }
}

fn check_shape(cx: &Cx, raw: &At<Vec<RawStage>>, strategy: Strategy) {
    let stages = &raw.value;
    let weights: Vec<Option<f64>> = stages
        .iter()
        .map(|s| s.weight.as_ref().map(|w| w.value))
        .collect();
    if weights.iter().any(Option::is_none) {
        return;
    }
    let last = stages.last().expect("stages is not empty");
    let last_weight = last.weight.as_ref().expect("checked above");
    match strategy {
        Strategy::Canary if last_weight.value != 100.0 => cx.push(
            Diagnostic::error(
                join(&last.path, "weight"),
                last_weight.span.clone(),
                format!(
                    "the last stage of a canary must be at 100, found {}",
                    last_weight.value
                ),
            )
            .label("the rollout would end here, short of 100")
            .help("add a final [[stages]] with weight = 100"),
        ),
        Strategy::BlueGreen => {
            let shape_ok = matches!(weights.as_slice(), [Some(100.0)] | [Some(0.0), Some(100.0)]);
            if !shape_ok {
                let bad = stages
                    .iter()
                    .enumerate()
                    .find(|(i, s)| {
                        let w = s.weight.as_ref().map_or(0.0, |w| w.value);
                        let allowed =
                            (w == 100.0 && *i == stages.len() - 1) || (w == 0.0 && *i == 0);
                        !allowed
                    })
                    .map(|(_, s)| s)
                    .unwrap_or(last);
                let span = bad
                    .weight
                    .as_ref()
                    .map_or(bad.header.clone(), |w| w.span.clone());
                cx.push(
                    Diagnostic::error(join(&bad.path, "weight"), span, "a blue-green plan switches all traffic at once")
                        .label("not allowed in a blue-green plan")
                        .help("use exactly one stage at weight 100 (its bake is the fallback window), optionally after one stage at weight 0"),
                );
            }
        }
        Strategy::Canary => {}
    }
}

fn stage(
    cx: &Cx,
    index: usize,
    raw: &RawStage,
    defaults: &Defaults,
    raw_metrics: &[RawMetric],
    metric_count: usize,
    first_gated: bool,
) -> Option<Stage> {
    let weight = Weight::new(raw.weight.as_ref()?.value)?;
    let bake = raw.bake.as_ref().map_or(defaults.bake, |b| b.value);
    let interval = raw.interval.as_ref().map_or(defaults.interval, |i| i.value);
    if let Some(i) = &raw.interval {
        poll_interval(cx, &join(&raw.path, "interval"), i);
    }
    let metrics = stage_metrics(cx, raw, raw_metrics)?;
    // Segments and mirrored copies reach the new version at weight 0: it bakes and is gated.
    let idle = weight.is_zero() && !gets_traffic(raw);
    if idle {
        warn_ignored_at_zero(cx, raw);
    } else {
        check_interval(cx, raw, bake, interval, defaults);
        if weight.is_full() && bake.is_zero() {
            let span = raw
                .bake
                .as_ref()
                .map_or(raw.header.clone(), |b| b.span.clone());
            cx.push(
                Diagnostic::warning(join(&raw.path, "bake"), span, "the 100% stage has no bake")
                    .label("promotes as soon as the gates first pass")
                    .help("give the last stage a bake so a late regression can still roll back, e.g. bake = \"10m\""),
            );
        }
        let max_hold = raw.max_hold.unwrap_or(defaults.max_hold);
        check_reachable(cx, raw, &metrics, raw_metrics, bake + max_hold, interval);
        if weight.is_full() {
            warn_baseline_at_full(cx, raw, &metrics, raw_metrics);
        }
        if metric_count == 0 && raw_metrics.is_empty() && first_gated {
            cx.push(
                Diagnostic::warning(join(&raw.path, "weight"), raw.weight.as_ref()?.span.clone(), "the plan has no metrics: no stage is gated")
                    .label("every stage advances on time alone")
                    .help("add [[metrics]] with advance/rollback conditions so a bad release can be caught"),
            );
        }
    }
    let hooks = raw
        .hooks
        .iter()
        .map(|h| hook(h, defaults.hook_timeout))
        .collect::<Option<Vec<_>>>()?;
    Some(Stage {
        number: index + 1,
        weight,
        bake: if idle { Duration::ZERO } else { bake },
        interval,
        max_hold: raw.max_hold.unwrap_or(defaults.max_hold),
        on_timeout: raw.on_timeout.unwrap_or(defaults.on_timeout),
        // A default approval is for stages with traffic; a 0% stage asks only when it says so.
        approval: raw.approval.unwrap_or(defaults.approval && !idle),
        metrics: if idle { Vec::new() } else { metrics },
        hooks,
        segments: SegmentSet::EMPTY,
        mirror: stage_mirror(raw),
    })
}

fn check_interval(
    cx: &Cx,
    raw: &RawStage,
    bake: Duration,
    interval: Duration,
    defaults: &Defaults,
) {
    if bake.is_zero() || interval <= bake {
        return;
    }
    let (path, span) = match (&raw.interval, &raw.bake, &defaults.interval_span) {
        (Some(i), _, _) => (join(&raw.path, "interval"), i.span.clone()),
        (None, Some(b), _) => (join(&raw.path, "bake"), b.span.clone()),
        (None, None, Some(span)) => ("defaults.interval".to_string(), span.clone()),
        (None, None, None) => (raw.path.clone(), raw.header.clone()),
    };
    cx.push(
        Diagnostic::error(
            path,
            span,
            format!(
                "the poll interval ({}) is longer than the stage's bake ({})",
                humantime::format_duration(interval),
                humantime::format_duration(bake)
            ),
        )
        .label("the bake would end before the first measurement")
        .help("make the interval shorter than the bake, e.g. a tenth of it"),
    );
}

/// Where the metric is defined, for pointing at it from a stage.
fn metric_span(m: &RawMetric) -> Span {
    m.name.as_ref().map_or(m.header.clone(), |n| n.span.clone())
}

/// A stage that cannot collect `min_samples` readings before max_hold runs out is certain to
/// end by on_timeout.
fn check_reachable(
    cx: &Cx,
    raw: &RawStage,
    metrics: &[usize],
    raw_metrics: &[RawMetric],
    window: Duration,
    interval: Duration,
) {
    let possible = (window.as_secs_f64() / interval.as_secs_f64()).floor() as u64;
    for &i in metrics {
        let m = &raw_metrics[i];
        let Some(min) = m.min_samples else { continue };
        if u64::from(min) > possible {
            cx.push(
                Diagnostic::warning(join(&m.path, "min_samples"), metric_span(m), format!(
                    "{} needs {min} measurements, but {} can take at most {possible} before max_hold runs out",
                    m.name.as_ref().map_or("this metric", |n| n.value.as_str()),
                    raw.path,
                ))
                .label("cannot be reached")
                .help("lower min_samples, shorten the interval, or lengthen the bake or max_hold"),
            );
        }
    }
}

/// At 100% the stable version has no traffic, so a baseline has no data and an `advance`
/// that compares against it can never pass.
fn warn_baseline_at_full(cx: &Cx, raw: &RawStage, metrics: &[usize], raw_metrics: &[RawMetric]) {
    for &i in metrics {
        let m = &raw_metrics[i];
        let has_baseline =
            m.baseline.is_some() || m.baseline_path.is_some() || m.baseline_run.is_some();
        let judged = m.judge.judge.is_some();
        if has_baseline && (judged || m.advance.as_ref().is_some_and(|a| a.value.uses_baseline())) {
            let name = m.name.as_ref().map_or("a metric", |n| n.value.as_str());
            let span = raw
                .weight
                .as_ref()
                .map_or(raw.header.clone(), |w| w.span.clone());
            cx.push(
                Diagnostic::warning(join(&raw.path, "metrics"), span, format!(
                    "`{name}` compares against its baseline, which has no data at 100%"
                ))
                .label("the stable version gets no traffic here")
                .help(format!("this stage can never pass `{name}`'s {}; list this stage's metrics without it (metrics = [...]) and gate it with a fixed threshold", if judged { "judge" } else { "advance" })),
            );
        }
    }
}

fn warn_ignored_at_zero(cx: &Cx, raw: &RawStage) {
    if let Some(b) = &raw.bake {
        cx.push(
            Diagnostic::warning(
                join(&raw.path, "bake"),
                b.span.clone(),
                "a stage at weight 0 has no bake",
            )
            .label("ignored")
            .help(
                "a 0% stage runs its hooks and moves on; remove `bake` or give the stage a weight",
            ),
        );
    }
    if let Some(m) = &raw.metrics {
        cx.push(
            Diagnostic::warning(
                join(&raw.path, "metrics"),
                m.span.clone(),
                "a stage at weight 0 has no metric gates",
            )
            .label("ignored")
            .help("at 0% the new version has no traffic to measure"),
        );
    }
}

fn stage_metrics(cx: &Cx, raw: &RawStage, raw_metrics: &[RawMetric]) -> Option<Vec<usize>> {
    let names: Vec<&str> = raw_metrics
        .iter()
        .filter_map(|m| m.name.as_ref())
        .map(|n| n.value.as_str())
        .collect();
    let Some(list) = &raw.metrics else {
        return Some((0..raw_metrics.len()).collect());
    };
    let mut out = Vec::new();
    let mut ok = true;
    for entry in &list.value {
        match raw_metrics
            .iter()
            .position(|m| m.name.as_ref().is_some_and(|n| n.value == entry.value))
        {
            Some(i) if out.contains(&i) => {
                cx.push(
                    Diagnostic::warning(
                        join(&raw.path, "metrics"),
                        entry.span.clone(),
                        format!("`{}` is listed twice", entry.value),
                    )
                    .label("duplicate"),
                );
            }
            Some(i) => out.push(i),
            None => {
                ok = false;
                let help = match suggest(&entry.value, names.iter().copied()) {
                    Some(close) => format!("did you mean \"{close}\"?"),
                    None if names.is_empty() => {
                        "define metrics under [[metrics]] first".to_string()
                    }
                    None => format!(
                        "defined metrics: {}",
                        names
                            .iter()
                            .map(|n| format!("\"{n}\""))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                };
                cx.push(
                    Diagnostic::error(
                        join(&raw.path, "metrics"),
                        entry.span.clone(),
                        format!("no metric named `{}`", entry.value),
                    )
                    .label("unknown metric")
                    .help(help),
                );
            }
        }
    }
    ok.then_some(out)
}

fn hook(raw: &RawHook, default_timeout: Duration) -> Option<Hook> {
    Some(Hook {
        run: Argv::new(raw.run.clone()?)?,
        timeout: raw.timeout.unwrap_or(default_timeout),
    })
}

fn plan_hooks(raw: &[RawPlanHook], default_timeout: Duration) -> Option<Vec<PlanHook>> {
    raw.iter()
        .map(|h| {
            Some(PlanHook {
                on: h.on?,
                hook: hook(&h.hook, default_timeout)?,
            })
        })
        .collect()
}

/// "a prometheus", "an http-json".
fn article(word: &str) -> String {
    let vowel_sound = word.starts_with(['a', 'e', 'i', 'o', 'u']) || word.starts_with("http");
    format!("{} {word}", if vowel_sound { "an" } else { "a" })
}
