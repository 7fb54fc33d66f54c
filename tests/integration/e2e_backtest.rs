//! `rollout backtest` against a real Prometheus loaded with known history (promtool blocks):
//! the real engine replays a window with an incident, a healthy one, and one with a gap in the
//! metrics, on a virtual clock; the exit codes and the virtual times are those `run` would have
//! had. Nothing is touched: the backend command and the hooks would leave files if they ran.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::harness::Test;
use crate::lab::{History, openmetrics};

/// The replays start here: about 30 hours ago, on a whole minute.
fn start() -> u64 {
    static START: OnceLock<u64> = OnceLock::new();
    *START.get_or_init(|| {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        (now - 30 * 3600) / 60 * 60
    })
}

fn at(offset: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_secs(start() + offset)).to_string()
}

const MIN: u64 = 60;

/// One Prometheus for every test here, holding the three scenarios' history.
fn history() -> &'static History {
    static HISTORY: OnceLock<History> = OnceLock::new();
    HISTORY.get_or_init(|| {
        let s = start();
        let incident = move |t: u64| Some(if t >= s + 17 * MIN { 0.2 } else { 0.01 });
        let healthy = |_: u64| Some(0.01);
        let gap = move |t: u64| (!(s + 5 * MIN..s + 31 * MIN).contains(&t)).then_some(0.01);
        let stable = |_: u64| Some(0.01);
        let text = openmetrics(
            &[
                ("errors", r#"scenario="incident",track="canary""#, &incident),
                ("errors", r#"scenario="incident",track="stable""#, &stable),
                ("errors", r#"scenario="healthy",track="canary""#, &healthy),
                ("errors", r#"scenario="healthy",track="stable""#, &stable),
                ("errors", r#"scenario="gap",track="canary""#, &gap),
                ("errors", r#"scenario="gap",track="stable""#, &stable),
            ],
            s - 10 * MIN,
            s + 60 * MIN,
            15,
        );
        History::start(&text)
    })
}

fn plan(scenario: &str, on_timeout: &str) -> String {
    format!(
        r#"
        name = "replay"
        [defaults]
        interval = "30s"
        bake = "10m"
        max_hold = "5m"
        on_timeout = "{on_timeout}"

        [backend]
        type = "command"
        set_weight = ["sh", "-c", "touch backend-was-touched"]

        [sources.prom]
        type = "prometheus"
        url = "{url}"
        timeout = "5s"

        [[metrics]]
        name = "errors"
        source = "prom"
        query = 'errors{{scenario="{scenario}",track="canary"}}'
        baseline = 'errors{{scenario="{scenario}",track="stable"}}'
        advance = "< 0.02"
        rollback = "> 0.05"

        [[stages]]
        weight = 10
        [[stages]]
        weight = 50
        [[stages]]
        weight = 100

        [[hooks]]
        on = "rolled-back"
        run = ["sh", "-c", "touch hook-ran"]
        "#,
        url = history().url()
    )
}

fn events(stdout: &str) -> Vec<serde_json::Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON event per line"))
        .collect()
}

fn first<'a>(events: &'a [serde_json::Value], kind: &str) -> &'a serde_json::Value {
    events
        .iter()
        .find(|e| e["event"] == kind)
        .unwrap_or_else(|| panic!("no {kind} event in {events:#?}"))
}

fn backtest(plan: String, status: i32, extra: &[&str]) -> crate::harness::Ran {
    let (from, to) = (at(0), at(60 * MIN));
    let mut args = vec!["backtest", "plan.toml", "--start", &from, "--end", &to];
    args.extend(extra);
    let ran = Test::new().plan(&plan).args(&args).status(status).run();
    for left in ["backend-was-touched", "hook-ran", ".rollout"] {
        assert!(
            !ran.dir.path().join(left).exists(),
            "a backtest left {left}"
        );
    }
    ran
}

#[test]
fn an_incident_rolls_back_at_the_stage_and_virtual_minute_it_began() {
    let ran = backtest(
        plan("incident", "rollback"),
        3,
        &["--output", "json", "--report", "report.json"],
    );
    let events = events(&ran.stdout());
    let rolling_back = first(&events, "rolling-back");
    // Stage 1 bakes 10 minutes; the incident starts 7 minutes into stage 2.
    assert_eq!(rolling_back["time"], at(17 * MIN));
    assert_eq!(
        rolling_back["reason"],
        "metric errors was 0.2 against a baseline of 0.01 (rollback when > 0.05) in stage 2 at 50%"
    );
    let breach = events
        .iter()
        .find(|e| e["event"] == "measured" && e["verdict"] == "breach")
        .unwrap();
    assert_eq!(breach["evaluated_at"], at(17 * MIN));
    assert_eq!(breach["source"], "prom");
    let query = breach["query"].as_str().unwrap();
    assert!(
        query.starts_with(&format!(
            "GET {}/api/v1/query_range?query=errors{{scenario=\"incident\",track=\"canary\"}}&start=",
            history().url()
        )),
        "{query}"
    );
    let finished = events.last().unwrap();
    assert_eq!(
        (finished["event"].as_str(), finished["exit_code"].as_i64()),
        (Some("finished"), Some(3))
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(ran.dir.path().join("report.json")).unwrap())
            .unwrap();
    // 14 readings in stage 2 (10:30 to 17:00), the last one the breach; stage 1's all pass (the
    // one due as its bake ends may come after the stage has passed).
    let measured = report["measurements"].as_array().unwrap();
    let in_stage = |n: i64| measured.iter().filter(move |m| m["stage"] == n);
    assert_eq!(in_stage(2).count(), 14);
    assert!(in_stage(1).count() >= 19 && in_stage(1).all(|m| m["verdict"] == "pass"));
    assert_eq!(report["outcome"]["kind"], "rolled-back");
}

#[test]
fn a_healthy_window_promotes_in_virtual_time() {
    let ran = backtest(plan("healthy", "rollback"), 0, &["--output", "json"]);
    let events = events(&ran.stdout());
    let finished = events.last().unwrap();
    assert_eq!(finished["kind"], "promoted");
    assert_eq!(finished["time"], at(30 * MIN));
    assert_eq!(first(&events, "started")["time"], at(0));
    let passed: Vec<&serde_json::Value> = events
        .iter()
        .filter(|e| e["event"] == "stage-passed")
        .map(|e| &e["time"])
        .collect();
    assert_eq!(passed, [&at(10 * MIN), &at(20 * MIN), &at(30 * MIN)]);
}

#[test]
fn a_gap_in_the_metrics_holds_then_does_what_on_timeout_says() {
    // No samples from minute 5 to 31: stage 2 (from minute 10) never sees data, holds past its
    // bake, and max_hold runs out at minute 25.
    let ran = backtest(plan("gap", "pause"), 4, &["--output", "json"]);
    let events = events(&ran.stdout());
    let holding = first(&events, "holding");
    assert_eq!(holding["time"], at(20 * MIN));
    assert_eq!(
        holding["reasons"][0],
        "errors: 0 valid measurements of 1 needed"
    );
    let finished = events.last().unwrap();
    assert_eq!(
        (finished["kind"].as_str(), finished["time"].as_str()),
        (Some("paused"), Some(at(25 * MIN).as_str()))
    );
    let ran = backtest(plan("gap", "rollback"), 3, &[]);
    let stderr = String::from_utf8_lossy(&ran.output.stderr);
    assert!(
        stderr.contains(
            "ROLLED BACK: Rolled back to the stable version because stage 2 at 50% could not pass within max_hold (5m after its bake): errors: 0 valid measurements of 1 needed."
        ),
        "{stderr}"
    );
}

#[test]
fn a_window_too_short_to_decide_is_undecided_with_exit_4() {
    let (from, to) = (at(0), at(15 * MIN));
    let (from_s, to_s) = (format!("{}Z", &from[..19]), format!("{}Z", &to[..19]));
    Test::new()
        .plan(&plan("healthy", "rollback"))
        .args(&["backtest", "plan.toml", "--start", &from, "--end", &to, "-q"])
        .status(4)
        .stderr(&format!(
            "{from_s} rollout replay: canary in 3 stages through the command backend, replayed (a backtest touches nothing)\n\
             {to_s} UNDECIDED: The history ended at {to_s} before the rollout would have decided: it was in stage 2 with 50% on the new version, still measuring. Backtest a longer window to see the decision.\n"
        ))
        .run();
}

#[test]
fn approvals_count_as_given_unless_denied() {
    backtest(plan_with_approval(), 0, &["-q"]);
    let ran = backtest(plan_with_approval(), 3, &["--deny-approvals", "-q"]);
    let stderr = String::from_utf8_lossy(&ran.output.stderr);
    assert!(
        stderr.contains("because --deny-approvals refused to approve stage 2 (50%)"),
        "{stderr}"
    );
}

fn plan_with_approval() -> String {
    plan("healthy", "rollback").replace(
        "[[stages]]\n        weight = 50",
        "[[stages]]\n        weight = 50\n        approval = true",
    )
}
