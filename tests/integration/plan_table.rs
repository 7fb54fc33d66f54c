//! `rollout plan`: the stages as a table with minimum and worst-case durations.

use crate::harness::Test;

const PLAN: &str = r#"
    name = "checkout-api"
    description = "v2.3.0"

    [defaults]
    bake = "5m"
    interval = "30s"
    max_hold = "20m"

    [backend]
    type = "command"
    set_weight = ["./set-weight.sh"]

    [sources.prom]
    type = "prometheus"
    url = "http://127.0.0.1:9090"

    [[metrics]]
    name = "error-rate"
    source = "prom"
    query = 'sum(rate(http_requests_total{track="canary",code=~"5.."}[1m])) / sum(rate(http_requests_total{track="canary"}[1m]))'
    baseline = 'sum(rate(http_requests_total{track="stable",code=~"5.."}[1m])) / sum(rate(http_requests_total{track="stable"}[1m]))'
    advance = "<= baseline * 1.1 + 0.001"
    rollback = "> 5%"
    rollback_after = 2

    [[metrics]]
    name = "p99"
    source = "prom"
    query = 'histogram_quantile(0.99, sum by (le) (rate(latency_bucket[1m])))'
    rollback = "> 0.8"
    mode = "warn"

    [[stages]]
    weight = 0
    [[stages.hooks]]
    run = ["./migrate.sh", "--expand"]
    timeout = "10m"

    [[stages]]
    weight = 1
    bake = "10m"
    metrics = ["error-rate"]

    [[stages]]
    weight = 50
    approval = true

    [[stages]]
    weight = 100
    bake = "15m"
"#;

#[test]
fn shows_stages_gates_and_durations() {
    // Not a terminal: the table is wrapped to COLUMNS, or to 100 columns without it.
    Test::new()
        .plan(PLAN)
        .env("COLUMNS", "100")
        .args(&["plan", "plan.toml"])
        .stdout(
            "
            checkout-api (v2.3.0): canary through the command backend
            ┌───┬────────┬───────────────┬───────────────────────────┬──────────┬──────────────┬───────────────┐
            │ # ┆ Weight ┆ Bake          ┆ Gates                     ┆ Approval ┆ Hooks        ┆ Elapsed (min) │
            ╞═══╪════════╪═══════════════╪═══════════════════════════╪══════════╪══════════════╪═══════════════╡
            │ 1 ┆ 0%     ┆ -             ┆ - (no traffic to measure) ┆ -        ┆ ./migrate.sh ┆ 0s            │
            │   ┆        ┆               ┆                           ┆          ┆ --expand     ┆               │
            │ 2 ┆ 1%     ┆ 10m, poll 30s ┆ error-rate: advance <=    ┆ -        ┆ -            ┆ 10m           │
            │   ┆        ┆               ┆ baseline * 1.1 + 0.001;   ┆          ┆              ┆               │
            │   ┆        ┆               ┆ rollback > 5% (2 in a     ┆          ┆              ┆               │
            │   ┆        ┆               ┆ row)                      ┆          ┆              ┆               │
            │ 3 ┆ 50%    ┆ 5m, poll 30s  ┆ error-rate: advance <=    ┆ required ┆ -            ┆ 15m           │
            │   ┆        ┆               ┆ baseline * 1.1 + 0.001;   ┆          ┆              ┆               │
            │   ┆        ┆               ┆ rollback > 5% (2 in a     ┆          ┆              ┆               │
            │   ┆        ┆               ┆ row)                      ┆          ┆              ┆               │
            │   ┆        ┆               ┆ p99: rollback > 0.8 [warn ┆          ┆              ┆               │
            │   ┆        ┆               ┆ only]                     ┆          ┆              ┆               │
            │ 4 ┆ 100%   ┆ 15m, poll 30s ┆ error-rate: advance <=    ┆ -        ┆ -            ┆ 30m           │
            │   ┆        ┆               ┆ baseline * 1.1 + 0.001;   ┆          ┆              ┆               │
            │   ┆        ┆               ┆ rollback > 5% (2 in a     ┆          ┆              ┆               │
            │   ┆        ┆               ┆ row)                      ┆          ┆              ┆               │
            │   ┆        ┆               ┆ p99: rollback > 0.8 [warn ┆          ┆              ┆               │
            │   ┆        ┆               ┆ only]                     ┆          ┆              ┆               │
            └───┴────────┴───────────────┴───────────────────────────┴──────────┴──────────────┴───────────────┘
            Minimum duration: 30m (every stage passes when its bake ends)
            Worst case:       1h 40m (every stage uses its full max_hold; hooks run to their timeouts)
            ",
        )
        .run();
}

#[test]
fn the_table_fits_the_width_it_is_given() {
    for columns in [80, 100, 200] {
        let ran = Test::new()
            .plan(PLAN)
            .env("COLUMNS", &columns.to_string())
            .args(&["plan", "plan.toml"])
            .run();
        let widest = ran
            .stdout()
            .lines()
            .filter(|l| l.starts_with(['┌', '│', '╞', '└']))
            .map(|l| l.chars().count())
            .max()
            .unwrap();
        assert!(widest <= columns, "{widest} > {columns}:\n{}", ran.stdout());
    }
}

/// A 0% stage with `mirror` gets copies of requests, so it bakes and is gated, and a
/// blue-green plan may start with one.
#[test]
fn a_blue_green_plan_may_start_with_a_mirror_stage_that_bakes_and_is_gated() {
    let plan = r#"
        name = "search"
        strategy = "blue-green"
        [defaults]
        bake = "10m"
        [backend]
        type = "kubectl"
        mode = "gateway"
        namespace = "search"
        route = "search"
        stable_service = "search-stable"
        canary_service = "search-canary"
        [sources.prom]
        type = "prometheus"
        url = "http://127.0.0.1:9090"
        [[metrics]]
        name = "errors"
        source = "prom"
        query = 'sum(rate(errors_total{track="canary"}[1m]))'
        rollback = "> 0.05"
        [[stages]]
        weight = 0
        mirror = 10
        [[stages]]
        weight = 100
    "#;
    Test::new()
        .plan(plan)
        .args(&["validate", "plan.toml"])
        .status(0)
        .run();
    let ran = Test::new()
        .plan(plan)
        .env("COLUMNS", "200")
        .args(&["plan", "plan.toml"])
        .run();
    let table = ran.stdout();
    let row = table
        .lines()
        .find(|l| l.contains("0% + mirror 10%"))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(row.contains("10m, poll 30s"), "{row}");
    assert!(row.contains("errors: rollback > 0.05"), "{row}");
}
