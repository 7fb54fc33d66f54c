//! The Unleash backend against the in-memory Unleash: the strategies it owns, what it saves and
//! puts back, and what it refuses.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::*;
use crate::exec::RealExecutor;
use crate::plan::template::Template;
use crate::plan::{AttributeTest, Name, Segment, SegmentRule, SegmentSet, Weight};

fn spec() -> Spec {
    Spec {
        url: Template::parse("http://127.0.0.1:1").unwrap(),
        token: Template::parse("${UNLEASH_TOKEN}").unwrap(),
        project: "default".into(),
        environment: "production".into(),
        flag: "new-checkout".into(),
        stickiness: "userId".into(),
        timeout: Duration::from_secs(1),
        cleanup_after: Duration::from_secs(60),
    }
}

fn backend(server: Arc<api::Implied>) -> Unleash {
    let exec: Arc<dyn Executor> = Arc::new(RealExecutor {
        observer: Arc::new(|_| {}),
        redactor: Default::default(),
    });
    let segments = vec![Segment {
        name: Name::parse("staff").unwrap(),
        rule: SegmentRule::Attribute {
            attribute: "email".into(),
            test: AttributeTest::EndsWith("@example.com".into()),
        },
    }];
    Unleash {
        owned: Owned::new("checkout", &spec(), segments),
        spec: spec(),
        exec,
        transport: server,
        redactor: Redactor::new(["s3cret".to_string()]),
        saved: None,
        current: WeightChange::BEFORE_START,
    }
}

fn change(stage: usize, weight: f64, segments: SegmentSet) -> WeightChange {
    WeightChange {
        stage,
        weight: Weight::new(weight).unwrap(),
        previous: Weight::ZERO,
        segments,
        mirror: None,
    }
}

fn theirs() -> Value {
    json!({"name": "default", "title": "internal users", "parameters": {}, "constraints": [
        {"contextName": "email", "operator": "STR_ENDS_WITH", "values": ["@corp.example"], "caseInsensitive": false, "inverted": false}
    ], "sortOrder": 0})
}

#[tokio::test]
async fn a_rollout_replaces_the_strategies_and_a_rollback_puts_them_back_disabled() {
    let server = Arc::new(api::Implied::new(
        "default",
        "new-checkout",
        &["development", "production"],
    ));
    server.add("production", theirs(), true);
    let mut unleash = backend(server.clone());
    unleash.preflight().await.unwrap();
    let saved = unleash.saved_state().unwrap();
    assert_eq!(saved["enabled"], true);
    assert_eq!(saved["strategies"][0]["title"], "internal users");
    unleash
        .set_weight(change(1, 0.0, SegmentSet::EMPTY.with(0)))
        .await
        .unwrap();
    let (enabled, strategies) = server.environment("production");
    assert!(enabled);
    let titles: Vec<&str> = strategies
        .iter()
        .map(|s| s["title"].as_str().unwrap())
        .collect();
    assert_eq!(
        titles,
        [
            "rollout:checkout share (managed by rollout; do not edit)",
            "rollout:checkout segment staff (managed by rollout; do not edit)"
        ]
    );
    assert_eq!(
        strategies[0]["parameters"],
        json!({"rollout": "0", "stickiness": "userId", "groupId": "new-checkout"})
    );
    assert_eq!(strategies[1]["constraints"][0]["operator"], "STR_ENDS_WITH");
    unleash
        .set_weight(change(2, 25.0, SegmentSet::EMPTY.with(0)))
        .await
        .unwrap();
    let (_, strategies) = server.environment("production");
    assert_eq!(strategies[0]["parameters"]["rollout"], "25");
    assert_eq!(strategies.len(), 2);
    // Another process rolls back from the journal alone.
    let mut other = backend(server.clone());
    other.restore_state(saved).unwrap();
    other.rollback().await.unwrap();
    let (enabled, strategies) = server.environment("production");
    assert!(!enabled, "the kill switch leaves the flag off");
    assert_eq!(strategies.len(), 1);
    assert!(strategies::same(
        &strategies::restorable(&theirs()),
        &strategies[0]
    ));
}

#[tokio::test]
async fn promotion_leaves_the_share_at_100_without_segments() {
    let server = Arc::new(api::Implied::new(
        "default",
        "new-checkout",
        &["production"],
    ));
    let mut unleash = backend(server.clone());
    unleash.preflight().await.unwrap();
    unleash
        .set_weight(change(1, 5.0, SegmentSet::EMPTY.with(0)))
        .await
        .unwrap();
    unleash
        .set_weight(change(2, 100.0, SegmentSet::EMPTY.with(0)))
        .await
        .unwrap();
    unleash.promote().await.unwrap();
    let (enabled, strategies) = server.environment("production");
    assert!(enabled);
    assert_eq!(strategies.len(), 1);
    assert_eq!(strategies[0]["parameters"]["rollout"], "100");
}

#[tokio::test]
async fn a_strategy_added_by_someone_else_during_the_rollout_is_not_removed() {
    let server = Arc::new(api::Implied::new(
        "default",
        "new-checkout",
        &["production"],
    ));
    let mut unleash = backend(server.clone());
    unleash.preflight().await.unwrap();
    unleash
        .set_weight(change(1, 5.0, SegmentSet::EMPTY))
        .await
        .unwrap();
    server.add("production", theirs(), true);
    let err = unleash
        .set_weight(change(2, 50.0, SegmentSet::EMPTY))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("got a strategy in `production` during the rollout that rollout did not put there (default \"internal users\")"), "{err}");
    assert_eq!(server.environment("production").1.len(), 2);
}

#[tokio::test]
async fn preflight_names_a_missing_environment_and_errors_are_redacted() {
    let server = Arc::new(api::Implied::new(
        "default",
        "new-checkout",
        &["development"],
    ));
    let mut unleash = backend(server.clone());
    let err = unleash.preflight().await.unwrap_err().to_string();
    assert_eq!(
        err,
        "flag `new-checkout` has no environment `production` in project `default` (it has `development`)"
    );
    server.fail_with(Some(500));
    let err = unleash
        .set_weight(change(1, 5.0, SegmentSet::EMPTY))
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "Unleash refused to show flag `new-checkout` (500): failing with 500"
    );
    let answer = api::Answer {
        status: 500,
        body: json!({"message": "token s3cret is bad"}),
    };
    assert_eq!(answer.message(&unleash.redactor), "token [redacted] is bad");
}

#[tokio::test]
async fn without_a_journal_the_rollback_is_the_kill_switch_and_says_what_it_cannot_restore() {
    let server = Arc::new(api::Implied::new(
        "default",
        "new-checkout",
        &["production"],
    ));
    let mut first = backend(server.clone());
    first.preflight().await.unwrap();
    first
        .set_weight(change(1, 5.0, SegmentSet::EMPTY))
        .await
        .unwrap();
    let mut other = backend(server.clone());
    let notes = other
        .recover(&super::super::Recovery::default())
        .await
        .unwrap();
    assert!(notes[0].contains("cannot put the others back"), "{notes:?}");
    other.rollback().await.unwrap();
    let (enabled, strategies) = server.environment("production");
    assert!(!enabled);
    assert!(strategies.is_empty());
}

#[test]
fn permissions_of_an_admin_token_and_of_a_scoped_user() {
    let s = spec();
    assert!(strategies::may_change(
        &json!({"permissions": [{"permission": "ADMIN"}]}),
        &s
    ));
    let scoped = |env: &str| {
        json!({"permissions": [
            {"permission": "CREATE_FEATURE_STRATEGY", "project": "default", "environment": env},
            {"permission": "UPDATE_FEATURE_STRATEGY", "project": "default", "environment": env},
            {"permission": "DELETE_FEATURE_STRATEGY", "project": "default", "environment": env},
            {"permission": "UPDATE_FEATURE_ENVIRONMENT", "project": "default", "environment": env},
        ]})
    };
    assert!(strategies::may_change(&scoped("production"), &s));
    assert!(!strategies::may_change(&scoped("development"), &s));
    assert!(!strategies::may_change(&json!({"permissions": []}), &s));
}
