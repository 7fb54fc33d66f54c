//! Metric sources against real HTTP servers on 127.0.0.1, through the built binary: what the
//! sources are sent, and what the user is shown.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::harness::{Test, rollout_bin};
use crate::http_stub::{Answer, Stub, path};

/// A two-stage canary through a command backend (no nginx needed), gated by one http-json
/// metric on `url` with an `X-Api-Key` header from `$STATS_KEY`. Bakes are short: a gate that
/// never gets valid evidence runs out of `max_hold` and rolls back in about two seconds.
fn plan(url: &str) -> String {
    format!(
        r#"
        name = "sources"
        [defaults]
        bake = "600ms"
        interval = "200ms"
        max_hold = "1s"

        [backend]
        type = "command"
        set_weight = ["sh", "-c", "echo $ROLLOUT_WEIGHT > weight"]

        [sources.stats]
        type = "http-json"
        url = "{url}"
        timeout = "2s"
        headers = {{ X-Api-Key = "${{STATS_KEY}}" }}

        [[metrics]]
        name = "errors"
        source = "stats"
        path = "/errors"
        advance = "< 0.05"

        [[stages]]
        weight = 50

        [[stages]]
        weight = 100
        "#
    )
}

const KEY: &str = "k3y-9f2c41d7e5b8";

#[test]
fn a_redirect_to_another_origin_is_refused_and_said_plainly() {
    let elsewhere = Stub::start(|_| Answer::json(200, r#"{"errors": 0.01}"#));
    let target = format!("{}/stats?token=in-the-location", elsewhere.url);
    let source = Stub::start(move |_| Answer::redirect(&target));
    let ran = Test::new()
        .plan(&plan(&format!("{}/stats", source.url)))
        .args(&["run", "plan.toml"])
        .env("STATS_KEY", KEY)
        .status(3)
        .run();
    assert!(
        elsewhere.requests().is_empty(),
        "the other origin was sent: {:?}",
        elsewhere.requests()
    );
    assert!(!source.requests().is_empty(), "the source was never asked");
    let stderr = String::from_utf8_lossy(&ran.output.stderr);
    let expected = format!(
        "errors has no value: error (the source redirected to another origin ({}); rollout does \
         not send the source's headers there: set the source's url to the final address)",
        elsewhere.url
    );
    assert!(stderr.contains(&expected), "{stderr}");
    assert!(!stderr.contains("in-the-location"), "{stderr}");
}

#[test]
fn a_redirect_within_the_origin_is_followed_without_a_referer() {
    let source = Stub::start(|head| match path(head) {
        "/old" => Answer::redirect("/stats"),
        _ => Answer::json(200, r#"{"errors": 0.01}"#),
    });
    Test::new()
        .plan(&plan(&format!("{}/old", source.url)))
        .args(&["run", "plan.toml", "-q"])
        .env("STATS_KEY", KEY)
        .status(0)
        .run();
    let followed: Vec<String> = source
        .requests()
        .into_iter()
        .filter(|h| path(h) == "/stats")
        .collect();
    assert!(!followed.is_empty(), "the redirect was not followed");
    for head in followed {
        let lower = head.to_lowercase();
        assert!(lower.contains(&format!("x-api-key: {KEY}")), "{head}");
        assert!(!lower.contains("referer"), "{head}");
    }
}

/// A source that answers errors with the request it got, secrets included: a 500 with the
/// request head as text (http-json), and a Prometheus error that quotes it.
fn echoing_source() -> Stub {
    Stub::start(|head| {
        if path(head).starts_with("/api/v1/query") {
            let error = serde_json::json!({
                "status": "error",
                "errorType": "bad_data",
                "error": format!("cannot parse the request {head}"),
            });
            Answer::json(400, &error.to_string())
        } else {
            Answer {
                status: 500,
                headers: Vec::new(),
                body: format!("internal error while serving\n{head}"),
            }
        }
    })
}

#[test]
fn a_secret_echoed_by_a_source_is_never_printed_or_stored() {
    const TOKEN: &str = "tok-5d1e0c2b7a9f4e63";
    let source = echoing_source();
    let plan = format!(
        r#"
        name = "echo"
        [defaults]
        bake = "600ms"
        interval = "200ms"
        max_hold = "1s"

        [backend]
        type = "command"
        set_weight = ["sh", "-c", "echo $ROLLOUT_WEIGHT > weight"]

        [sources.stats]
        type = "http-json"
        url = "{url}/stats?key=${{STATS_TOKEN}}"
        timeout = "2s"
        headers = {{ X-Api-Key = "${{STATS_TOKEN}}" }}

        [sources.prom]
        type = "prometheus"
        url = "{url}"
        timeout = "2s"
        headers = {{ Authorization = "Bearer ${{STATS_TOKEN}}" }}

        [[metrics]]
        name = "errors"
        source = "stats"
        path = "/errors"
        advance = "< 0.05"

        [[metrics]]
        name = "latency"
        source = "prom"
        query = "histogram_quantile(0.99, rate(latency_bucket[1m]))"
        advance = "< 0.3"

        [[stages]]
        weight = 50

        [[stages]]
        weight = 100
        "#,
        url = source.url
    );
    let run = |args: &[&str]| {
        Test::new()
            .plan(&plan)
            .args(args)
            .env("STATS_TOKEN", TOKEN)
            .status(3)
            .run()
    };
    let human = run(&["run", "plan.toml"]);
    let json = run(&[
        "run",
        "plan.toml",
        "--output",
        "json",
        "--report",
        "report.json",
    ]);
    // The source really was sent the token, and really echoed it.
    let heads = source.requests();
    assert!(heads.iter().any(|h| h.contains(TOKEN)), "{heads:?}");
    let human_stderr = String::from_utf8_lossy(&human.output.stderr).into_owned();
    let json_stdout = json.stdout();
    for text in [&human_stderr, &json_stdout] {
        assert!(
            text.contains("the source answered HTTP 500: internal error while serving")
                && text.contains("[redacted]"),
            "the echo is not reported, redacted: {text}"
        );
    }

    let dir = json.dir.path();
    let texts = [
        ("the human output", human_stderr.clone() + &human.stdout()),
        ("--output json", json_stdout.clone()),
        (
            "stderr with --output json",
            String::from_utf8_lossy(&json.output.stderr).into_owned(),
        ),
        (
            "the report",
            std::fs::read_to_string(dir.join("report.json")).unwrap(),
        ),
        (
            "the journal",
            std::fs::read_to_string(dir.join(".rollout/echo/journal.json")).unwrap(),
        ),
        ("rollout status", status_of(dir, &[])),
        (
            "rollout status --output json",
            status_of(dir, &["--output", "json"]),
        ),
    ];
    for (what, text) in texts {
        assert!(!text.contains(TOKEN), "{what} holds the token:\n{text}");
    }
}

/// `rollout status echo ARGS` in `dir`: everything it printed.
fn status_of(dir: &Path, args: &[&str]) -> String {
    let output = Command::new(rollout_bin())
        .args(["status", "echo"])
        .args(args)
        .current_dir(dir)
        .env_remove("ROLLOUT_STATE_DIR")
        .stdin(Stdio::null())
        .output()
        .expect("run rollout status");
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// NaN, infinities and numbers too large for a 64-bit float are no data, whichever source
/// returns them, and the measurement says what was returned.
#[test]
fn a_number_out_of_range_is_no_data_and_says_what_came_back() {
    let source = Stub::start(|_| Answer::json(200, r#"{"errors": 1e309, "other": 0.5}"#));
    let plan = format!(
        r#"
        name = "numbers"
        [defaults]
        bake = "600ms"
        interval = "200ms"
        max_hold = "1s"

        [backend]
        type = "command"
        set_weight = ["sh", "-c", "echo $ROLLOUT_WEIGHT > weight"]

        [sources.stats]
        type = "http-json"
        url = "{}/stats"
        timeout = "2s"

        [sources.scripts]
        type = "command"
        timeout = "2s"

        [[metrics]]
        name = "errors"
        source = "stats"
        path = "/errors"
        advance = "< 0.05"

        [[metrics]]
        name = "latency"
        source = "scripts"
        run = ["echo", "-inf"]
        advance = "< 300"

        [[stages]]
        weight = 50

        [[stages]]
        weight = 100
        "#,
        source.url
    );
    let ran = Test::new()
        .plan(&plan)
        .args(&["run", "plan.toml"])
        .status(3)
        .run();
    let stderr = String::from_utf8_lossy(&ran.output.stderr);
    for expected in [
        "errors has no value: no data (the source returned 1e309, a number too large for a 64-bit float)",
        "latency has no value: no data (the source returned -Inf)",
    ] {
        assert!(stderr.contains(expected), "no `{expected}` in:\n{stderr}");
    }
}
