//! The statistical judge and `validate --live` on the real lab (nginx, two services, a real
//! Prometheus scraping them).

use std::time::Duration;

use crate::harness::Test;
use crate::http_stub::{Answer, Stub};
use crate::lab::Lab;

fn toml_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|a| format!("{a:?}")).collect();
    format!("[{}]", quoted.join(", "))
}

/// The mean latency of `/` on one track over the last 3 seconds.
fn mean_latency(track: &str) -> String {
    format!(
        r#"rate(http_request_duration_seconds_sum{{track="{track}"}}[3s]) / rate(http_request_duration_seconds_count{{track="{track}"}}[3s])"#
    )
}

#[test]
fn a_canary_forty_percent_slower_is_rolled_back_by_the_judge_under_any_fixed_ceiling() {
    let lab = Lab::start();
    lab.set_stable_latency(Duration::from_millis(50));
    lab.set_canary_latency(Duration::from_millis(70));
    let _traffic = lab.start_traffic();
    let plan = format!(
        r#"
name = "judged"
[defaults]
interval = "2s"
bake = "30s"
max_hold = "30s"

[backend]
type = "nginx"
upstream_file = "{upstream}"
upstream = "app"
stable = ["{stable}"]
canary = ["{canary}"]
test_command = {test}
reload_command = {reload}
pid_file = "{pid}"
command_timeout = "3s"

[sources.lab]
type = "prometheus"
url = "{prometheus}"
timeout = "2s"

[[metrics]]
name = "latency"
source = "lab"
query = '{canary_latency}'
baseline = '{stable_latency}'
judge = "mann-whitney"
window = "20s"
step = "1s"

# The threshold a person would have written: a slow canary is still far under it.
[[metrics]]
name = "latency-ceiling"
source = "lab"
query = '{canary_latency}'
advance = "< 0.25"
rollback = "> 0.3"

[[stages]]
weight = 50

[[stages]]
weight = 100
metrics = ["latency-ceiling"]
"#,
        upstream = lab.upstream_file().display(),
        stable = lab.stable_addr(),
        canary = lab.canary_addr(),
        test = toml_list(&lab.nginx_test_command()),
        reload = toml_list(&lab.nginx_reload_command()),
        pid = lab.dir().join("nginx.pid").display(),
        prometheus = lab.prometheus_url(),
        canary_latency = mean_latency("canary"),
        stable_latency = mean_latency("stable"),
    );
    let ran = Test::new()
        .plan(&plan)
        .args(&[
            "run",
            "plan.toml",
            "--output",
            "json",
            "--state-dir",
            "state",
        ])
        .status(3)
        .run();
    let events: Vec<serde_json::Value> = ran
        .stdout()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let finished = events.last().unwrap();
    let reason = finished["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("Rolled back to the stable version because metric latency had a median ")
            && reason.contains("(mann-whitney: a breach when higher by more than 25% at 98% confidence) in stage 1 at 50%"),
        "{reason}\n{}",
        lab.logs()
    );
    let breach = events
        .iter()
        .find(|e| e["event"] == "measured" && e["metric"] == "latency" && e["verdict"] == "breach")
        .unwrap();
    let c = &breach["comparison"];
    let slower = c["relative_difference"].as_f64().unwrap();
    assert!((0.3..0.5).contains(&slower), "{c}");
    assert!(c["p_value"].as_f64().unwrap() < 0.02, "{c}");
    assert!(
        breach["query"]
            .as_str()
            .unwrap()
            .contains("/api/v1/query_range?query=")
    );
    // Every reading of the fixed ceiling passed: no threshold a person would write caught it.
    let ceiling: Vec<&serde_json::Value> = events
        .iter()
        .filter(|e| e["event"] == "measured" && e["metric"] == "latency-ceiling")
        .collect();
    assert!(!ceiling.is_empty());
    for m in ceiling {
        assert_eq!(m["verdict"], "pass", "{m}");
        assert!(m["value"].as_f64().unwrap() < 0.1, "{m}");
    }
    assert!(
        std::fs::read_to_string(lab.upstream_file())
            .unwrap()
            .contains(&lab.stable_addr())
    );
}

#[test]
fn validate_live_reports_what_each_metric_answered_and_every_problem() {
    let lab = Lab::start();
    const TOKEN: &str = "right-token-7f3a";
    let guarded = Stub::start(|head| {
        if head
            .to_lowercase()
            .contains(&format!("authorization: bearer {TOKEN}"))
        {
            Answer::json(
                200,
                r#"{"status":"success","data":{"resultType":"scalar","result":[1,"1"]}}"#,
            )
        } else {
            Answer::json(
                401,
                r#"{"status":"error","errorType":"unauthorized","error":"bad token"}"#,
            )
        }
    });
    let metric = |name: &str, source: &str, query: &str, extra: &str| {
        format!(
            "[[metrics]]\nname = \"{name}\"\nsource = \"{source}\"\nquery = '{query}'\n{extra}\nrollback = \"> 0.5\"\n\n"
        )
    };
    let metrics = [
        // Counters as they are, not rates: right after the lab starts there is one scrape, and a
        // rate needs two.
        metric("good", "lab", r#"1 - min(up{job="lab"})"#, ""),
        metric("empty", "lab", r#"sum(http_requests_total{track="canari"})"#, ""),
        metric(
            "nan",
            "lab",
            r#"sum(http_requests_total{track="canary",code="500"}) / sum(http_requests_total{track="canary",code="500"})"#,
            "",
        ),
        metric("several", "lab", "http_requests_total", ""),
        metric("breaching-baseline", "lab", r#"max(up{job="lab"})"#, r#"baseline = 'min(up{job="lab"})'"#),
        metric("gone", "nowhere", "up", ""),
        // Last: the plan of good metrics below keeps it, and with it the stages that follow.
        metric("guarded", "proxy", "up", ""),
    ]
    .concat();
    let plan = format!(
        r#"
name = "live"
[backend]
type = "command"
set_weight = ["sh", "-c", "touch backend-was-touched"]

[sources.lab]
type = "prometheus"
url = "{prometheus}"
timeout = "3s"

[sources.proxy]
type = "prometheus"
url = "{proxy}"
timeout = "3s"
headers = {{ Authorization = "Bearer ${{PROM_TOKEN}}" }}

[sources.nowhere]
type = "prometheus"
url = "http://127.0.0.1:1"
timeout = "3s"

{metrics}
[[stages]]
weight = 10
[[stages]]
weight = 100
"#,
        prometheus = lab.prometheus_url(),
        proxy = guarded.url,
    );
    let ran = Test::new()
        .plan(&plan)
        .args(&["validate", "--live", "plan.toml", "--output", "json"])
        .env("PROM_TOKEN", "wrong-token-0000")
        .status(2)
        .run();
    assert!(!ran.dir.path().join("backend-was-touched").exists());
    let json: serde_json::Value = serde_json::from_str(&ran.stdout()).unwrap();
    let rows = json["files"][0]["metrics"].as_array().unwrap().clone();
    let row = |name: &str| rows.iter().find(|r| r["metric"] == name).unwrap().clone();
    let kinds = |name: &str| -> Vec<String> {
        row(name)["problems"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["kind"].as_str().unwrap().to_string())
            .collect()
    };
    let message = |name: &str| {
        row(name)["problems"][0]["message"]
            .as_str()
            .unwrap()
            .to_string()
    };

    assert_eq!(
        (
            row("good")["answered"].as_bool(),
            row("good")["verdict"].as_str()
        ),
        (Some(true), Some("pass"))
    );
    assert!(kinds("good").is_empty(), "{}", row("good"));
    assert!(row("good")["value"].as_f64().is_some());

    assert_eq!(kinds("empty"), ["no-data"]);
    assert!(
        message("empty").starts_with("the query returned an empty vector: `http_requests_total` has ")
            && message("empty").ends_with(
                r#"series in the last hour, but the label selector `http_requests_total{track="canari"}` matches none of them"#
            ),
        "{}",
        message("empty")
    );

    assert_eq!(kinds("nan"), ["no-data"]);
    assert_eq!(message("nan"), "the source returned NaN");

    assert_eq!(kinds("several"), ["several-series"]);
    assert!(
        message("several").contains("series; aggregate it"),
        "{}",
        message("several")
    );

    assert_eq!(row("breaching-baseline")["verdict"], "breach");
    assert_eq!(kinds("breaching-baseline"), ["baseline-breaching"]);
    assert!(
        message("breaching-baseline")
            .starts_with("the baseline (1) already breaches rollback (> 0.5)"),
        "{}",
        message("breaching-baseline")
    );
    // A breaching baseline is a warning about the gate, not a missing value.
    assert_eq!(row("breaching-baseline")["answered"], true);

    assert_eq!(kinds("guarded"), ["credentials"]);
    assert_eq!(
        message("guarded"),
        "the source refused the credentials (HTTP 401): check the source's headers (Authorization) and the environment variables they read"
    );
    assert!(!ran.stdout().contains("wrong-token-0000"));

    assert_eq!(kinds("gone"), ["unreachable"]);

    // With the right token and only the good metrics, every metric answers: exit 0.
    let good_only = plan
        .split("[[metrics]]")
        .filter(|part| {
            ![
                "name = \"empty\"",
                "name = \"nan\"",
                "name = \"several\"",
                "name = \"gone\"",
            ]
            .iter()
            .any(|m| part.contains(m))
        })
        .collect::<Vec<_>>()
        .join("[[metrics]]");
    Test::new()
        .plan(&good_only)
        .args(&["validate", "--live", "plan.toml"])
        .env("PROM_TOKEN", TOKEN)
        .status(0)
        .run();
}
