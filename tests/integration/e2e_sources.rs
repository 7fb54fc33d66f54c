//! Metric sources against real HTTP servers on 127.0.0.1, through the built binary: what the
//! sources are sent, and what the user is shown.

use crate::harness::Test;
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
