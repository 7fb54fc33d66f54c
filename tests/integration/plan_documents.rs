//! `rollout plan --format markdown|json`: the plan as a runbook for a change ticket, and as
//! one JSON document with every default applied.

use crate::harness::Test;

const PLAN: &str = r#"
            name = "shop"
            description = "v2 | new cart"

            [defaults]
            bake = "10m"
            interval = "30s"
            on_interrupt = "pause"
            stuck_after = "45m"

            [backend]
            type = "command"
            set_weight = ["./set-weight.sh"]

            [state]
            url = "s3://deploys/rollouts"

            [sources.prom]
            type = "prometheus"
            url = "http://127.0.0.1:9090"

            [[metrics]]
            name = "errors"
            source = "prom"
            query = "sum(rate(errors[1m]))"
            advance = "< 1%"
            rollback = "> 5%"
            rollback_after = 2

            [[stages]]
            weight = 0
            [[stages.hooks]]
            run = ["./migrate.sh", "--expand"]

            [[stages]]
            weight = 10
            approval = true

            [[stages]]
            weight = 100

            [window]
            days = ["mon", "tue", "wed", "thu"]
            hours = "09:00-16:00"
            timezone = "Europe/Berlin"
            freeze = ["2026-12-20/2027-01-04"]

            [[notify]]
            type = "slack"
            url = "${SLACK_URL}"
            on = ["approval-needed", "rolled-back"]
"#;

#[test]
fn the_runbook_has_the_stages_the_triggers_and_the_exact_commands() {
    Test::new()
        .plan(PLAN)
        .args(&["plan", "plan.toml", "--format", "markdown"])
        .stdout(
            r#"
            # Rollout runbook: shop

            v2 | new cart

            A canary rollout in 3 stages through the command backend. It takes at least 20m (every stage passes when its bake ends) and at most 1h 25m (every stage uses its full max_hold).

            ## Stages

            | # | Weight | Bake | Gates | Approval | Hooks |
            |---|---|---|---|---|---|
            | 1 | 0% | - | - (no traffic to measure) | - | `./migrate.sh --expand` (timeout 5m) |
            | 2 | 10% | 10m, then up to 30m more (then rollback) | errors: advance < 1%; rollback > 5% (2 in a row) | required | - |
            | 3 | 100% | 10m, then up to 30m more (then rollback) | errors: advance < 1%; rollback > 5% (2 in a row) | - | - |

            ## What rolls it back

            Traffic returns to the stable version at once when:

            - **errors** is `> 5%` for 2 measurements in a row (stages 2, 3);
            - a stage hook fails or outlives its timeout;
            - the new version does not become ready when its weight is applied;
            - a stage cannot pass its gates within its max_hold (on_timeout = "rollback": stages 2, 3);
            - an approval is refused;

            A source that cannot be reached never rolls back and never advances: it holds the stage.

            ## Change window

            mon,tue,wed,thu, 09:00-16:00 Europe/Berlin; frozen 2026-12-20/2027-01-04. Outside it nothing starts and no stage advances: a ready stage holds at its weight, still measuring, until the window opens. Rolling back is always allowed.

            A stage that has not advanced 45m into its bake is reported as stuck.

            ## Who is told

            - notify[0] (slack): approval-needed, rolled-back

            ## Commands

            Start:

            ```sh
            rollout run plan.toml
            ```

            Watch (stage, weight, latest metrics, who holds it):

            ```sh
            rollout status plan.toml
            ```

            Approve when it waits (stage 2), or refuse, which rolls back:

            ```sh
            rollout approve shop --state s3://deploys/rollouts
            rollout approve shop --reject --state s3://deploys/rollouts
            ```

            Pause: rollout has no pause command: interrupt the running `rollout run` (Ctrl-C in its terminal, or SIGINT/SIGTERM to its pid, which `rollout status` names). This plan has on_interrupt = "pause", so traffic stays at its current weight (exit 4); then resume or roll back:

            ```sh
            rollout resume plan.toml
            ```

            Roll back now, from any state, from any machine that reaches the state (exit 0 when traffic is confirmed on stable, 5 when not):

            ```sh
            rollout rollback plan.toml
            ```
            "#,
        )
        .run();
}

#[test]
fn the_runbook_names_the_state_it_was_told() {
    let ran = Test::new()
        .plan(PLAN)
        .args(&[
            "plan",
            "plan.toml",
            "--format",
            "markdown",
            "--state",
            "gs://other bucket/x",
        ])
        .run();
    let stdout = ran.stdout();
    assert!(
        stdout.contains("rollout rollback plan.toml --state 'gs://other bucket/x'\n"),
        "{stdout}"
    );
}

#[test]
fn json_is_the_validated_plan_with_its_defaults_and_no_secrets() {
    let ran = Test::new()
        .plan(PLAN)
        .env("SLACK_URL", "https://hooks.example/T0/B0/XYZ")
        .args(&["plan", "plan.toml", "--format", "json"])
        .run();
    let plan: serde_json::Value = serde_json::from_str(&ran.stdout()).unwrap();
    assert_eq!(plan["name"], "shop");
    assert_eq!(plan["stages"][1]["weight"], 10.0);
    assert_eq!(plan["stages"][1]["approval"], true);
    assert_eq!(plan["stages"][1]["max_hold"], 1800.0);
    assert_eq!(plan["stages"][0]["hooks"][0]["timeout"], 300.0);
    assert_eq!(plan["metrics"][0]["rollback"], "> 5%");
    assert_eq!(plan["metrics"][0]["on_no_data"], "inconclusive");
    assert_eq!(
        plan["window"]["days"],
        serde_json::json!(["mon", "tue", "wed", "thu"])
    );
    assert_eq!(plan["window"]["hours"], "09:00-16:00");
    assert_eq!(plan["stuck_after"], 2700.0);
    assert_eq!(
        plan["notify"],
        serde_json::json!([{"name": "notify[0]", "type": "slack", "on": ["approval-needed", "rolled-back"]}])
    );
    assert_eq!(plan["duration"]["min"], 1200.0);
    assert!(!ran.stdout().contains("SLACK_URL") && !ran.stdout().contains("hooks.example"));
}

/// A stage that gives segments the new version is shown with them, and a 0% stage that gets
/// traffic that way bakes like any other.
#[test]
fn the_runbook_shows_segments_with_the_weight() {
    let plan = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("plans/flagd-rollout.toml");
    let ran = Test::new()
        .args(&["plan", plan.to_str().unwrap(), "--format", "markdown"])
        .run();
    let out = ran.stdout();
    assert!(
        out.contains("| 1 | 0% + staff | 30m, then up to 30m more (then rollback) |"),
        "{out}"
    );
    assert!(out.contains("| 3 | 10% + staff, dach |"), "{out}");
    assert!(out.contains("| 5 | 100% |"), "{out}");
}
