//! What the modes share, and what makes a dry run exact: the same mode code makes the same
//! changes, in the same order, through the dry-run recorder as through an ECS.

use std::sync::Arc;

use pretty_assertions::assert_eq;
use serde_json::{Value, json};

use super::fake::{CANARY, FakeAws, LISTENER, NEW_IMAGE, RULE, STABLE, World, aws, executor};
use super::*;
use crate::backend::WeightChange;
use crate::exec::Action;
use crate::plan::{AlbListener, EcsAlbSpec, EcsImageUpdate, EcsServiceSpec, Weight};

#[test]
fn credential_problems_say_what_to_do() {
    let api = |code: &str| EcsError::Api {
        service: "ecs",
        operation: "DescribeClusters",
        code: Some(code.into()),
        message: format!("{code}: the message"),
    };
    assert!(api("ExpiredTokenException").to_string().ends_with(
        "ExpiredTokenException: the message; the AWS credentials have expired: refresh them (for example `aws sso login`) and run again"
    ));
    assert!(
        api("UnrecognizedClientException")
            .to_string()
            .contains("AWS did not accept the credentials")
    );
    assert!(
        api("AccessDeniedException")
            .to_string()
            .contains("lack a permission")
    );
    assert_eq!(
        api("ClusterNotFoundException").to_string(),
        "ecs DescribeClusters failed: ClusterNotFoundException: the message"
    );
}

fn update(service: &str) -> EcsImageUpdate {
    EcsImageUpdate {
        service: service.into(),
        container: "app".into(),
        image: NEW_IMAGE.into(),
    }
}

/// Each mode as a plan may give it, with its stages' weights.
fn plans() -> Vec<(EcsBackend, Vec<f64>)> {
    let alb = |listener, canary_update| {
        EcsMode::Alb(EcsAlbSpec {
            listener,
            stable_target_group: STABLE.into(),
            canary_target_group: CANARY.into(),
            canary_update,
        })
    };
    vec![
        (
            EcsBackend {
                aws: aws(),
                mode: EcsMode::Service(EcsServiceSpec {
                    update: update("web"),
                }),
            },
            vec![0.0, 100.0],
        ),
        (
            EcsBackend {
                aws: aws(),
                mode: alb(AlbListener::Rule(RULE.into()), Some(update("web-canary"))),
            },
            vec![0.0, 5.0, 50.0, 100.0],
        ),
        (
            EcsBackend {
                aws: aws(),
                mode: alb(AlbListener::Listener(LISTENER.into()), None),
            },
            vec![10.0, 12.5, 100.0],
        ),
    ]
}

/// What a run does with a backend: the preflight, each stage's weight, the promotion.
async fn walk(backend: &mut dyn Backend, weights: &[f64]) {
    backend.preflight().await.unwrap();
    let mut previous = Weight::ZERO;
    for (stage, &percent) in weights.iter().enumerate() {
        let weight = Weight::new(percent).unwrap();
        let change = WeightChange {
            stage: stage + 1,
            weight,
            previous,
            segments: crate::plan::SegmentSet::EMPTY,
            mirror: None,
        };
        backend.set_weight(change).await.unwrap();
        previous = weight;
    }
    backend.promote().await.unwrap();
}

fn changes_something(operation: &str) -> bool {
    !operation.starts_with("Describe")
}

/// The parameters of a change that the plan decides, without what AWS answered before it:
/// the image of a new revision, the service an update points, the weights a write sets.
fn plan_decided(operation: &str, params: &Value) -> Value {
    match operation {
        "RegisterTaskDefinition" => json!([params["container"], params["image"]]),
        "UpdateService" => json!([params["cluster"], params["service"]]),
        "ModifyListener" | "ModifyRule" => {
            let (target, actions) = match operation {
                "ModifyListener" => (&params["ListenerArn"], &params["DefaultActions"]),
                _ => (&params["RuleArn"], &params["Actions"]),
            };
            let forward = actions
                .as_array()
                .unwrap()
                .iter()
                .find(|a| a["Type"] == "forward")
                .unwrap();
            json!([target, forward["ForwardConfig"]["TargetGroups"]])
        }
        other => panic!("{other} changes nothing"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_dry_run_makes_the_changes_a_run_makes_in_the_same_order() {
    for (spec, weights) in plans() {
        let (dry_exec, told) = executor(true);
        let recorder = Arc::new(dry_run::DryRunApi::new(&spec, dry_exec.clone()));
        walk(&mut *build_on(spec.clone(), recorder, dry_exec), &weights).await;
        let dry: Vec<(String, Value)> = told
            .lock()
            .unwrap()
            .iter()
            .filter_map(|action| match action {
                Action::Call {
                    operation, params, ..
                } if changes_something(operation) => {
                    Some((operation.clone(), plan_decided(operation, params)))
                }
                _ => None,
            })
            .collect();

        let fake = FakeAws::new(World::standard());
        let (exec, _) = executor(false);
        walk(&mut *build_on(spec.clone(), fake.clone(), exec), &weights).await;
        let real: Vec<(String, Value)> = fake
            .world()
            .calls
            .iter()
            .filter(|(operation, _)| changes_something(operation))
            .map(|(operation, params)| (operation.to_string(), plan_decided(operation, params)))
            .collect();

        assert!(!real.is_empty(), "{:?} changed nothing", spec.mode);
        assert_eq!(dry, real, "{:?}", spec.mode);
    }
}
