//! `rollout run --dry-run`: the whole plan walked through the engine, printing exactly what
//! the backend would do, touching nothing.

use crate::harness::{Test, effects};

const PLAN: &str = r#"
    name = "shop"

    [defaults]
    bake = "2m"
    interval = "20s"

    [backend]
    type = "nginx"
    upstream_file = "/etc/nginx/conf.d/shop-upstream.conf"
    upstream = "shop"
    stable = ["10.0.0.1:8080", "10.0.0.2:8080", "10.0.0.3:8080"]
    canary = ["10.0.1.1:8080", "10.0.1.2:8080"]
    verify_command = ["/usr/local/bin/check-shop-upstream"]
    extra = ["keepalive 32;"]

    [sources.prom]
    type = "prometheus"
    url = "http://127.0.0.1:9090"
    headers = { Authorization = "Bearer ${PROM_TOKEN}" }

    [[metrics]]
    name = "error-rate"
    source = "prom"
    query = 'sum(rate(http_requests_total{track="canary",code=~"5.."}[1m])) / sum(rate(http_requests_total{track="canary"}[1m]))'
    baseline = 'sum(rate(http_requests_total{track="stable",code=~"5.."}[1m])) / sum(rate(http_requests_total{track="stable"}[1m]))'
    advance = "<= baseline * 1.1 + 0.001"
    rollback = "> 5%"

    # At 100% the stable side has no traffic to compare against: a fixed ceiling gates it.
    [[metrics]]
    name = "error-ceiling"
    source = "prom"
    query = 'sum(rate(http_requests_total{track="canary",code=~"5.."}[1m])) / sum(rate(http_requests_total{track="canary"}[1m]))'
    advance = "< 1%"
    rollback = "> 5%"

    [[stages]]
    weight = 0
    [[stages.hooks]]
    run = ["./migrate.sh", "--expand"]

    [[stages]]
    weight = 1
    metrics = ["error-rate"]

    [[stages]]
    weight = 100
    approval = true
    metrics = ["error-ceiling"]

    [[hooks]]
    on = "promoted"
    run = ["./notify.sh", "shop promoted"]
"#;

#[test]
fn prints_every_action_and_touches_nothing() {
    let ran = Test::new()
        .plan(PLAN)
        .args(&["run", "plan.toml", "--dry-run"])
        .env("PROM_TOKEN", "s3cret")
        .stderr(
            r#"
            rollout shop: canary in 3 stages through the nginx upstream `shop` in /etc/nginx/conf.d/shop-upstream.conf (dry run: nothing will be changed)
            would check that rollout can create files next to /etc/nginx/conf.d/shop-upstream.conf
            would run (nginx config test (preflight)): nginx -T
            would check that nginx's configuration includes /etc/nginx/conf.d/shop-upstream.conf, if it exists yet
            stage 1/3: 0% -> 0%
            would write /etc/nginx/conf.d/shop-upstream.conf:
                | # Written by rollout for plan `shop`; it is rewritten at every stage, do not edit.
                | # Stage 1: 0% of traffic to the new version. Write <token>.
                | upstream shop {
                |     server 10.0.0.1:8080 weight=1;
                |     server 10.0.0.2:8080 weight=1;
                |     server 10.0.0.3:8080 weight=1;
                |     keepalive 32;
                | }
            would run (nginx config test): nginx -t
            would run (nginx reload): nginx -s reload
            would run (read the configuration nginx loads): nginx -T
            would confirm that nginx's configuration holds this write's header line
            would run (verify the reload): /usr/local/bin/check-shop-upstream
            stage 1: 0% of traffic on the new version
            would run (hook): ./migrate.sh --expand
            stage 1 passed at 0% after 0s
            stage 2/3: 0% -> 1%
            would write /etc/nginx/conf.d/shop-upstream.conf:
                | # Written by rollout for plan `shop`; it is rewritten at every stage, do not edit.
                | # Stage 2: 1% of traffic to the new version. Write <token>.
                | upstream shop {
                |     server 10.0.0.1:8080 weight=66;
                |     server 10.0.0.2:8080 weight=66;
                |     server 10.0.0.3:8080 weight=66;
                |     server 10.0.1.1:8080 weight=1;
                |     server 10.0.1.2:8080 weight=1;
                |     keepalive 32;
                | }
            would run (nginx config test): nginx -t
            would run (nginx reload): nginx -s reload
            would run (read the configuration nginx loads): nginx -T
            would confirm that nginx's configuration holds this write's header line
            would run (verify the reload): /usr/local/bin/check-shop-upstream
            stage 2: 1% of traffic on the new version
            stage 2: baking 2m, measuring error-rate every 20s (max hold 30m)
            would measure error-rate every 20s: GET http://127.0.0.1:9090/api/v1/query?query=sum(rate(http_requests_total{track="canary",code=~"5.."}[1m])) / sum(rate(http_requests_total{track="canary"}[1m])); baseline: GET http://127.0.0.1:9090/api/v1/query?query=sum(rate(http_requests_total{track="stable",code=~"5.."}[1m])) / sum(rate(http_requests_total{track="stable"}[1m]))
            would bake 2m (up to 30m more if the gates do not pass yet, then on_timeout = "rollback")
            stage 2 passed at 1% after 0s
            stage 3/3: 1% -> 100%
            would write /etc/nginx/conf.d/shop-upstream.conf:
                | # Written by rollout for plan `shop`; it is rewritten at every stage, do not edit.
                | # Stage 3: 100% of traffic to the new version. Write <token>.
                | upstream shop {
                |     server 10.0.1.1:8080 weight=1;
                |     server 10.0.1.2:8080 weight=1;
                |     keepalive 32;
                | }
            would run (nginx config test): nginx -t
            would run (nginx reload): nginx -s reload
            would run (read the configuration nginx loads): nginx -T
            would confirm that nginx's configuration holds this write's header line
            would run (verify the reload): /usr/local/bin/check-shop-upstream
            stage 3: 100% of traffic on the new version
            stage 3: baking 2m, measuring error-ceiling every 20s (max hold 30m)
            would measure error-ceiling every 20s: GET http://127.0.0.1:9090/api/v1/query?query=sum(rate(http_requests_total{track="canary",code=~"5.."}[1m])) / sum(rate(http_requests_total{track="canary"}[1m]))
            would bake 2m (up to 30m more if the gates do not pass yet, then on_timeout = "rollback")
            would wait for approval before leaving stage 3: run `rollout approve shop` (or `rollout approve shop --reject`)
            stage 3 passed at 100% after 0s
            would run (hook): ./notify.sh 'shop promoted'
            DONE: Dry run complete: every stage was walked through and nothing was changed.
            "#,
        )
        .run();
    // Nothing was written: not the upstream file, not even the state directory.
    let entries: Vec<_> = std::fs::read_dir(ran.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(entries, ["plan.toml"]);
}

#[test]
fn a_missing_variable_stops_the_run_before_anything_is_touched() {
    Test::new()
        .plan(PLAN)
        .args(&["run", "plan.toml", "--dry-run"])
        .status(2)
        .stderr(
            "error: source `prom`: environment variable `PROM_TOKEN` is not set (it is used in the source's url or headers); nothing was changed\n",
        )
        .run();
}

#[test]
fn json_events_are_one_object_per_line_and_never_hold_secrets() {
    let stdout = Test::new()
        .plan(PLAN)
        .args(&["run", "plan.toml", "--dry-run", "--output", "json"])
        .env("PROM_TOKEN", "s3cret")
        .stderr("")
        .run()
        .stdout();
    assert!(
        !stdout.contains("s3cret"),
        "a secret leaked into the events"
    );
    let events: Vec<serde_json::Value> = stdout
        .lines()
        .map(|line| serde_json::from_str(line).expect("each line is one JSON object"))
        .collect();
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.first(), Some(&"started"));
    assert_eq!(kinds.last(), Some(&"finished"));
    assert_eq!(kinds.iter().filter(|k| **k == "stage-started").count(), 3);
    assert!(
        events
            .iter()
            .all(|e| e["time"].as_str().is_some_and(|t| t.ends_with('Z')))
    );
    let finished = events.last().unwrap();
    assert_eq!(finished["kind"], "promoted");
    let writes: Vec<&serde_json::Value> = events.iter().filter(|e| e["kind"] == "write").collect();
    assert_eq!(writes.len(), 3);
    assert!(writes.iter().all(|w| w["dry_run"] == true));
    assert!(
        writes[1]["contents"]
            .as_str()
            .unwrap()
            .contains("server 10.0.1.1:8080 weight=1;")
    );
}

/// A dry run prints exactly the effects a real run makes, in the same order: the same code
/// path runs in both, only the executor differs.
#[test]
fn a_dry_run_shows_the_effects_of_a_real_run_in_order() {
    let plan = r#"
        name = "shop"
        [defaults]
        bake = "200ms"
        interval = "100ms"
        [backend]
        type = "command"
        set_weight = ["sh", "-c", "echo $ROLLOUT_WEIGHT >> weights"]
        verify = ["grep", "-q", ".", "weights"]
        promote = ["touch", "promoted"]
        [sources.gate]
        type = "command"
        [[metrics]]
        name = "errors"
        source = "gate"
        run = ["echo", "0"]
        advance = "< 1"
        [[stages]]
        weight = 0
        [[stages.hooks]]
        run = ["touch", "migrated"]
        [[stages]]
        weight = 25
        [[stages]]
        weight = 100
        [[hooks]]
        on = "promoted"
        run = ["touch", "announced"]
    "#;
    let dry = Test::new()
        .plan(plan)
        .args(&["run", "plan.toml", "--dry-run", "--output", "json"])
        .run();
    assert!(
        !dry.dir.path().join("weights").exists(),
        "a dry run touched something"
    );
    let real = Test::new()
        .plan(plan)
        .args(&["run", "plan.toml", "--output", "json"])
        .run();
    assert_eq!(
        std::fs::read_to_string(real.dir.path().join("weights")).unwrap(),
        "0\n25\n100\n"
    );
    let (dry, real) = (effects(&dry.stdout()), effects(&real.stdout()));
    assert_eq!(
        dry.len(),
        9,
        "3 weights with their checks, a hook, promote, a plan hook: {dry:#?}"
    );
    assert_eq!(dry, real);
}
