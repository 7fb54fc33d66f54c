//! `rollout backtest` and `rollout validate --live`, where no service is needed: what they
//! refuse, and a source that is not there.

use crate::harness::Test;

const PLAN: &str = r#"
    name = "shop"
    [backend]
    type = "command"
    set_weight = ["./set-weight.sh"]

    [sources.prom]
    type = "prometheus"
    url = "http://127.0.0.1:1"
    timeout = "2s"

    [sources.stats]
    type = "http-json"
    url = "http://127.0.0.1:1/stats"

    [[metrics]]
    name = "errors"
    source = "prom"
    query = 'sum(rate(http_requests_total{code=~"5.."}[1m]))'
    rollback = "> 0.05"

    [[metrics]]
    name = "p99"
    source = "stats"
    path = "/p99"
    rollback = "> 300"

    [[stages]]
    weight = 10
    [[stages]]
    weight = 100
"#;

#[test]
fn backtest_refuses_sources_without_history_by_name() {
    Test::new()
        .plan(PLAN)
        .args(&["backtest", "plan.toml", "--start", "-6h", "--end", "now"])
        .status(2)
        .stderr(
            "error: backtest replays Prometheus history only: metric `p99` reads source `stats` (http-json)\n",
        )
        .run();
}

#[test]
fn backtest_refuses_times_it_cannot_read() {
    Test::new()
        .plan(PLAN)
        .args(&[
            "backtest",
            "plan.toml",
            "--start",
            "yesterday",
            "--end",
            "now",
        ])
        .status(2)
        .stderr(
            "error: --start: `yesterday` is not a time: use RFC 3339 (2026-05-01T12:00:00Z or \
             2026-05-01T14:00:00+02:00), or a time relative to now such as -6h\n",
        )
        .run();
    Test::new()
        .plan(PLAN)
        .args(&["backtest", "plan.toml", "--start", "-1h", "--end", "-2h"])
        .status(2)
        .stderr("error: --start must be before --end\n")
        .run();
}

#[test]
fn validate_live_names_an_unreachable_source_and_exits_2() {
    let ran = Test::new()
        .plan(PLAN)
        .args(&["validate", "--live", "plan.toml", "--output", "json"])
        .status(2)
        .run();
    let json: serde_json::Value = serde_json::from_str(&ran.stdout()).unwrap();
    assert_eq!(json["valid"], false);
    let metrics = json["files"][0]["metrics"].as_array().unwrap();
    assert_eq!(metrics.len(), 2);
    for m in metrics {
        assert_eq!(m["verdict"], "error", "{m}");
        assert_eq!(m["problems"][0]["kind"], "unreachable", "{m}");
        assert_eq!(m["answered"], false, "{m}");
    }
    let query = metrics[0]["query"].as_str().unwrap();
    assert!(
        query.starts_with(
            "GET http://127.0.0.1:1/api/v1/query?query=sum(rate(http_requests_total{code=~\"5..\"}[1m]))&time="
        ),
        "{query}"
    );
}
