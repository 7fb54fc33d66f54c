//! Mode "alb" against the in-memory ECS and ELBv2: the weights written and read back, everything
//! else on the actions kept, the canary service's image, rollback and recovery.

use std::sync::Arc;

use pretty_assertions::assert_eq;
use serde_json::json;

use super::*;
use crate::backend::ecs::fake::{
    CANARY, CANARY_TD1, CANARY_TD2, FOREIGN_RULE, FakeAws, LISTENER, NEW_IMAGE, OTHER, RULE,
    STABLE, Script, World, context, executor,
};
use crate::plan::{EcsImageUpdate, Weight};

fn spec(listener: AlbListener, with_canary_image: bool) -> EcsAlbSpec {
    EcsAlbSpec {
        listener,
        stable_target_group: STABLE.into(),
        canary_target_group: CANARY.into(),
        canary_update: with_canary_image.then(|| EcsImageUpdate {
            service: "web-canary".into(),
            container: "app".into(),
            image: NEW_IMAGE.into(),
        }),
    }
}

fn on_rule() -> EcsAlbSpec {
    spec(AlbListener::Rule(RULE.into()), true)
}

fn backend(fake: &Arc<FakeAws>, spec: EcsAlbSpec) -> AlbBackend {
    let (exec, _) = executor(false);
    AlbBackend::new(context(fake.clone(), exec), spec)
}

fn to(percent: f64) -> WeightChange {
    WeightChange {
        stage: 1,
        weight: Weight::new(percent).unwrap(),
        previous: Weight::ZERO,
        segments: crate::plan::SegmentSet::EMPTY,
        mirror: None,
    }
}

/// The forward action's weights, as the fake holds them.
fn weights(fake: &FakeAws, listener: &AlbListener) -> Vec<(String, i32)> {
    let world = fake.world();
    let actions = match listener {
        AlbListener::Listener(arn) => &world.listeners[arn],
        AlbListener::Rule(arn) => &world.rules[arn],
    };
    forward_weights(actions)
        .unwrap()
        .into_iter()
        .map(|w| (w.target_group_arn, w.weight))
        .collect()
}

fn split(stable: i32, canary: i32) -> Vec<(String, i32)> {
    vec![(STABLE.into(), stable), (CANARY.into(), canary)]
}

#[tokio::test(start_paused = true)]
async fn a_canary_moves_traffic_stage_by_stage_and_keeps_everything_else() {
    let fake = FakeAws::new(World::standard());
    let rule = AlbListener::Rule(RULE.into());
    let original = fake.world().rules[RULE].clone();
    let mut backend = backend(&fake, on_rule());
    backend.preflight().await.unwrap();
    for (stage, stable, canary) in [(10.0, 90, 10), (50.0, 50, 50), (100.0, 0, 100)] {
        backend.set_weight(to(stage)).await.unwrap();
        assert_eq!(weights(&fake, &rule), split(stable, canary), "{stage}%");
    }
    backend.promote().await.unwrap();

    let world = fake.world();
    // The canary service got the new image before any traffic, once.
    assert_eq!(
        world.changes(),
        [
            "RegisterTaskDefinition",
            "UpdateService",
            "ModifyRule",
            "ModifyRule",
            "ModifyRule"
        ]
    );
    assert!(world.steady_on("web-canary", CANARY_TD2));
    let image = world
        .registered(CANARY_TD2)
        .task_definition
        .container_definitions()[0]
        .image();
    assert_eq!(image, Some(NEW_IMAGE));
    // Each write is read back.
    let after_writes: Vec<&str> = world
        .calls
        .windows(2)
        .filter(|pair| pair[0].0 == "ModifyRule")
        .map(|pair| pair[1].0)
        .collect();
    assert_eq!(after_writes, ["DescribeRules"; 3]);
    // The authentication action, the forward action's order and its stickiness are as they were.
    let now = &world.rules[RULE];
    assert_eq!(now[0], original[0]);
    assert_eq!(now[1].order(), original[1].order());
    assert_eq!(
        now[1]
            .forward_config()
            .unwrap()
            .target_group_stickiness_config(),
        original[1]
            .forward_config()
            .unwrap()
            .target_group_stickiness_config()
    );
}

#[tokio::test(start_paused = true)]
async fn a_lone_target_group_becomes_a_weighted_pair_and_a_right_split_is_not_written() {
    let fake = FakeAws::new(World::standard());
    let listener = AlbListener::Listener(LISTENER.into());
    let mut backend = backend(&fake, spec(listener.clone(), false));
    backend.preflight().await.unwrap();
    // Everything on stable is already 0%: nothing to write.
    backend.set_weight(to(0.0)).await.unwrap();
    assert!(fake.world().changes().is_empty());
    // The fake refuses a TargetGroupArn beside two target groups, as ALB does.
    backend.set_weight(to(25.0)).await.unwrap();
    assert_eq!(weights(&fake, &listener), split(75, 25));
    assert_eq!(fake.world().listeners[LISTENER][0].target_group_arn(), None);
    backend.set_weight(to(0.1)).await.unwrap();
    assert_eq!(weights(&fake, &listener), split(999, 1));
    assert_eq!(fake.world().changes(), ["ModifyListener", "ModifyListener"]);
}

#[tokio::test(start_paused = true)]
async fn weights_that_do_not_read_back_are_not_confirmed() {
    let mut world = World::standard();
    world.lose_action_writes = true;
    let fake = FakeAws::new(world);
    let mut backend = backend(&fake, spec(AlbListener::Rule(RULE.into()), false));
    backend.preflight().await.unwrap();
    let err = backend.set_weight(to(10.0)).await.unwrap_err();
    assert!(matches!(err, BackendError::NotConfirmed(_)), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "the change could not be confirmed: ALB listener rule {RULE} reads back {STABLE} = 100, {CANARY} = 0, not {STABLE} = 90, {CANARY} = 10"
        )
    );
}

#[tokio::test(start_paused = true)]
async fn a_rollback_puts_the_actions_and_the_canary_service_back() {
    let fake = FakeAws::new(World::standard());
    let original = fake.world().rules[RULE].clone();
    let mut backend = backend(&fake, on_rule());
    backend.preflight().await.unwrap();
    backend.set_weight(to(50.0)).await.unwrap();
    backend.rollback().await.unwrap();
    let world = fake.world();
    assert_eq!(world.rules[RULE], original);
    assert!(world.steady_on("web-canary", CANARY_TD1));
    // Traffic first, then the canary service.
    let last_changes: Vec<&str> = world.changes().into_iter().rev().take(2).collect();
    assert_eq!(last_changes, ["UpdateService", "ModifyRule"]);
}

#[tokio::test(start_paused = true)]
async fn a_canary_the_circuit_breaker_fails_never_gets_traffic() {
    let mut world = World::standard();
    world.scripts.insert(
        NEW_IMAGE.into(),
        Script::FailsWith("ECS deployment circuit breaker: tasks failed to start.".into()),
    );
    let fake = FakeAws::new(world);
    let mut backend = backend(&fake, on_rule());
    backend.preflight().await.unwrap();
    let err = backend.set_weight(to(10.0)).await.unwrap_err();
    assert!(matches!(err, BackendError::NewVersionFailed(_)), "{err:?}");
    assert_eq!(
        fake.world().changes(),
        ["RegisterTaskDefinition", "UpdateService"]
    );
    assert_eq!(
        weights(&fake, &AlbListener::Rule(RULE.into())),
        split(100, 0)
    );
    backend.rollback().await.unwrap();
    assert!(fake.world().steady_on("web-canary", CANARY_TD1));
}

/// A run that paused at 50% on another machine: only the plan is known here.
async fn paused_elsewhere() -> Arc<FakeAws> {
    let fake = FakeAws::new(World::standard());
    let mut run = backend(&fake, on_rule());
    run.preflight().await.unwrap();
    run.set_weight(to(50.0)).await.unwrap();
    fake
}

#[tokio::test(start_paused = true)]
async fn recovery_without_a_journal_sends_everything_to_stable() {
    let fake = paused_elsewhere().await;
    let mut elsewhere = backend(&fake, on_rule());
    let notes = elsewhere.recover(&Recovery::default()).await.unwrap();
    assert_eq!(
        notes,
        [
            "no journal: ECS service `web-canary` keeps the task definition it runs now (the one before the rollout is only known to the journal; `--task-definition` returns it too)"
        ]
    );
    elsewhere.rollback().await.unwrap();
    assert_eq!(
        weights(&fake, &AlbListener::Rule(RULE.into())),
        split(100, 0)
    );
    assert!(fake.world().steady_on("web-canary", CANARY_TD2), "kept");

    let recovery = Recovery {
        task_definition: Some("web-canary:1".into()),
    };
    let mut told = backend(&fake, on_rule());
    assert!(told.recover(&recovery).await.unwrap().is_empty());
    told.rollback().await.unwrap();
    assert!(fake.world().steady_on("web-canary", CANARY_TD1));

    let mut no_service = backend(&fake, spec(AlbListener::Rule(RULE.into()), false));
    assert_eq!(
        no_service.recover(&recovery).await.unwrap(),
        [
            "--task-definition web-canary:1 is not used: the plan gives no canary_service, so no service's task definition is changed"
        ]
    );
}

/// `rollout rollback` with a journal makes no preflight: the journal says what to return to.
#[tokio::test(start_paused = true)]
async fn a_rollback_from_the_journal_in_a_new_process() {
    let fake = FakeAws::new(World::standard());
    let mut run = backend(&fake, on_rule());
    run.preflight().await.unwrap();
    let journaled = run.saved_state().unwrap();
    assert_eq!(
        journaled,
        json!({
            "previous_task_definition": CANARY_TD1,
            "new_task_definition": null,
            "original_weights": [
                {"target_group_arn": STABLE, "weight": 100},
                {"target_group_arn": CANARY, "weight": 0},
            ],
        })
    );
    run.set_weight(to(50.0)).await.unwrap();

    let mut later = backend(&fake, on_rule());
    later.restore_state(journaled.clone()).unwrap();
    assert_eq!(later.saved_state(), Some(journaled));
    later.rollback().await.unwrap();
    assert_eq!(
        weights(&fake, &AlbListener::Rule(RULE.into())),
        split(100, 0)
    );
    assert!(fake.world().steady_on("web-canary", CANARY_TD1));
}

#[tokio::test(start_paused = true)]
async fn the_preflight_refuses_actions_it_cannot_weight_and_changes_nothing() {
    let bogus = format!("{RULE}0");
    let cases = [
        (
            spec(AlbListener::Rule(FOREIGN_RULE.into()), false),
            format!(
                "ALB listener rule {FOREIGN_RULE}: its forward action also sends traffic to {OTHER} (weight 50), which is neither the stable nor the canary target group"
            ),
        ),
        (
            spec(AlbListener::Rule(bogus.clone()), false),
            format!("ALB listener rule {bogus} does not exist (region us-east-1)"),
        ),
        (
            spec(AlbListener::Listener(bogus.clone()), false),
            format!("ALB listener {bogus} does not exist (region us-east-1)"),
        ),
        (
            EcsAlbSpec {
                canary_target_group: bogus.clone(),
                ..on_rule()
            },
            format!("target group {bogus} (canary_target_group) does not exist (region us-east-1)"),
        ),
    ];
    for (spec, expected) in cases {
        let fake = FakeAws::new(World::standard());
        let err = backend(&fake, spec).preflight().await.unwrap_err();
        assert_eq!(err.to_string(), expected);
        assert!(fake.world().changes().is_empty());
    }
}
