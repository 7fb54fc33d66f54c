//! How long `rollout validate` takes on a large plan: parsing and validating a generated plan of
//! 100 stages and 50 metrics end to end, and rendering about 50 diagnostics of a broken one.
//!
//! Run with `cargo bench --bench validate`; BENCHMARKS.md records the figures.

use std::fmt::Write as _;
use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rollout::plan::{SourceFile, check};

const STAGES: usize = 100;
const METRICS: usize = 50;
const SOURCES_PER_KIND: usize = 4;

/// A plan with `STAGES` stages and `METRICS` metrics: Prometheus and http-json sources in turn,
/// conditions against a baseline, a subset of metrics per stage, stage and plan hooks. With
/// `broken`, every metric's `advance` is misspelt, which makes one error per metric.
fn large_plan(broken: bool) -> String {
    let mut p = String::new();
    p.push_str(
        r#"name = "checkout-api"
description = "a generated plan: 100 stages, 50 metrics"
strategy = "canary"

[defaults]
interval = "30s"
bake = "5m"
max_hold = "30m"
on_timeout = "rollback"
on_interrupt = "rollback"

[backend]
type = "nginx"
upstream_file = "/etc/nginx/conf.d/checkout-upstream.conf"
upstream = "checkout"
stable = ["10.0.0.1:8080", "10.0.0.2:8080", "10.0.0.3:8080"]
canary = ["10.0.1.1:8080", "10.0.1.2:8080"]
pid_file = "/run/nginx.pid"
extra = ["keepalive 32;"]
"#,
    );
    for k in 0..SOURCES_PER_KIND {
        let _ = write!(
            p,
            r#"
[sources.prom{k}]
type = "prometheus"
url = "http://prometheus-{k}.internal:9090"
timeout = "5s"
headers = {{ Authorization = "Bearer ${{PROM_TOKEN}}" }}

[sources.stats{k}]
type = "http-json"
url = "http://stats-{k}.internal:8081/stats"
"#
        );
    }
    for m in 0..METRICS {
        let source = m % SOURCES_PER_KIND;
        // Every fifth metric has a fixed threshold, so it can gate the 100% stage too.
        let fixed = m % 5 == 0;
        let advance = match (broken, fixed) {
            (true, _) => "=< baseline * 1.1".to_string(),
            (false, true) if m % 2 == 0 => "< 1%".to_string(),
            (false, true) => format!("< {}", 300 + m),
            (false, false) => format!("<= baseline * 1.{m:02} + 0.001"),
        };
        if m % 2 == 0 {
            let _ = write!(
                p,
                r#"
[[metrics]]
name = "error-rate-{m}"
source = "prom{source}"
query = 'sum(rate(http_requests_total{{track="canary",route="r{m}",code=~"5.."}}[1m])) / sum(rate(http_requests_total{{track="canary",route="r{m}"}}[1m]))'
baseline = 'sum(rate(http_requests_total{{track="stable",route="r{m}",code=~"5.."}}[1m])) / sum(rate(http_requests_total{{track="stable",route="r{m}"}}[1m]))'
advance = "{advance}"
rollback = "> 5%"
rollback_after = 2
min_samples = 3
min_coverage = 0.5
on_no_data = "inconclusive"
"#
            );
        } else {
            let _ = write!(
                p,
                r#"
[[metrics]]
name = "latency-{m}"
source = "stats{source}"
path = "/canary/routes/r{m}/latency_p99_ms"
baseline_path = "/stable/routes/r{m}/latency_p99_ms"
advance = "{advance}"
rollback = "> baseline * 2 + 100"
mode = "{mode}"
"#,
                mode = if m % 7 == 0 { "warn" } else { "enforce" },
            );
        }
    }
    let name = |m: usize| {
        if m.is_multiple_of(2) {
            format!("\"error-rate-{m}\"")
        } else {
            format!("\"latency-{m}\"")
        }
    };
    for s in 0..STAGES {
        // 0, then 1..=98, then 100: never decreasing, ending at 100.
        let weight = if s == STAGES - 1 { 100 } else { s };
        let _ = write!(p, "\n[[stages]]\nweight = {weight}\n");
        if weight == 100 {
            let fixed: Vec<String> = (0..METRICS).step_by(5).map(name).collect();
            let _ = writeln!(p, "bake = \"15m\"\nmetrics = [{}]", fixed.join(", "));
        } else if weight > 0 && s % 3 == 0 {
            let subset: Vec<String> = (0..5).map(|i| name((s + i * 7) % METRICS)).collect();
            let _ = writeln!(p, "metrics = [{}]", subset.join(", "));
        }
        if s % 25 == 0 && weight < 100 {
            p.push_str("approval = true\n");
        }
        if s % 10 == 0 {
            let _ = write!(
                p,
                "[[stages.hooks]]\nrun = [\"./scripts/smoke.sh\", \"--stage\", \"{s}\"]\ntimeout = \"2m\"\n"
            );
        }
    }
    for on in [
        "started",
        "stage-passed",
        "promoted",
        "rolled-back",
        "paused",
    ] {
        let _ = write!(
            p,
            "\n[[hooks]]\non = \"{on}\"\nrun = [\"./scripts/notify.sh\", \"{on}\"]\n"
        );
    }
    p
}

fn benches(c: &mut Criterion) {
    let valid = large_plan(false);
    let checked = check(SourceFile::new("large.toml", valid.as_str()));
    assert!(
        checked.plan.is_some() && checked.diagnostics.is_empty(),
        "the generated plan should be valid and clean:\n{}",
        checked.file.render(&checked.diagnostics, false)
    );
    let plan = checked.plan.expect("checked above");
    assert_eq!((plan.stages.len(), plan.metrics.len()), (STAGES, METRICS));

    let broken = large_plan(true);
    let invalid = check(SourceFile::new("large.toml", broken.as_str()));
    assert!(invalid.plan.is_none());
    eprintln!(
        "valid plan: {} bytes; broken plan: {} bytes, {} diagnostics",
        valid.len(),
        broken.len(),
        invalid.diagnostics.len()
    );

    let mut group = c.benchmark_group("validate");
    group.throughput(Throughput::Bytes(valid.len() as u64));
    group.bench_function("check 100 stages, 50 metrics", |b| {
        b.iter(|| check(SourceFile::new("large.toml", black_box(valid.as_str()))))
    });
    group.finish();

    let mut group = c.benchmark_group("render");
    group.throughput(Throughput::Elements(invalid.diagnostics.len() as u64));
    group.bench_function("render 50 diagnostics", |b| {
        b.iter(|| {
            invalid
                .file
                .render(black_box(&invalid.diagnostics), black_box(false))
        })
    });
    group.bench_function("check and render the broken plan", |b| {
        b.iter(|| {
            let checked = check(SourceFile::new("large.toml", black_box(broken.as_str())));
            checked.file.render(&checked.diagnostics, false)
        })
    });
    group.finish();
}

criterion_group!(validate, benches);
criterion_main!(validate);
