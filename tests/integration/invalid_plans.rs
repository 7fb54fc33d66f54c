//! Invalid plans: every problem reported at once, with file, line, column, field path, a caret
//! under the offending text and what would be valid. Exit status 2.

use crate::harness::Test;

#[test]
fn argv_as_string() {
    Test::new()
        .plan(
            r#"
        name = "shop"
        [backend]
        type = "command"
        set_weight = "./set-weight.sh --fast"

        [[stages]]
        weight = 100
            "#,
        )
        .args(&["validate", "plan.toml"])
        .status(2)
        .stderr(
            r#"
        error: backend.set_weight: expected a command as an array of arguments, found a string
         --> plan.toml:4:14
          |
        4 | set_weight = "./set-weight.sh --fast"
          |              ^^^^^^^^^^^^^^^^^^^^^^^^ commands are never run through a shell
          |
          = help: split it into program and arguments: ["./set-weight.sh", "--fast"]

        warning: stages[0].weight: the plan has no metrics: no stage is gated
         --> plan.toml:7:10
          |
        7 | weight = 100
          |          ^^^ every stage advances on time alone
          |
          = help: add [[metrics]] with advance/rollback conditions so a bad release can be caught

        plan.toml: invalid (1 error, 1 warning)
            "#,
        )
        .run();
}

#[test]
fn backend_field_of_other_type() {
    Test::new()
        .plan(
            r#"
        name = "shop"
        [backend]
        type = "nginx"
        upstream_file = "/etc/nginx/conf.d/app.conf"
        upstream = "app"
        stable = ["127.0.0.1:8001"]
        canary = ["127.0.0.1:8002"]
        namespace = "prod"

        [[stages]]
        weight = 100
            "#,
        )
        .args(&["validate", "plan.toml"])
        .status(2)
        .stderr(
            r#"
        warning: backend: nginx reloads will not be confirmed
         --> plan.toml:2:1
          |
        2 | [backend]
          | ^^^^^^^^^ no `pid_file` and no `verify_command`
          |
          = help: `nginx -s reload` exits 0 even when nginx then fails to apply the file; set pid_file = "/run/nginx.pid" (rollout then waits for new worker processes) or a verify_command

        error: backend.namespace: unknown field `namespace`
         --> plan.toml:8:1
          |
        8 | namespace = "prod"
          | ^^^^^^^^^ not valid here
          |
          = help: `namespace` belongs to the kubectl backend, not to the nginx backend

        warning: stages[0].weight: the plan has no metrics: no stage is gated
          --> plan.toml:11:10
           |
        11 | weight = 100
           |          ^^^ every stage advances on time alone
           |
           = help: add [[metrics]] with advance/rollback conditions so a bad release can be caught

        plan.toml: invalid (1 error, 2 warnings)
            "#,
        )
        .run();
}

#[test]
fn backend_fields_missing() {
    Test::new()
        .plan(
            r#"
        name = "shop"
        [backend]
        type = "nginx"
        upstream = "app"
        stable = ["127.0.0.1:8001"]

        [[stages]]
        weight = 100
            "#,
        )
        .args(&["validate", "plan.toml"])
        .status(2)
        .stderr(
            r#"
        error: backend.upstream_file: missing field `upstream_file`
         --> plan.toml:2:1
          |
        2 | [backend]
          | ^^^^^^^^^ `backend` needs `upstream_file`
          |
          = help: add it, for example: upstream_file = "/etc/nginx/conf.d/app-upstream.conf"

        error: backend.canary: missing field `canary`
         --> plan.toml:2:1
          |
        2 | [backend]
          | ^^^^^^^^^ `backend` needs `canary`
          |
          = help: add it, for example: canary = ["127.0.0.1:8080"]

        warning: backend: nginx reloads will not be confirmed
         --> plan.toml:2:1
          |
        2 | [backend]
          | ^^^^^^^^^ no `pid_file` and no `verify_command`
          |
          = help: `nginx -s reload` exits 0 even when nginx then fails to apply the file; set pid_file = "/run/nginx.pid" (rollout then waits for new worker processes) or a verify_command

        warning: stages[0].weight: the plan has no metrics: no stage is gated
         --> plan.toml:8:10
          |
        8 | weight = 100
          |          ^^^ every stage advances on time alone
          |
          = help: add [[metrics]] with advance/rollback conditions so a bad release can be caught

        plan.toml: invalid (2 errors, 2 warnings)
            "#,
        )
        .run();
}

#[test]
fn bad_duration() {
    Test::new()
        .plan(
            r#"
        name = "shop"
        [defaults]
        bake = "5 minutes and a bit"
        [backend]
        type = "command"
        set_weight = ["./set-weight.sh"]

        [[stages]]
        weight = 100
            "#,
        )
        .args(&["validate", "plan.toml"])
        .status(2)
        .stderr(
            r#"
        error: defaults.bake: `5 minutes and a bit` is not a duration
         --> plan.toml:3:8
          |
        3 | bake = "5 minutes and a bit"
          |        ^^^^^^^^^^^^^^^^^^^^^ expected number at 10
          |
          = help: use a number with a unit: "500ms", "30s", "5m", "1h 30m"

        warning: stages[0].weight: the plan has no metrics: no stage is gated
         --> plan.toml:9:10
          |
        9 | weight = 100
          |          ^^^ every stage advances on time alone
          |
          = help: add [[metrics]] with advance/rollback conditions so a bad release can be caught

        plan.toml: invalid (1 error, 1 warning)
            "#,
        )
        .run();
}

#[test]
fn bad_name() {
    Test::new()
        .plan(
            r#"
        name = "Checkout_API"
        [backend]
        type = "command"
        set_weight = ["./set-weight.sh"]

        [[stages]]
        weight = 100
            "#,
        )
        .args(&["validate", "plan.toml"])
        .status(2)
        .stderr(
            r#"
        error: name: `Checkout_API` is not a valid name
         --> plan.toml:1:8
          |
        1 | name = "Checkout_API"
          |        ^^^^^^^^^^^^^^ invalid name
          |
          = help: names are lowercase letters, digits and `-`, starting with a letter or digit, e.g. "checkout-api"

        warning: stages[0].weight: the plan has no metrics: no stage is gated
         --> plan.toml:7:10
          |
        7 | weight = 100
          |          ^^^ every stage advances on time alone
          |
          = help: add [[metrics]] with advance/rollback conditions so a bad release can be caught

        plan.toml: invalid (1 error, 1 warning)
            "#,
        )
        .run();
}

#[test]
fn bare_number_duration() {
    Test::new()
        .plan(
            r#"
        name = "shop"
        [defaults]
        interval = 30
        [backend]
        type = "command"
        set_weight = ["./set-weight.sh"]

        [[stages]]
        weight = 100
            "#,
        )
        .args(&["validate", "plan.toml"])
        .status(2)
        .stderr(
            r#"
        error: defaults.interval: expected a duration string, found a number
         --> plan.toml:3:12
          |
        3 | interval = 30
          |            ^^ a bare number has no unit
          |
          = help: write the unit in a string, e.g. "30s", "5m" or "1h 30m"

        warning: stages[0].weight: the plan has no metrics: no stage is gated
         --> plan.toml:9:10
          |
        9 | weight = 100
          |          ^^^ every stage advances on time alone
          |
          = help: add [[metrics]] with advance/rollback conditions so a bad release can be caught

        plan.toml: invalid (1 error, 1 warning)
            "#,
        )
        .run();
}

#[test]
fn baseline_without_query() {
    Test::new()
        .plan(
            r#"
        name = "shop"
        [backend]
        type = "command"
        set_weight = ["./set-weight.sh"]

        [sources.prom]
        type = "prometheus"
        url = "http://127.0.0.1:9090"

        [[metrics]]
        name = "errors"
        source = "prom"
        query = "sum(rate(errors_total[1m]))"
        advance = "<= baseline * 1.1"

        [[stages]]
        weight = 100
            "#,
        )
        .args(&["validate", "plan.toml"])
        .status(2)
        .stderr(
            r#"
        error: metrics[0].advance: the condition uses `baseline`, but the metric has no baseline
          --> plan.toml:14:11
           |
        14 | advance = "<= baseline * 1.1"
           |           ^^^^^^^^^^^^^^^^^^^ uses `baseline`
           |
           = help: add `baseline` to the metric, or compare against a fixed number

        plan.toml: invalid (1 error)
            "#,
        )
        .run();
}

#[test]
fn blue_green_shape() {
    Test::new()
        .plan(
            r#"
        name = "shop"
        strategy = "blue-green"
        [backend]
        type = "command"
        set_weight = ["./set-weight.sh"]

        [[stages]]
        weight = 0

        [[stages]]
        weight = 50

        [[stages]]
        weight = 100
            "#,
        )
        .args(&["validate", "plan.toml"])
        .status(2)
        .stderr(
            r#"
        error: stages[1].weight: a blue-green plan switches all traffic at once
          --> plan.toml:11:10
           |
        11 | weight = 50
           |          ^^ not allowed in a blue-green plan
           |
           = help: use exactly one stage at weight 100 (its bake is the fallback window), optionally after one stage at weight 0

        warning: stages[1].weight: the plan has no metrics: no stage is gated
          --> plan.toml:11:10
           |
        11 | weight = 50
           |          ^^ every stage advances on time alone
           |
           = help: add [[metrics]] with advance/rollback conditions so a bad release can be caught

        plan.toml: invalid (1 error, 1 warning)
            "#,
        )
        .run();
}

#[test]
fn canary_not_ending_at_100() {
    Test::new()
        .plan(
            r#"
        name = "shop"
        [backend]
        type = "command"
        set_weight = ["./set-weight.sh"]

        [[stages]]
        weight = 5

        [[stages]]
        weight = 50
            "#,
        )
        .args(&["validate", "plan.toml"])
        .status(2)
        .stderr(
            r#"
        warning: stages[0].weight: the plan has no metrics: no stage is gated
         --> plan.toml:7:10
          |
        7 | weight = 5
          |          ^ every stage advances on time alone
          |
          = help: add [[metrics]] with advance/rollback conditions so a bad release can be caught

        error: stages[1].weight: the last stage of a canary must be at 100, found 50
          --> plan.toml:10:10
           |
        10 | weight = 50
           |          ^^ the rollout would end here, short of 100
           |
           = help: add a final [[stages]] with weight = 100

        plan.toml: invalid (1 error, 1 warning)
            "#,
        )
        .run();
}

#[test]
fn condition_syntax() {
    Test::new()
        .plan(
            r#"
        name = "shop"
        [backend]
        type = "command"
        set_weight = ["./set-weight.sh"]

        [sources.prom]
        type = "prometheus"
        url = "http://127.0.0.1:9090"

        [[metrics]]
        name = "errors"
        source = "prom"
        query = "sum(rate(errors_total[1m]))"
        advance = "< (0.01 * 2"
        rollback = "=> 0.05"

        [[stages]]
        weight = 100
            "#,
        )
        .args(&["validate", "plan.toml"])
        .status(2)
        .stderr(
            r#"
        error: metrics[0].advance: invalid condition `< (0.01 * 2`
          --> plan.toml:14:14
           |
        14 | advance = "< (0.01 * 2"
           |              ^ unclosed `(`
           |
           = help: add a `)` to close it

        error: metrics[0].rollback: invalid condition `=> 0.05`
          --> plan.toml:15:13
           |
        15 | rollback = "=> 0.05"
           |             ^^ expected a comparison operator, found `=>`
           |
           = help: did you mean >=?

        plan.toml: invalid (2 errors)
            "#,
        )
        .run();
}

#[test]
fn duplicate_metric() {
    Test::new()
        .plan(
            r#"
        name = "shop"
        [backend]
        type = "command"
        set_weight = ["./set-weight.sh"]

        [sources.prom]
        type = "prometheus"
        url = "http://127.0.0.1:9090"

        [[metrics]]
        name = "errors"
        source = "prom"
        query = "sum(rate(errors_total[1m]))"
        rollback = "> 0.05"

        [[metrics]]
        name = "errors"
        source = "prom"
        query = "sum(rate(other_total[1m]))"
        rollback = "> 1"

        [[stages]]
        weight = 100
            "#,
        )
        .args(&["validate", "plan.toml"])
        .status(2)
        .stderr(
            r#"
        error: metrics[1].name: a metric named `errors` is already defined
          --> plan.toml:17:8
           |
        17 | name = "errors"
           |        ^^^^^^^^ duplicate name
           |
           = help: metric names must be unique; the first `errors` is above

        plan.toml: invalid (1 error)
            "#,
        )
        .run();
}

#[test]
fn duplicate_source() {
    Test::new()
        .plan(
            r#"
        name = "shop"
        [backend]
        type = "command"
        set_weight = ["./set-weight.sh"]

        [sources.prom]
        type = "prometheus"
        url = "http://127.0.0.1:9090"

        [sources.prom]
        type = "http-json"
        url = "http://127.0.0.1:8080"

        [[stages]]
        weight = 100
            "#,
        )
        .args(&["validate", "plan.toml"])
        .status(2)
        .stderr(
            r#"
        error: `prom` is defined twice
          --> plan.toml:10:10
           |
        10 | [sources.prom]
           |          ^^^^ duplicate key
           |
           = help: each key and table may be defined only once; merge the two definitions

        plan.toml: invalid (1 error)
            "#,
        )
        .run();
}

#[test]
fn ecs_service_partial_weights() {
    Test::new()
        .plan(
            r#"
        name = "shop"
        [backend]
        type = "ecs"
        cluster = "prod"
        mode = "service"
        service = "shop"
        container = "app"
        image = "shop:2"

        [[stages]]
        weight = 50

        [[stages]]
        weight = 100
            "#,
        )
        .args(&["validate", "plan.toml"])
        .status(2)
        .stderr(
            r#"
        error: stages[0].weight: the ecs backend in mode = "service" cannot send 50% of traffic
          --> plan.toml:11:10
           |
        11 | weight = 50
           |          ^^ only 0 or 100 here
           |
           = help: mode = "service" replaces the whole service at once; use mode = "alb" with two target groups for gradual weights

        warning: stages[0].weight: the plan has no metrics: no stage is gated
          --> plan.toml:11:10
           |
        11 | weight = 50
           |          ^^ every stage advances on time alone
           |
           = help: add [[metrics]] with advance/rollback conditions so a bad release can be caught

        plan.toml: invalid (1 error, 1 warning)
            "#,
        )
        .run();
}

#[test]
fn empty_argv() {
    Test::new()
        .plan(
            r#"
        name = "shop"
        [backend]
        type = "command"
        set_weight = []

        [[stages]]
        weight = 100
            "#,
        )
        .args(&["validate", "plan.toml"])
        .status(2)
        .stderr(
            r#"
        error: backend.set_weight: the command is empty
         --> plan.toml:4:14
          |
        4 | set_weight = []
          |              ^^ needs at least the program
          |
          = help: for example: ["./scripts/check.sh", "--fast"]

        warning: stages[0].weight: the plan has no metrics: no stage is gated
         --> plan.toml:7:10
          |
        7 | weight = 100
          |          ^^^ every stage advances on time alone
          |
          = help: add [[metrics]] with advance/rollback conditions so a bad release can be caught

        plan.toml: invalid (1 error, 1 warning)
            "#,
        )
        .run();
}

#[test]
fn field_for_other_source_type() {
    Test::new()
        .plan(
            r#"
        name = "shop"
        [backend]
        type = "command"
        set_weight = ["./set-weight.sh"]

        [sources.stats]
        type = "http-json"
        url = "http://127.0.0.1:8080/stats"

        [[metrics]]
        name = "latency"
        source = "stats"
        query = "histogram_quantile(0.99, x)"
        rollback = "> 800"

        [[stages]]
        weight = 100
            "#,
        )
        .args(&["validate", "plan.toml"])
        .status(2)
        .stderr(
            r#"
        error: metrics[0].path: missing field `path`
          --> plan.toml:10:1
           |
        10 | [[metrics]]
           | ^^^^^^^^^^^ a metric on an http-json source needs `path`
           |
           = help: add it, for example: path = "/canary/error_rate"

        error: metrics[0].query: `query` does not apply to an http-json source
          --> plan.toml:13:9
           |
        13 | query = "histogram_quantile(0.99, x)"
           |         ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^ not read by an http-json source
           |
           = help: a metric on an http-json source takes `path`, `baseline_path`, `url`

        plan.toml: invalid (2 errors)
            "#,
        )
        .run();
}

/// Each measurement runs a query or a command: a nanosecond interval would spawn thousands
/// of processes a second.
#[test]
fn interval_below_the_floor() {
    Test::new()
        .plan(
            r#"
        name = "shop"
        [defaults]
        interval = "1ns"
        [backend]
        type = "command"
        set_weight = ["./set-weight.sh"]

        [sources.scripts]
        type = "command"

        [[metrics]]
        name = "errors"
        source = "scripts"
        run = ["./errors.sh"]
        advance = "< 0.01"

        [[stages]]
        weight = 10
        interval = "99ms"

        [[stages]]
        weight = 50
        interval = "0s"

        [[stages]]
        weight = 100
        interval = "100ms"
            "#,
        )
        .args(&["validate", "plan.toml"])
        .status(2)
        .stderr(
            r#"
        error: defaults.interval: the poll interval must be at least 100ms
         --> plan.toml:3:12
          |
        3 | interval = "1ns"
          |            ^^^^^ shorter than 100ms
          |
          = help: use an interval of 100ms or longer, e.g. "30s"

        error: stages[0].interval: the poll interval must be at least 100ms
          --> plan.toml:19:12
           |
        19 | interval = "99ms"
           |            ^^^^^^ shorter than 100ms
           |
           = help: use an interval of 100ms or longer, e.g. "30s"

        error: stages[1].interval: the poll interval must be at least 100ms
          --> plan.toml:23:12
           |
        23 | interval = "0s"
           |            ^^^^ shorter than 100ms
           |
           = help: use an interval of 100ms or longer, e.g. "30s"

        plan.toml: invalid (3 errors)
            "#,
        )
        .run();
}

#[test]
fn interval_longer_than_bake() {
    Test::new()
        .plan(
            r#"
        name = "shop"
        [defaults]
        interval = "1m"
        [backend]
        type = "command"
        set_weight = ["./set-weight.sh"]

        [[stages]]
        weight = 10
        bake = "30s"

        [[stages]]
        weight = 100
            "#,
        )
        .args(&["validate", "plan.toml"])
        .status(2)
        .stderr(
            r#"
        warning: stages[0].weight: the plan has no metrics: no stage is gated
         --> plan.toml:9:10
          |
        9 | weight = 10
          |          ^^ every stage advances on time alone
          |
          = help: add [[metrics]] with advance/rollback conditions so a bad release can be caught

        error: stages[0].bake: the poll interval (1m) is longer than the stage's bake (30s)
          --> plan.toml:10:8
           |
        10 | bake = "30s"
           |        ^^^^^ the bake would end before the first measurement
           |
           = help: make the interval shorter than the bake, e.g. a tenth of it

        plan.toml: invalid (1 error, 1 warning)
            "#,
        )
        .run();
}

#[test]
fn metric_without_conditions() {
    Test::new()
        .plan(
            r#"
        name = "shop"
        [backend]
        type = "command"
        set_weight = ["./set-weight.sh"]

        [sources.prom]
        type = "prometheus"
        url = "http://127.0.0.1:9090"

        [[metrics]]
        name = "errors"
        source = "prom"
        query = "sum(rate(errors_total[1m]))"

        [[stages]]
        weight = 100
            "#,
        )
        .args(&["validate", "plan.toml"])
        .status(2)
        .stderr(
            r#"
        error: metrics[0]: the metric has neither `advance` nor `rollback`
          --> plan.toml:10:1
           |
        10 | [[metrics]]
           | ^^^^^^^^^^^ this metric decides nothing
           |
           = help: add advance = "< 0.01" (must hold to advance) and/or rollback = "> 0.05" (rolls back)

        plan.toml: invalid (1 error)
            "#,
        )
        .run();
}

#[test]
fn missing_env_syntax() {
    Test::new()
        .plan(
            r#"
        name = "shop"
        [backend]
        type = "command"
        set_weight = ["./set-weight.sh"]

        [sources.prom]
        type = "prometheus"
        url = "http://127.0.0.1:9090"
        headers = { Authorization = "Bearer ${TOKEN" }

        [[stages]]
        weight = 100
            "#,
        )
        .args(&["validate", "plan.toml"])
        .status(2)
        .stderr(
            r#"
        error: sources.prom.headers.Authorization: `${` is never closed with `}`
         --> plan.toml:9:37
          |
        9 | headers = { Authorization = "Bearer ${TOKEN" }
          |                                     ^^^^^^^ malformed variable
          |
          = help: write environment variables as ${NAME}

        warning: stages[0].weight: the plan has no metrics: no stage is gated
          --> plan.toml:12:10
           |
        12 | weight = 100
           |          ^^^ every stage advances on time alone
           |
           = help: add [[metrics]] with advance/rollback conditions so a bad release can be caught

        plan.toml: invalid (1 error, 1 warning)
            "#,
        )
        .run();
}

#[test]
fn toml_syntax() {
    Test::new()
        .plan(
            r#"
        name = "shop"
        [[stages]
        weight = 100
            "#,
        )
        .args(&["validate", "plan.toml"])
        .status(2)
        .stderr(
            r#"
        error: invalid TOML
         --> plan.toml:2:10
          |
        2 | [[stages]
          |          ^ unclosed array table, expected `]`

        plan.toml: invalid (1 error)
            "#,
        )
        .run();
}

#[test]
fn unknown_backend_type() {
    Test::new()
        .plan(
            r#"
        name = "shop"
        [backend]
        type = "ngnix"

        [[stages]]
        weight = 100
            "#,
        )
        .args(&["validate", "plan.toml"])
        .status(2)
        .stderr(
            r#"
        error: backend.type: `ngnix` is not one of "nginx", "kubectl", "ecs", "command", "flagd" or "unleash"
         --> plan.toml:3:8
          |
        3 | type = "ngnix"
          |        ^^^^^^^ unknown value
          |
          = help: did you mean "nginx"?

        warning: stages[0].weight: the plan has no metrics: no stage is gated
         --> plan.toml:6:10
          |
        6 | weight = 100
          |          ^^^ every stage advances on time alone
          |
          = help: add [[metrics]] with advance/rollback conditions so a bad release can be caught

        plan.toml: invalid (1 error, 1 warning)
            "#,
        )
        .run();
}

#[test]
fn unknown_field_suggestion() {
    Test::new()
        .plan(
            r#"
        name = "shop"
        descripton = "typo"
        [backend]
        type = "command"
        set_weight = ["./set-weight.sh"]

        [[stages]]
        weight = 100
            "#,
        )
        .args(&["validate", "plan.toml"])
        .status(2)
        .stderr(
            r#"
        error: descripton: unknown field `descripton`
         --> plan.toml:2:1
          |
        2 | descripton = "typo"
          | ^^^^^^^^^^ unknown field
          |
          = help: did you mean `description`?

        warning: stages[0].weight: the plan has no metrics: no stage is gated
         --> plan.toml:8:10
          |
        8 | weight = 100
          |          ^^^ every stage advances on time alone
          |
          = help: add [[metrics]] with advance/rollback conditions so a bad release can be caught

        plan.toml: invalid (1 error, 1 warning)
            "#,
        )
        .run();
}

#[test]
fn unknown_source() {
    Test::new()
        .plan(
            r#"
        name = "shop"
        [backend]
        type = "command"
        set_weight = ["./set-weight.sh"]

        [sources.prometheus]
        type = "prometheus"
        url = "http://127.0.0.1:9090"

        [[metrics]]
        name = "errors"
        source = "prom"
        query = "sum(rate(errors_total[1m]))"
        rollback = "> 0.05"

        [[stages]]
        weight = 100
            "#,
        )
        .args(&["validate", "plan.toml"])
        .status(2)
        .stderr(
            r#"
        error: metrics[0].source: no source named `prom`
          --> plan.toml:12:10
           |
        12 | source = "prom"
           |          ^^^^^^ unknown source
           |
           = help: did you mean "prometheus"?

        plan.toml: invalid (1 error)
            "#,
        )
        .run();
}

#[test]
fn unknown_stage_metric() {
    Test::new()
        .plan(
            r#"
        name = "shop"
        [backend]
        type = "command"
        set_weight = ["./set-weight.sh"]

        [sources.prom]
        type = "prometheus"
        url = "http://127.0.0.1:9090"

        [[metrics]]
        name = "error-rate"
        source = "prom"
        query = "sum(rate(errors_total[1m]))"
        rollback = "> 0.05"

        [[stages]]
        weight = 100
        metrics = ["error_rate"]
            "#,
        )
        .args(&["validate", "plan.toml"])
        .status(2)
        .stderr(
            r#"
        error: stages[0].metrics: no metric named `error_rate`
          --> plan.toml:18:12
           |
        18 | metrics = ["error_rate"]
           |            ^^^^^^^^^^^^ unknown metric
           |
           = help: did you mean "error-rate"?

        plan.toml: invalid (1 error)
            "#,
        )
        .run();
}

#[test]
fn warnings_only() {
    Test::new()
        .plan(
            r#"
        name = "shop"
        [backend]
        type = "command"
        set_weight = ["./set-weight.sh"]

        [sources.prom]
        type = "prometheus"
        url = "http://127.0.0.1:9090"

        [[metrics]]
        name = "latency"
        source = "prom"
        query = "histogram_quantile(0.99, x)"
        advance = "< 300"
        rollback = "> 200"

        [[stages]]
        weight = 100
        bake = "0s"
            "#,
        )
        .args(&["validate", "plan.toml"])
        .status(0)
        .stderr(
            r#"
        warning: metrics[0].rollback: some values both pass `advance` (< 300) and breach `rollback` (> 200)
          --> plan.toml:15:12
           |
        15 | rollback = "> 200"
           |            ^^^^^^^ overlaps the advance range
           |
           = help: a breach wins: those values roll back. Make the ranges disjoint if that is not intended

        warning: stages[0].bake: the 100% stage has no bake
          --> plan.toml:19:8
           |
        19 | bake = "0s"
           |        ^^^^ promotes as soon as the gates first pass
           |
           = help: give the last stage a bake so a late regression can still roll back, e.g. bake = "10m"

        plan.toml: valid (2 warnings)
            "#,
        )
        .run();
}

#[test]
fn weight_out_of_range() {
    Test::new()
        .plan(
            r#"
        name = "shop"
        [backend]
        type = "command"
        set_weight = ["./set-weight.sh"]

        [[stages]]
        weight = 120
            "#,
        )
        .args(&["validate", "plan.toml"])
        .status(2)
        .stderr(
            r#"
        error: stages[0].weight: weight 120 is outside 0..=100
         --> plan.toml:7:10
          |
        7 | weight = 120
          |          ^^^ not a percentage
          |
          = help: a weight is the percent of traffic sent to the new version, from 0 to 100

        plan.toml: invalid (1 error)
            "#,
        )
        .run();
}

#[test]
fn weights_decrease() {
    Test::new()
        .plan(
            r#"
        name = "shop"
        [backend]
        type = "command"
        set_weight = ["./set-weight.sh"]

        [[stages]]
        weight = 50

        [[stages]]
        weight = 10

        [[stages]]
        weight = 100
            "#,
        )
        .args(&["validate", "plan.toml"])
        .status(2)
        .stderr(
            r#"
        warning: stages[0].weight: the plan has no metrics: no stage is gated
         --> plan.toml:7:10
          |
        7 | weight = 50
          |          ^^ every stage advances on time alone
          |
          = help: add [[metrics]] with advance/rollback conditions so a bad release can be caught

        error: stages[1].weight: weight 10 is lower than the previous stage's 50
          --> plan.toml:10:10
           |
        10 | weight = 10
           |          ^^ weights must never decrease
           |
           = help: use a weight of at least 50, or reorder the stages

        plan.toml: invalid (1 error, 1 warning)
            "#,
        )
        .run();
}

#[test]
fn wrong_type() {
    Test::new()
        .plan(
            r#"
        name = "shop"
        [backend]
        type = "command"
        set_weight = ["./set-weight.sh"]

        [[stages]]
        weight = "50"
            "#,
        )
        .args(&["validate", "plan.toml"])
        .status(2)
        .stderr(
            r#"
        error: stages[0].weight: expected a number, found a string
         --> plan.toml:7:10
          |
        7 | weight = "50"
          |          ^^^^ this is a string
          |
          = help: for example: weight = 25

        plan.toml: invalid (1 error)
            "#,
        )
        .run();
}

#[test]
fn validate_json_lists_every_diagnostic_with_its_position() {
    let stdout = Test::new()
        .plan(
            r#"
        name = "Shop"
        [backend]
        type = "command"
        set_weight = ["./set-weight.sh"]

        [[stages]]
        weight = 100
            "#,
        )
        .file("good.toml", "name = \"ok\"\n[backend]\ntype = \"command\"\nset_weight = [\"x\"]\n[[stages]]\nweight = 100\n")
        .args(&["validate", "plan.toml", "good.toml", "missing.toml", "--output", "json"])
        .status(2)
        .stderr("")
        .run()
        .stdout();
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(json["valid"], false);
    let files = json["files"].as_array().unwrap();
    assert_eq!(files.len(), 3);
    let bad = &files[0];
    assert_eq!(
        (
            bad["file"].as_str(),
            bad["valid"].as_bool(),
            bad["errors"].as_u64()
        ),
        (Some("plan.toml"), Some(false), Some(1))
    );
    let first = &bad["diagnostics"][0];
    assert_eq!(first["severity"], "error");
    assert_eq!(first["path"], "name");
    assert_eq!(
        (first["line"].as_u64(), first["column"].as_u64()),
        (Some(1), Some(8))
    );
    assert_eq!(
        (first["end_line"].as_u64(), first["end_column"].as_u64()),
        (Some(1), Some(14))
    );
    assert_eq!(first["message"], "`Shop` is not a valid name");
    assert!(first["help"].as_str().unwrap().contains("lowercase"));
    assert_eq!(files[1]["valid"], true);
    assert_eq!(
        files[1]["warnings"], 1,
        "the no-metrics warning: {}",
        files[1]
    );
    assert_eq!(files[2]["valid"], false);
    assert!(
        files[2]["diagnostics"][0]["message"]
            .as_str()
            .unwrap()
            .starts_with("cannot read missing.toml")
    );
}

/// nginx weights are integers: a stage weight finer than 0.001% would silently round to a
/// neighbouring split (0.0004% to no canary server at all), so validation refuses it.
#[test]
fn nginx_weights_finer_than_the_smallest_step() {
    Test::new()
        .plan(
            r#"
        name = "shop"
        [backend]
        type = "nginx"
        upstream_file = "/etc/nginx/conf.d/app.conf"
        upstream = "app"
        stable = ["127.0.0.1:8001"]
        canary = ["127.0.0.1:8002"]
        pid_file = "/run/nginx.pid"

        [[stages]]
        weight = 0.0004

        [[stages]]
        weight = 0.001

        [[stages]]
        weight = 33.3333

        [[stages]]
        weight = 99.9996

        [[stages]]
        weight = 100
            "#,
        )
        .args(&["validate", "plan.toml"])
        .status(2)
        .stderr(
            r#"
        error: stages[0].weight: stage 1's weight 0.0004% is finer than the nginx backend can split traffic
          --> plan.toml:11:10
           |
        11 | weight = 0.0004
           |          ^^^^^^ not a multiple of 0.001%
           |
           = help: nginx weights here move traffic in steps of 0.001%; use 0 or 0.001

        warning: stages[0].weight: the plan has no metrics: no stage is gated
          --> plan.toml:11:10
           |
        11 | weight = 0.0004
           |          ^^^^^^ every stage advances on time alone
           |
           = help: add [[metrics]] with advance/rollback conditions so a bad release can be caught

        error: stages[2].weight: stage 3's weight 33.3333% is finer than the nginx backend can split traffic
          --> plan.toml:17:10
           |
        17 | weight = 33.3333
           |          ^^^^^^^ not a multiple of 0.001%
           |
           = help: nginx weights here move traffic in steps of 0.001%; use 33.333 or 33.334

        error: stages[3].weight: stage 4's weight 99.9996% is finer than the nginx backend can split traffic
          --> plan.toml:20:10
           |
        20 | weight = 99.9996
           |          ^^^^^^^ not a multiple of 0.001%
           |
           = help: nginx weights here move traffic in steps of 0.001%; use 99.999 or 100

        plan.toml: invalid (3 errors, 1 warning)
            "#,
        )
        .run();
}

/// A wrapper around nginx's test cannot be turned into `nginx -T`, so rollout cannot check
/// which upstream file nginx loads: a warning, not an error.
#[test]
fn nginx_test_command_wrapper_warns() {
    Test::new()
        .plan(
            r#"
        name = "shop"
        [backend]
        type = "nginx"
        upstream_file = "/etc/nginx/conf.d/app.conf"
        upstream = "app"
        stable = ["127.0.0.1:8001"]
        canary = ["127.0.0.1:8002"]
        test_command = ["sh", "-c", "sleep 1; nginx -t"]
        pid_file = "/run/nginx.pid"

        [[metrics]]
        name = "errors"
        source = "c"
        run = ["./errors.sh"]
        advance = "< 1"

        [sources.c]
        type = "command"

        [[stages]]
        weight = 100
            "#,
        )
        .args(&["validate", "plan.toml"])
        .stderr(
            r#"
        warning: backend.test_command: rollout cannot check that nginx loads the upstream file
         --> plan.toml:8:16
          |
        8 | test_command = ["sh", "-c", "sleep 1; nginx -t"]
          |                ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^ not an `nginx ... -t` command
          |
          = help: rollout runs test_command with -T in place of -t to read nginx's configuration and confirm, after every reload, that it includes this write of upstream_file; it cannot for a wrapper, so only pid_file or verify_command confirm reloads. Run nginx with -t directly, or behind a prefix such as sudo or docker exec NAME

        plan.toml: valid (1 warning)
            "#,
        )
        .run();
}

/// `[state]`: a URL rollout cannot keep state at, a lease too short to renew, a stray field.
#[test]
fn state_table_mistakes() {
    Test::new()
        .plan(
            r#"
        name = "shop"
        [state]
        url = "ftp://deploys/rollouts"
        lease = "1s"
        owner = "me"
        [backend]
        type = "command"
        set_weight = ["./set-weight.sh"]

        [[stages]]
        weight = 100
            "#,
        )
        .args(&["validate", "plan.toml"])
        .status(2)
        .stderr(
            r#"
        error: state.url: `ftp://deploys/rollouts` is not a state URL rollout can use
         --> plan.toml:3:7
          |
        3 | url = "ftp://deploys/rollouts"
          |       ^^^^^^^^^^^^^^^^^^^^^^^^ unknown scheme
          |
          = help: use a folder path, or file://, s3://, gs://, az://; for example: url = "s3://my-bucket/rollouts"

        error: state.lease: a lease must last at least 3s
         --> plan.toml:4:9
          |
        4 | lease = "1s"
          |         ^^^^ too short
          |
          = help: the holder renews it every third of its length, one store round trip each; for example: lease = "30s"

        error: state.owner: unknown field `owner`
         --> plan.toml:5:1
          |
        5 | owner = "me"
          | ^^^^^ unknown field
          |
          = help: valid fields here: `lease`, `url`

        warning: stages[0].weight: the plan has no metrics: no stage is gated
          --> plan.toml:11:10
           |
        11 | weight = 100
           |          ^^^ every stage advances on time alone
           |
           = help: add [[metrics]] with advance/rollback conditions so a bad release can be caught

        plan.toml: invalid (3 errors, 1 warning)
        "#,
        )
        .run();
}

/// ALB target groups take weights 0..=999: tenths of a percent are exact, anything finer would
/// be rounded while events said otherwise.
#[test]
fn alb_weights_finer_than_a_tenth_of_a_percent() {
    Test::new()
        .plan(
            r#"
        name = "shop"
        [backend]
        type = "ecs"
        cluster = "prod"
        mode = "alb"
        listener_arn = "arn:aws:elasticloadbalancing:us-east-1:1:listener/app/web/1/2"
        stable_target_group = "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/stable/1"
        canary_target_group = "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/canary/2"

        [[stages]]
        weight = 0.05
        [[stages]]
        weight = 100
            "#,
        )
        .args(&["validate", "plan.toml"])
        .status(2)
        .stderr(
            r#"
        error: stages[0].weight: stage 1's weight 0.05% is finer than the ECS ALB backend can split traffic
          --> plan.toml:11:10
           |
        11 | weight = 0.05
           |          ^^^^ not a multiple of 0.1%
           |
           = help: ECS ALB weights here move traffic in steps of 0.1%; use 0 or 0.1

        warning: stages[0].weight: the plan has no metrics: no stage is gated
          --> plan.toml:11:10
           |
        11 | weight = 0.05
           |          ^^^^ every stage advances on time alone
           |
           = help: add [[metrics]] with advance/rollback conditions so a bad release can be caught

        plan.toml: invalid (1 error, 1 warning)
        "#,
        )
        .run();
}

#[test]
fn window_fields_are_checked_in_the_zone_they_name() {
    Test::new()
        .plan(
            r#"
        name = "shop"
        [backend]
        type = "command"
        set_weight = ["true"]

        [window]
        days = ["mon", "tuesday", "frd"]
        hours = "16:00-09:00"
        timezone = "Europe/Berlinn"
        freeze = ["2026-12-20/2027-01-04", "2026-13-01", "2027-01-04/2026-12-20"]
        weekends = false

        [[stages]]
        weight = 100
            "#,
        )
        .args(&["validate", "plan.toml"])
        .status(2)
        .stderr(
            r#"
        error: window.days: `frd` is not a day of the week
         --> plan.toml:7:27
          |
        7 | days = ["mon", "tuesday", "frd"]
          |                           ^^^^^ unknown day
          |
          = help: did you mean "fri"?

        error: window.hours: `16:00-09:00` ends before it starts
         --> plan.toml:8:10
          |
        8 | hours = "16:00-09:00"
          |          ^^^^^^^^^^^ empty or overnight range
          |
          = help: a window's hours lie within one day, from 00:00 up to 24:00, e.g. "09:00-16:00"

        error: window.timezone: `Europe/Berlinn` is not a time zone rollout knows
         --> plan.toml:9:12
          |
        9 | timezone = "Europe/Berlinn"
          |            ^^^^^^^^^^^^^^^^ unknown time zone
          |
          = help: did you mean "Europe/Berlin"?

        error: window.freeze: `2026-13-01` is not a freeze period
          --> plan.toml:10:36
           |
        10 | freeze = ["2026-12-20/2027-01-04", "2026-13-01", "2027-01-04/2026-12-20"]
           |                                    ^^^^^^^^^^^^ expected YYYY-MM-DD/YYYY-MM-DD
           |
           = help: write the first and last day frozen, both included: "2026-12-20/2027-01-04" (or one day: "2026-12-25")

        error: window.freeze: `2027-01-04/2026-12-20` is not a freeze period
          --> plan.toml:10:50
           |
        10 | freeze = ["2026-12-20/2027-01-04", "2026-13-01", "2027-01-04/2026-12-20"]
           |                                                  ^^^^^^^^^^^^^^^^^^^^^^^ the last day is before the first
           |
           = help: write the first and last day frozen, both included: "2026-12-20/2027-01-04" (or one day: "2026-12-25")

        error: window.weekends: unknown field `weekends`
          --> plan.toml:11:1
           |
        11 | weekends = false
           | ^^^^^^^^ unknown field
           |
           = help: valid fields here: `days`, `freeze`, `hours`, `timezone`

        warning: stages[0].weight: the plan has no metrics: no stage is gated
          --> plan.toml:14:10
           |
        14 | weight = 100
           |          ^^^ every stage advances on time alone
           |
           = help: add [[metrics]] with advance/rollback conditions so a bad release can be caught

        plan.toml: invalid (6 errors, 1 warning)
        "#,
        )
        .run();
}

#[test]
fn notify_entries_keep_their_secrets() {
    Test::new()
        .plan(
            r#"
        name = "shop"
        [defaults]
        stuck_after = "0s"

        [backend]
        type = "command"
        set_weight = ["true"]

        [[notify]]
        type = "slack"
        url = "https://hooks.slack.com/services/T0/B0/SECRETXYZ"
        secret = "abc"
        on = ["promoted", "rolledback"]

        [[notify]]
        type = "webhook"
        url = "ftp://${HOOK_HOST}/hook"
        secret = "literal-secret"
        headers = { Authorization = "Bearer tok123" }
        on = []

        [[notify]]
        type = "email"
        url = "${HOOK_URL}"

        [[stages]]
        weight = 100
            "#,
        )
        .args(&["validate", "plan.toml"])
        .status(2)
        .stderr(
            r#"
        error: defaults.stuck_after: must be longer than zero
         --> plan.toml:3:15
          |
        3 | stuck_after = "0s"
          |               ^^^^ zero
          |
          = help: for example: "30s"

        error: notify[0].secret: unknown field `secret`
          --> plan.toml:12:1
           |
        12 | secret = *****
           | ^^^^^^ not valid here
           |
           = help: a Slack incoming webhook takes no `secret`; use type = "webhook" for a signed or authenticated endpoint

        error: notify[0].on: `rolledback` is not one of "started", "stage-started", "stage-passed", "approval-needed", "stuck", "promoted", "rolled-back", "paused" or "rollback-failed"
          --> plan.toml:13:19
           |
        13 | on = ["promoted", "rolledback"]
           |                   ^^^^^^^^^^^^ unknown value
           |
           = help: did you mean "rolled-back"?

        error: notify[1].url: is not an http:// or https:// URL
          --> plan.toml:17:7
           |
        17 | url = *************************
           |       ^^^^^^^^^^^^^^^^^^^^^^^^^ expected a URL
           |
           = help: for example: "http://127.0.0.1:9090"

        warning: notify[1].secret: a signing secret is written into the plan file
          --> plan.toml:18:10
           |
        18 | secret = ****************
           |          ^^^^^^^^^^^^^^^^ read it from the environment instead
           |
           = help: for example: secret = "${ROLLOUT_WEBHOOK_SECRET}"

        warning: notify[1].headers.Authorization: a credential is written into the plan file
          --> plan.toml:19:29
           |
        19 | headers = { Authorization = *************** }
           |                             ^^^^^^^^^^^^^^^ read it from the environment instead
           |
           = help: for example: Authorization = "Bearer ${PROM_TOKEN}"

        error: notify[1].on: `on` names no event
          --> plan.toml:20:6
           |
        20 | on = []
           |      ^^ empty
           |
           = help: name the events to send, e.g. on = ["rolled-back", "rollback-failed"], or leave `on` out for the defaults

        error: notify[2].type: `email` is not one of "slack" or "webhook"
          --> plan.toml:23:8
           |
        23 | type = "email"
           |        ^^^^^^^ unknown value
           |
           = help: use one of "slack" or "webhook"

        warning: stages[0].weight: the plan has no metrics: no stage is gated
          --> plan.toml:27:10
           |
        27 | weight = 100
           |          ^^^ every stage advances on time alone
           |
           = help: add [[metrics]] with advance/rollback conditions so a bad release can be caught

        plan.toml: invalid (6 errors, 3 warnings)
        "#,
        )
        .run();
}

// The feature-flag backends and segments (flagd, unleash, [backend.segments]).

#[test]
fn flagd_fields_are_checked() {
    Test::new()
        .plan(
            r#"
        name = "shop"
        [backend]
        type = "flagd"
        flags_file = ""
        on_variant = "v2"
        off_variant = "v2"
        cleanup_after = "soon"

        [[stages]]
        weight = 100
            "#,
        )
        .args(&["validate", "plan.toml"])
        .status(2)
        .stderr(
            r#"
        error: backend.flag: missing field `flag`
         --> plan.toml:2:1
          |
        2 | [backend]
          | ^^^^^^^^^ `backend` needs `flag`
          |
          = help: add it, for example: flag = "new-checkout"

        error: backend.flags_file: must not be empty
         --> plan.toml:4:14
          |
        4 | flags_file = ""
          |              ^^ empty

        error: backend.cleanup_after: `soon` is not a duration
         --> plan.toml:7:17
          |
        7 | cleanup_after = "soon"
          |                 ^^^^^^ expected number at 0
          |
          = help: use a number with a unit: "500ms", "30s", "5m", "1h 30m"

        warning: stages[0].weight: the plan has no metrics: no stage is gated
          --> plan.toml:10:10
           |
        10 | weight = 100
           |          ^^^ every stage advances on time alone
           |
           = help: add [[metrics]] with advance/rollback conditions so a bad release can be caught

        plan.toml: invalid (3 errors, 1 warning)
            "#,
        )
        .run();
}

#[test]
fn a_flagd_weight_finer_than_its_fractional_split_names_the_step() {
    Test::new()
        .plan(
            r#"
        name = "shop"
        [backend]
        type = "flagd"
        flags_file = "/etc/flagd/flags.json"
        flag = "new-checkout"

        [[stages]]
        weight = 0.0005
        [[stages]]
        weight = 100
            "#,
        )
        .args(&["validate", "plan.toml"])
        .status(2)
        .stderr(
            r#"
        error: stages[0].weight: stage 1's weight 0.0005% is finer than the flagd backend can split users
         --> plan.toml:8:10
          |
        8 | weight = 0.0005
          |          ^^^^^^ not a multiple of 0.001%
          |
          = help: the flagd backend's smallest step is 0.001%; use 0 or 0.001

        warning: stages[0].weight: the plan has no metrics: no stage is gated
         --> plan.toml:8:10
          |
        8 | weight = 0.0005
          |          ^^^^^^ every stage advances on time alone
          |
          = help: add [[metrics]] with advance/rollback conditions so a bad release can be caught

        plan.toml: invalid (1 error, 1 warning)
            "#,
        )
        .run();
}

#[test]
fn an_unleash_weight_must_be_a_whole_percent() {
    Test::new()
        .plan(
            r#"
        name = "shop"
        [backend]
        type = "unleash"
        url = "https://unleash.example.com"
        token = "${UNLEASH_TOKEN}"
        environment = "production"
        flag = "new-checkout"

        [[stages]]
        weight = 12.5
        [[stages]]
        weight = 100
            "#,
        )
        .args(&["validate", "plan.toml"])
        .status(2)
        .stderr(
            r#"
        error: stages[0].weight: stage 1's weight 12.5% is finer than the unleash backend can split users
          --> plan.toml:10:10
           |
        10 | weight = 12.5
           |          ^^^^ not a multiple of 1%
           |
           = help: the unleash backend's smallest step is 1%; use 12 or 13

        warning: stages[0].weight: the plan has no metrics: no stage is gated
          --> plan.toml:10:10
           |
        10 | weight = 12.5
           |          ^^^^ every stage advances on time alone
           |
           = help: add [[metrics]] with advance/rollback conditions so a bad release can be caught

        plan.toml: invalid (1 error, 1 warning)
            "#,
        )
        .run();
}

#[test]
fn segment_definitions_and_references_are_checked() {
    Test::new()
        .plan(
            r#"
        name = "shop"
        [backend]
        type = "flagd"
        flags_file = "/etc/flagd/flags.json"
        flag = "new-checkout"

        [backend.segments.staff]
        attribute = "email"
        ends_with = "@example.com"
        in = ["a@example.com"]

        [backend.segments.beta]
        header = "X-Beta"

        [backend.segments.dach]
        attribute = "country"
        in = []

        [backend.segments.Testers]
        attribute = "plan"
        equals = "beta"

        [[stages]]
        weight = 0
        segments = ["stafff"]
        [[stages]]
        weight = 100
            "#,
        )
        .args(&["validate", "plan.toml"])
        .status(2)
        .stderr(
            r#"
        error: backend.segments.staff.in: a segment matches in one way only; `in` is a second one
          --> plan.toml:10:6
           |
        10 | in = ["a@example.com"]
           |      ^^^^^^^^^^^^^^^^^ second test
           |
           = help: give exactly one of `equals`, `ends_with` or `in`; define another segment for another group

        error: backend.segments.beta.header: unknown field `header`
          --> plan.toml:13:1
           |
        13 | header = "X-Beta"
           | ^^^^^^ not valid here
           |
           = help: `header` defines a segment of requests (nginx, kubectl with mode = "gateway"); a flag backend's segment matches a context attribute: attribute = "email" with one of `equals`, `ends_with` or `in`

        error: backend.segments.dach.in: the list is empty: nobody would be in the segment
          --> plan.toml:17:6
           |
        17 | in = []
           |      ^^ empty
           |
           = help: list at least one value, e.g. in = ["de", "fr"]

        error: backend.segments.Testers: `Testers` is not a valid segment name
          --> plan.toml:19:19
           |
        19 | [backend.segments.Testers]
           |                   ^^^^^^^ invalid name
           |
           = help: names are lowercase letters, digits and `-`, starting with a letter or digit, e.g. "beta-testers"

        warning: stages[0].weight: the plan has no metrics: no stage is gated
          --> plan.toml:24:10
           |
        24 | weight = 0
           |          ^ every stage advances on time alone
           |
           = help: add [[metrics]] with advance/rollback conditions so a bad release can be caught

        error: stages[0].segments: no segment named `stafff`
          --> plan.toml:25:13
           |
        25 | segments = ["stafff"]
           |             ^^^^^^^^ unknown segment
           |
           = help: define it under [backend.segments.NAME] first

        plan.toml: invalid (5 errors, 1 warning)
            "#,
        )
        .run();
}

#[test]
fn segments_accumulate_and_unused_ones_are_named() {
    Test::new()
        .plan(
            r#"
        name = "shop"
        [backend]
        type = "flagd"
        flags_file = "/etc/flagd/flags.json"
        flag = "new-checkout"

        [backend.segments.staff]
        attribute = "email"
        ends_with = "@example.com"

        [backend.segments.dach]
        attribute = "country"
        in = ["de", "at"]

        [[stages]]
        weight = 0
        segments = ["staff"]
        bake = "10m"
        [[stages]]
        weight = 10
        segments = ["staff"]
        [[stages]]
        weight = 100
            "#,
        )
        .args(&["validate", "plan.toml"])
        .status(0)
        .stderr(
            r#"
        warning: backend.segments.dach: segment `dach` is defined but no stage uses it
          --> plan.toml:11:19
           |
        11 | [backend.segments.dach]
           |                   ^^^^ unused
           |
           = help: add it to a stage: segments = ["NAME"]

        warning: stages[0].weight: the plan has no metrics: no stage is gated
          --> plan.toml:16:10
           |
        16 | weight = 0
           |          ^ every stage advances on time alone
           |
           = help: add [[metrics]] with advance/rollback conditions so a bad release can be caught

        warning: stages[1].segments: `staff` already gets the new version since stage 1
          --> plan.toml:21:13
           |
        21 | segments = ["staff"]
           |             ^^^^^^^ listed again
           |
           = help: segments stay on in every later stage until promotion or rollback; list each one once, at the stage that switches it on

        plan.toml: valid (3 warnings)
            "#,
        )
        .run();
}

#[test]
fn segments_on_nginx_without_a_location_file_are_refused_at_the_stage() {
    Test::new()
        .plan(
            r#"
        name = "shop"
        [backend]
        type = "nginx"
        upstream_file = "/etc/nginx/conf.d/app.conf"
        upstream = "app"
        stable = ["127.0.0.1:8001"]
        canary = ["127.0.0.1:8002"]
        pid_file = "/run/nginx.pid"

        [backend.segments.beta]
        cookie = "beta"
        value = "yes"

        [backend.segments.mobile]
        header = "X Mobile"

        [[stages]]
        weight = 0
        segments = ["beta"]
        [[stages]]
        weight = 100
            "#,
        )
        .args(&["validate", "plan.toml"])
        .status(2)
        .stderr(
            r#"
        error: backend.segments.mobile.header: `X Mobile` is not a valid header name
          --> plan.toml:15:10
           |
        15 | header = "X Mobile"
           |          ^^^^^^^^^^ invalid header name
           |
           = help: names are letters, digits and `-`, e.g. "X-Canary"

        warning: stages[0].weight: the plan has no metrics: no stage is gated
          --> plan.toml:18:10
           |
        18 | weight = 0
           |          ^ every stage advances on time alone
           |
           = help: add [[metrics]] with advance/rollback conditions so a bad release can be caught

        error: stages[0].segments: stage 1 routes segments, which the nginx backend does through `location_file`, and [backend] has none
          --> plan.toml:19:12
           |
        19 | segments = ["beta"]
           |            ^^^^^^^^ needs location_file
           |
           = help: add location_file = "/etc/nginx/conf.d/app-location.inc" to [backend], create that file empty, and add `include /etc/nginx/conf.d/app-location.inc;` inside the location that proxies to http://app, before its proxy_pass

        plan.toml: invalid (2 errors, 1 warning)
            "#,
        )
        .run();
}

#[test]
fn an_unleash_literal_token_is_never_shown() {
    Test::new()
        .plan(
            r#"
        name = "shop"
        [backend]
        type = "unleash"
        url = "unleash.example.com"
        token = "*:production.0123456789abcdef"
        environment = "prod uction"
        flag = "new-checkout"

        [[stages]]
        weight = 100
            "#,
        )
        .args(&["validate", "plan.toml"])
        .status(2)
        .stderr(
            r#"
        error: backend.url: is not an http:// or https:// URL
         --> plan.toml:4:7
          |
        4 | url = "unleash.example.com"
          |       ^^^^^^^^^^^^^^^^^^^^^ expected a URL
          |
          = help: the Unleash server's address, e.g. "https://unleash.example.com"

        warning: backend.token: a credential is written into the plan file
         --> plan.toml:5:9
          |
        5 | token = *******************************
          |         ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^ read it from the environment instead
          |
          = help: for example: token = "${UNLEASH_TOKEN}"

        error: backend.environment: `prod uction` is not a name Unleash accepts
         --> plan.toml:6:15
          |
        6 | environment = "prod uction"
          |               ^^^^^^^^^^^^^ not URL-friendly
          |
          = help: Unleash names are letters, digits, `-`, `_`, `.` and `~`

        warning: stages[0].weight: the plan has no metrics: no stage is gated
          --> plan.toml:10:10
           |
        10 | weight = 100
           |          ^^^ every stage advances on time alone
           |
           = help: add [[metrics]] with advance/rollback conditions so a bad release can be caught

        plan.toml: invalid (2 errors, 2 warnings)
            "#,
        )
        .run();
}

#[test]
fn judge_with_conditions() {
    Test::new()
        .plan(
            r#"
        name = "shop"
        [backend]
        type = "command"
        set_weight = ["./set-weight.sh"]

        [sources.prom]
        type = "prometheus"
        url = "http://127.0.0.1:9090"

        [[metrics]]
        name = "latency"
        source = "prom"
        query = 'rate(latency_sum{track="canary"}[1m]) / rate(latency_count{track="canary"}[1m])'
        baseline = 'rate(latency_sum{track="stable"}[1m]) / rate(latency_count{track="stable"}[1m])'
        judge = "mann-whitney"
        rollback = "> 0.5"

        [[stages]]
        weight = 10
        [[stages]]
        weight = 100
        metrics = []
            "#,
        )
        .args(&["validate", "plan.toml"])
        .status(2)
        .stderr(
            r#"
        error: metrics[0].rollback: `rollback` cannot be combined with `judge`
          --> plan.toml:16:12
           |
        16 | rollback = "> 0.5"
           |            ^^^^^^^ the judge decides this metric
           |
           = help: a judged metric compares the canary's samples with the baseline's; remove `advance` and `rollback`, or remove `judge`

        plan.toml: invalid (1 error)
            "#,
        )
        .run();
}

#[test]
fn judge_without_baseline_and_judge_fields_without_judge() {
    Test::new()
        .plan(
            r#"
        name = "shop"
        [backend]
        type = "command"
        set_weight = ["./set-weight.sh"]

        [sources.prom]
        type = "prometheus"
        url = "http://127.0.0.1:9090"

        [[metrics]]
        name = "latency"
        source = "prom"
        query = 'rate(latency_sum{track="canary"}[1m]) / rate(latency_count{track="canary"}[1m])'
        judge = "mann-whitney"
        tolerance = 0.1

        [[metrics]]
        name = "errors"
        source = "prom"
        query = 'sum(rate(errors_total[1m]))'
        rollback = "> 0.05"
        rollback_after = 3
        max_breaches = 2
        window = "10m"

        [[stages]]
        weight = 10
        [[stages]]
        weight = 100
        metrics = []
            "#,
        )
        .args(&["validate", "plan.toml"])
        .status(2)
        .stderr(
            r#"
        error: metrics[0].judge: a judged metric needs `baseline` to compare with
          --> plan.toml:14:9
           |
        14 | judge = "mann-whitney"
           |         ^^^^^^^^^^^^^^ nothing to compare the canary with
           |
           = help: add the stable version's samples, for example: baseline = 'rate(latency_sum{track="stable"}[1m]) / rate(latency_count{track="stable"}[1m])'

        warning: metrics[1].max_breaches: max_breaches (2) is below rollback_after (3): 2 breaches in a stage roll back, in a row or not
          --> plan.toml:23:16
           |
        23 | max_breaches = 2
           |                ^ rollback_after never decides
           |
           = help: raise max_breaches to 3 or more, or set max_breaches = 0 to count only breaches in a row

        error: metrics[1].window: `window` applies only to a judged metric
          --> plan.toml:24:10
           |
        24 | window = "10m"
           |          ^^^^^ the metric has no `judge`
           |
           = help: add judge = "mann-whitney" to compare the canary's samples with the baseline's, or remove it

        plan.toml: invalid (2 errors, 1 warning)
            "#,
        )
        .run();
}

// Mirrored (shadow) traffic and what nginx and the gateway need for it and for segments.

#[test]
fn mirror_on_a_backend_that_cannot_copy_requests_is_refused_naming_the_stage() {
    Test::new()
        .plan(
            r#"
        name = "shop"
        [backend]
        type = "ecs"
        mode = "alb"
        cluster = "prod"
        listener_arn = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:listener/app/shop/1/2"
        stable_target_group = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/stable/1"
        canary_target_group = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/canary/2"

        [[stages]]
        weight = 0
        [[stages]]
        weight = 10
        mirror = 20
        [[stages]]
        weight = 100
            "#,
        )
        .args(&["validate", "plan.toml"])
        .status(2)
        .stderr(
            r#"
        warning: stages[1].weight: the plan has no metrics: no stage is gated
          --> plan.toml:13:10
           |
        13 | weight = 10
           |          ^^ every stage advances on time alone
           |
           = help: add [[metrics]] with advance/rollback conditions so a bad release can be caught

        error: stages[1].mirror: stage 2 mirrors requests, but the ecs backend cannot copy them
          --> plan.toml:14:10
           |
        14 | mirror = 20
           |          ^^ not supported by this backend
           |
           = help: mirroring works with the nginx backend (with location_file) and the kubectl backend with mode = "gateway"; leave `mirror` out here

        plan.toml: invalid (1 error, 1 warning)
            "#,
        )
        .run();
}

/// Said once, at the first stage that needs the file, with the line to add to nginx's location.
#[test]
fn mirror_and_segments_on_nginx_without_a_location_file_say_what_to_include() {
    Test::new()
        .plan(
            r#"
        name = "shop"
        [backend]
        type = "nginx"
        upstream_file = "/etc/nginx/conf.d/shop.conf"
        upstream = "shop"
        stable = ["127.0.0.1:8001"]
        canary = ["127.0.0.1:8002"]
        pid_file = "/run/nginx.pid"

        [backend.segments.beta]
        header = "X-Beta"

        [[stages]]
        weight = 0
        mirror = 5
        [[stages]]
        weight = 0
        segments = ["beta"]
        [[stages]]
        weight = 100
            "#,
        )
        .args(&["validate", "plan.toml"])
        .status(2)
        .stderr(
            r#"
        warning: stages[0].weight: the plan has no metrics: no stage is gated
          --> plan.toml:14:10
           |
        14 | weight = 0
           |          ^ every stage advances on time alone
           |
           = help: add [[metrics]] with advance/rollback conditions so a bad release can be caught

        error: stages[0].mirror: stage 1 mirrors requests, which the nginx backend does through `location_file`, and [backend] has none
          --> plan.toml:15:10
           |
        15 | mirror = 5
           |          ^ needs location_file
           |
           = help: add location_file = "/etc/nginx/conf.d/shop-location.inc" to [backend], create that file empty, and add `include /etc/nginx/conf.d/shop-location.inc;` inside the location that proxies to http://shop, before its proxy_pass

        plan.toml: invalid (1 error, 1 warning)
            "#,
        )
        .run();
}

#[test]
fn nginx_mirror_methods_segment_headers_and_values_are_checked() {
    Test::new()
        .plan(
            r#"
        name = "shop"
        [backend]
        type = "nginx"
        upstream_file = "/etc/nginx/conf.d/shop.conf"
        upstream = "shop"
        stable = ["127.0.0.1:8001"]
        canary = ["127.0.0.1:8002"]
        pid_file = "/run/nginx.pid"
        location_file = "/etc/nginx/shop-location.inc"
        mirror_methods = ["get", "POST", "POST", "FETCH"]

        [backend.segments.beta]
        header = "X_Beta"

        [backend.segments.mobile]
        cookie = "platform"
        value = "ios  17"

        [[stages]]
        weight = 0
        segments = ["beta", "mobile"]
        [[stages]]
        weight = 100
            "#,
        )
        .args(&["validate", "plan.toml"])
        .status(2)
        .stderr(
            r#"
        error: backend.mirror_methods: `get` is not an HTTP method rollout can mirror
          --> plan.toml:10:19
           |
        10 | mirror_methods = ["get", "POST", "POST", "FETCH"]
           |                   ^^^^^ unknown method
           |
           = help: did you mean "GET"? Methods are written in capitals

        error: backend.mirror_methods: `POST` is listed twice
          --> plan.toml:10:34
           |
        10 | mirror_methods = ["get", "POST", "POST", "FETCH"]
           |                                  ^^^^^^ duplicate
           |
           = help: list each method once

        error: backend.mirror_methods: `FETCH` is not an HTTP method rollout can mirror
          --> plan.toml:10:42
           |
        10 | mirror_methods = ["get", "POST", "POST", "FETCH"]
           |                                          ^^^^^^^ unknown method
           |
           = help: valid methods: GET, HEAD, POST, PUT, DELETE, CONNECT, OPTIONS, TRACE, PATCH

        error: backend.segments.beta.header: nginx cannot match the header `X_Beta` of segment `beta`
          --> plan.toml:13:10
           |
        13 | header = "X_Beta"
           |          ^^^^^^^^ only letters, digits and `-` here
           |
           = help: nginx reads a request header through a $http_ variable, which takes letters, digits and `-` (and ignores headers with `_` by default); use a name such as "X-Canary"

        error: backend.segments.mobile.value: `ios  17` cannot be a header or cookie value
          --> plan.toml:17:9
           |
        17 | value = "ios  17"
           |         ^^^^^^^^^ not printable ASCII, or space at an end or doubled
           |
           = help: values are printable ASCII characters, with single spaces between words, e.g. "yes"

        warning: stages[0].weight: the plan has no metrics: no stage is gated
          --> plan.toml:20:10
           |
        20 | weight = 0
           |          ^ every stage advances on time alone
           |
           = help: add [[metrics]] with advance/rollback conditions so a bad release can be caught

        plan.toml: invalid (5 errors, 1 warning)
            "#,
        )
        .run();
}

#[test]
fn gateway_segments_that_need_a_regular_expression_are_warned_about() {
    Test::new()
        .plan(
            r#"
        name = "search-api"
        [backend]
        type = "kubectl"
        namespace = "search"
        mode = "gateway"
        route = "search-api"
        stable_service = "search-api-stable"
        canary_service = "search-api-canary"

        [backend.segments.beta]
        header = "X-Beta"

        [backend.segments.ios]
        cookie = "platform"
        value = "ios"

        [backend.segments.qa]
        header = "X-QA"
        value = "1"

        [[metrics]]
        name = "errors"
        source = "c"
        run = ["echo", "0"]
        rollback = "> 1"
        [sources.c]
        type = "command"

        [[stages]]
        weight = 0
        segments = ["beta", "ios", "qa"]
        [[stages]]
        weight = 100
            "#,
        )
        .args(&["validate", "plan.toml"])
        .stderr(
            r#"
        warning: backend.segments.beta.header: segment `beta` matches a header of any value, which the route can only test with a regular expression
          --> plan.toml:11:10
           |
        11 | header = "X-Beta"
           |          ^^^^^^^^ a RegularExpression header match
           |
           = help: the Gateway API leaves regular-expression header matches to each implementation (Envoy Gateway, Istio and NGINX Gateway Fabric support them); check yours does, or match a header with an exact `value`

        warning: backend.segments.ios.cookie: segment `ios` matches a cookie, which the route can only test with a regular expression
          --> plan.toml:14:10
           |
        14 | cookie = "platform"
           |          ^^^^^^^^^^ a RegularExpression header match
           |
           = help: the Gateway API leaves regular-expression header matches to each implementation (Envoy Gateway, Istio and NGINX Gateway Fabric support them); check yours does, or match a header with an exact `value`

        plan.toml: valid (2 warnings)
            "#,
        )
        .run();
}

#[test]
fn segments_on_a_backend_that_cannot_route_them_are_refused_at_the_stage() {
    Test::new()
        .plan(
            r#"
        name = "x"
        [backend]
        type = "kubectl"
        namespace = "shop"
        mode = "replicas"
        stable_deployment = "inventory"
        canary_deployment = "inventory-canary"
        replicas = 4
        container = "app"
        image = "registry.example.com/inventory:4.2.0"

        [[stages]]
        weight = 25
        segments = ["beta"]
        [[stages]]
        weight = 100
            "#,
        )
        .args(&["validate", "plan.toml"])
        .status(2)
        .stderr(
            r#"
        warning: stages[0].weight: the plan has no metrics: no stage is gated
          --> plan.toml:13:10
           |
        13 | weight = 25
           |          ^^ every stage advances on time alone
           |
           = help: add [[metrics]] with advance/rollback conditions so a bad release can be caught

        error: stages[0].segments: stage 1 routes segments, but the kubectl (mode = "replicas") backend cannot give a group the new version
          --> plan.toml:14:12
           |
        14 | segments = ["beta"]
           |            ^^^^^^^^ not supported by this backend
           |
           = help: segments work with the flagd and unleash backends, nginx (with location_file) and kubectl with mode = "gateway"; leave `segments` out here

        plan.toml: invalid (1 error, 1 warning)
            "#,
        )
        .run();
}

#[test]
fn an_nginx_mirror_timeout_is_whole_milliseconds() {
    Test::new()
        .plan(
            r#"
        name = "shop"
        [backend]
        type = "nginx"
        upstream_file = "/etc/nginx/conf.d/shop.conf"
        upstream = "shop"
        stable = ["127.0.0.1:8001"]
        canary = ["127.0.0.1:8002"]
        pid_file = "/run/nginx.pid"
        location_file = "/etc/nginx/shop-location.inc"
        mirror_timeout = "1500us"

        [[stages]]
        weight = 0
        mirror = 5
        [[stages]]
        weight = 100
            "#,
        )
        .args(&["validate", "plan.toml"])
        .status(2)
        .stderr(
            r#"
        error: backend.mirror_timeout: nginx takes timeouts in whole milliseconds
          --> plan.toml:10:18
           |
        10 | mirror_timeout = "1500us"
           |                  ^^^^^^^^ not a whole number of milliseconds
           |
           = help: e.g. mirror_timeout = "250ms"

        warning: stages[0].weight: the plan has no metrics: no stage is gated
          --> plan.toml:13:10
           |
        13 | weight = 0
           |          ^ every stage advances on time alone
           |
           = help: add [[metrics]] with advance/rollback conditions so a bad release can be caught

        plan.toml: invalid (1 error, 1 warning)
            "#,
        )
        .run();
}

#[test]
fn a_mirror_needs_a_stage_below_100_the_backends_precision_and_nginx_dump() {
    Test::new()
        .plan(
            r#"
        name = "shop"
        [backend]
        type = "nginx"
        upstream_file = "/etc/nginx/conf.d/shop.conf"
        upstream = "shop"
        stable = ["127.0.0.1:8001"]
        canary = ["127.0.0.1:8002"]
        pid_file = "/run/nginx.pid"
        location_file = "/etc/nginx/shop-location.inc"
        test_command = ["/usr/local/bin/check-nginx"]

        [[stages]]
        weight = 0
        mirror = 0.005
        [[stages]]
        weight = 100
        mirror = 50
            "#,
        )
        .args(&["validate", "plan.toml"])
        .status(2)
        .stderr(
            r#"
        warning: backend.test_command: rollout cannot check that nginx loads the upstream file
          --> plan.toml:10:16
           |
        10 | test_command = ["/usr/local/bin/check-nginx"]
           |                ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^ not an `nginx ... -t` command
           |
           = help: rollout runs test_command with -T in place of -t to read nginx's configuration and confirm, after every reload, that it includes this write of upstream_file; it cannot for a wrapper, so only pid_file or verify_command confirm reloads. Run nginx with -t directly, or behind a prefix such as sudo or docker exec NAME

        warning: stages[0].weight: the plan has no metrics: no stage is gated
          --> plan.toml:13:10
           |
        13 | weight = 0
           |          ^ every stage advances on time alone
           |
           = help: add [[metrics]] with advance/rollback conditions so a bad release can be caught

        error: stages[0].mirror: stage 1 mirrors requests, but rollout cannot read nginx's configuration to place the mirror
          --> plan.toml:14:10
           |
        14 | mirror = 0.005
           |          ^^^^^ needs `nginx -T`
           |
           = help: rollout puts the mirror's location under the location that includes location_file, which it reads from nginx's configuration dump: run nginx with -t directly in test_command (or behind a prefix such as sudo or docker exec NAME)

        error: stages[0].mirror: stage 1's mirror 0.005% is finer than the nginx backend can sample
          --> plan.toml:14:10
           |
        14 | mirror = 0.005
           |          ^^^^^ not a multiple of 0.01%
           |
           = help: use 0.01, the smallest share it samples, or leave `mirror` out

        error: stages[1].mirror: stage 2 sends every request to the new version: there is nothing left to mirror
          --> plan.toml:17:10
           |
        17 | mirror = 50
           |          ^^ mirror at 100%
           |
           = help: mirror at a stage below 100, for example a stage with weight = 0 before the split

        plan.toml: invalid (3 errors, 2 warnings)
            "#,
        )
        .run();
}

#[test]
fn gateway_mirror_precision_and_range() {
    Test::new()
        .plan(
            r#"
        name = "shop"
        [backend]
        type = "kubectl"
        mode = "gateway"
        namespace = "shop"
        route = "shop"
        stable_service = "shop-stable"
        canary_service = "shop-canary"

        [[stages]]
        weight = 0
        mirror = 0.0005
        [[stages]]
        weight = 5
        mirror = 120
        [[stages]]
        weight = 100
            "#,
        )
        .args(&["validate", "plan.toml"])
        .status(2)
        .stderr(
            r#"
        warning: stages[0].weight: the plan has no metrics: no stage is gated
          --> plan.toml:11:10
           |
        11 | weight = 0
           |          ^ every stage advances on time alone
           |
           = help: add [[metrics]] with advance/rollback conditions so a bad release can be caught

        error: stages[0].mirror: stage 1's mirror 0.0005% is finer than the kubectl gateway backend can sample
          --> plan.toml:12:10
           |
        12 | mirror = 0.0005
           |          ^^^^^^ not a multiple of 0.001%
           |
           = help: use 0.001, the smallest share it samples, or leave `mirror` out

        error: stages[1].mirror: mirror 120 is outside 0..=100
          --> plan.toml:15:10
           |
        15 | mirror = 120
           |          ^^^ not a percentage
           |
           = help: mirror is the percent of requests also copied to the new version, from 0 to 100

        plan.toml: invalid (2 errors, 1 warning)
            "#,
        )
        .run();
}
