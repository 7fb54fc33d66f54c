//! Mode "service" against the in-memory ECS: what it changes, what it waits for, and what it
//! leaves alone.

use std::sync::Arc;

use pretty_assertions::assert_eq;
use serde_json::json;

use super::*;
use crate::backend::ecs::EcsError;
use crate::backend::ecs::deploy::DeployState;
use crate::backend::ecs::fake::{
    FakeAws, NEW_IMAGE, Script, TD1, TD2, World, context, executor, task_definition,
};
use crate::plan::{EcsImageUpdate, Weight};

fn spec(container: &str) -> EcsServiceSpec {
    EcsServiceSpec {
        update: EcsImageUpdate {
            service: "web".into(),
            container: container.into(),
            image: NEW_IMAGE.into(),
        },
    }
}

fn backend(fake: &Arc<FakeAws>) -> ServiceBackend {
    let (exec, _) = executor(false);
    ServiceBackend::new(context(fake.clone(), exec), spec("app"))
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

const TD3: &str = "arn:aws:ecs:us-east-1:123456789012:task-definition/web:3";

/// Someone else's revision of `web`, registered as `web:3` once the run made `web:2`.
fn someone_elses_revision(world: &mut World) {
    let mut td = task_definition();
    td.task_definition_arn = Some(TD3.into());
    td.revision = 3;
    world
        .task_definitions
        .push(crate::backend::ecs::api::Described {
            task_definition: td,
            tags: vec![],
        });
}

fn message(result: Result<(), BackendError>) -> String {
    result.unwrap_err().to_string()
}

#[tokio::test(start_paused = true)]
async fn promotion_registers_one_revision_with_the_new_image_and_waits_until_steady() {
    let fake = FakeAws::new(World::standard());
    let mut backend = backend(&fake);
    backend.preflight().await.unwrap();
    backend.set_weight(to(0.0)).await.unwrap();
    assert!(fake.world().changes().is_empty(), "0% changes nothing");

    backend.set_weight(to(100.0)).await.unwrap();
    backend.promote().await.unwrap();
    assert_registered_and_steady(&fake.world());
    assert_eq!(
        backend.saved_state(),
        Some(json!({"previous_task_definition": TD1, "new_task_definition": TD2}))
    );
    // Applied again (a resumed run), 100% finds the service on the new revision.
    backend.set_weight(to(100.0)).await.unwrap();
    assert_eq!(fake.world().changes().len(), 2);
}

fn assert_registered_and_steady(world: &World) {
    assert_eq!(world.changes(), ["RegisterTaskDefinition", "UpdateService"]);
    assert!(world.steady_on("web", TD2));
    // The deployment completes at its second look: the backend looked until it did.
    let looks_after_update = world
        .calls
        .iter()
        .skip_while(|(op, _)| *op != "UpdateService")
        .filter(|(op, _)| *op == "DescribeServices")
        .count();
    assert_eq!(looks_after_update, 2);
    // The new revision is the old one with the new image on `app`; its tags come along.
    let old = world.registered(TD1).clone();
    let new = world.registered(TD2);
    let mut expected = old.task_definition.clone();
    expected.container_definitions.as_mut().unwrap()[0].image = Some(NEW_IMAGE.into());
    expected.task_definition_arn = Some(TD2.into());
    expected.revision = 2;
    expected.status = new.task_definition.status.clone();
    assert_eq!(new.task_definition, expected);
    assert_eq!(new.tags, old.tags);
}

#[tokio::test(start_paused = true)]
async fn rollback_returns_to_the_previous_task_definition_once() {
    let fake = FakeAws::new(World::standard());
    let mut backend = backend(&fake);
    backend.preflight().await.unwrap();
    backend.set_weight(to(100.0)).await.unwrap();
    backend.rollback().await.unwrap();
    {
        let world = fake.world();
        assert!(world.steady_on("web", TD1));
        let (operation, params) = world
            .calls
            .iter()
            .rfind(|(op, _)| *op != "DescribeServices")
            .unwrap();
        assert_eq!(
            (*operation, params),
            (
                "UpdateService",
                &json!({"cluster": "prod", "service": "web", "taskDefinition": TD1})
            )
        );
    }
    // A retried rollback finds the service back and steady, and changes nothing.
    let changes = fake.world().changes().len();
    backend.rollback().await.unwrap();
    assert_eq!(fake.world().changes().len(), changes);
}

#[tokio::test(start_paused = true)]
async fn a_deployment_the_circuit_breaker_fails_is_the_new_version_failing() {
    let mut world = World::standard();
    world.scripts.insert(
        NEW_IMAGE.into(),
        Script::FailsWith("ECS deployment circuit breaker: tasks failed to start.".into()),
    );
    let fake = FakeAws::new(world);
    let mut backend = backend(&fake);
    backend.preflight().await.unwrap();
    let err = backend.set_weight(to(100.0)).await.unwrap_err();
    let BackendError::NewVersionFailed(why) = &err else {
        panic!("not the new version's failure: {err:?}")
    };
    assert_eq!(
        why,
        &format!(
            "the deployment of {TD2} to ECS service `web` failed: ECS marked it FAILED: ECS deployment circuit breaker: tasks failed to start"
        )
    );
    backend.rollback().await.unwrap();
    assert!(fake.world().steady_on("web", TD1));
}

#[tokio::test(start_paused = true)]
async fn a_deployment_that_never_settles_fails_after_deploy_timeout() {
    let mut world = World::standard();
    world.scripts.insert(NEW_IMAGE.into(), Script::Stuck);
    let fake = FakeAws::new(world);
    let mut backend = backend(&fake);
    backend.preflight().await.unwrap();
    let started = tokio::time::Instant::now();
    let err = backend.set_weight(to(100.0)).await.unwrap_err();
    assert_eq!(started.elapsed(), std::time::Duration::from_secs(60));
    let BackendError::NewVersionFailed(why) = &err else {
        panic!("not the new version's failure: {err:?}")
    };
    assert!(
        why.starts_with(&format!(
            "ECS service `web` was not steady on {TD2} within 1m (deploy_timeout): the deployment is IN_PROGRESS (0 of 2 tasks running, 2 pending, "
        )),
        "{why}"
    );
}

/// Someone else's deployment is not the new version failing: the tool could not finish.
#[tokio::test(start_paused = true)]
async fn a_deployment_another_one_replaces_fails_the_tool_not_the_release() {
    let mut world = World::standard();
    someone_elses_revision(&mut world);
    world
        .scripts
        .insert(NEW_IMAGE.into(), Script::ReplacedBy(TD3.into()));
    let fake = FakeAws::new(world);
    let mut backend = backend(&fake);
    backend.preflight().await.unwrap();
    let err = backend.set_weight(to(100.0)).await.unwrap_err();
    assert!(
        matches!(err, BackendError::Ecs(EcsError::Unusable(_))),
        "{err:?}"
    );
    // web:3 was taken when the run registered its revision.
    let ours = TD3.replace("web:3", "web:4");
    assert_eq!(
        err.to_string(),
        format!(
            "the deployment of {ours} to ECS service `web` did not finish: another deployment replaced it: the service now deploys {TD3}"
        )
    );
}

#[tokio::test(start_paused = true)]
async fn a_service_changed_since_the_preflight_is_left_alone() {
    let mut world = World::standard();
    someone_elses_revision(&mut world);
    let fake = FakeAws::new(world);
    let mut backend = backend(&fake);
    backend.preflight().await.unwrap();
    fake.world()
        .services
        .get_mut("web")
        .unwrap()
        .task_definition = TD3.into();
    assert_eq!(
        message(backend.set_weight(to(100.0)).await),
        format!(
            "ECS service `web` changed since the preflight check: it runs {TD3}, not {TD1}; rollout leaves it alone"
        )
    );
    assert!(fake.world().changes().is_empty());
}

/// The registration went through, the update did not: the next attempt uses that revision.
#[tokio::test(start_paused = true)]
async fn a_failed_update_is_retried_without_a_second_revision() {
    let mut world = World::standard();
    world.failures.insert(
        "UpdateService",
        ("ThrottlingException".into(), "Rate exceeded".into()),
    );
    let fake = FakeAws::new(world);
    let mut backend = backend(&fake);
    backend.preflight().await.unwrap();
    let err = backend.set_weight(to(100.0)).await.unwrap_err();
    assert!(
        matches!(err, BackendError::Ecs(EcsError::Api { .. })),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "ecs UpdateService failed: ThrottlingException: Rate exceeded"
    );
    backend.set_weight(to(100.0)).await.unwrap();
    let world = fake.world();
    assert_eq!(
        world.changes(),
        ["RegisterTaskDefinition", "UpdateService", "UpdateService"]
    );
    assert!(world.steady_on("web", TD2));
}

/// The journal is written after the preflight and before anything is registered: a new process
/// recognises the revision the crashed one registered by its content.
#[tokio::test(start_paused = true)]
async fn a_resumed_run_recognises_the_revision_it_registered() {
    let fake = FakeAws::new(World::standard());
    let mut first = backend(&fake);
    first.preflight().await.unwrap();
    let journaled = first.saved_state().unwrap();
    assert_eq!(
        serde_json::from_value::<DeployState>(journaled.clone()).unwrap(),
        DeployState {
            previous_task_definition: Some(TD1.into()),
            new_task_definition: None,
        }
    );
    first.set_weight(to(100.0)).await.unwrap();
    drop(first);

    let mut resumed = backend(&fake);
    resumed.restore_state(journaled).unwrap();
    resumed.preflight().await.unwrap();
    resumed.set_weight(to(100.0)).await.unwrap();
    assert_eq!(
        fake.world().changes(),
        ["RegisterTaskDefinition", "UpdateService"]
    );
    assert_eq!(
        resumed.saved_state(),
        Some(json!({"previous_task_definition": TD1, "new_task_definition": TD2}))
    );
    // And a rollback still returns to what the first process found.
    resumed.rollback().await.unwrap();
    assert!(fake.world().steady_on("web", TD1));
}

#[tokio::test(start_paused = true)]
async fn the_preflight_refuses_what_it_cannot_update_and_changes_nothing() {
    type Setup = fn(&mut World);
    let cases: [(&str, Setup, &str); 6] = [
        (
            "app",
            |w| w.no_credentials = Some("no provider".into()),
            "no AWS credentials could be resolved (no provider)",
        ),
        (
            "app",
            |w| w.clusters.clear(),
            "ECS cluster `prod` does not exist (region us-east-1)",
        ),
        (
            "app",
            |w| {
                w.services.remove("web");
            },
            "ECS service `web` in cluster `prod` does not exist (region us-east-1)",
        ),
        (
            "app",
            |w| w.services.get_mut("web").unwrap().status = "DRAINING".into(),
            "ECS service `web` in cluster `prod` is DRAINING, not ACTIVE",
        ),
        (
            "app",
            |w| {
                w.services.get_mut("web").unwrap().controller =
                    aws_sdk_ecs::types::DeploymentControllerType::CodeDeploy
            },
            "ECS service `web` is deployed by CODE_DEPLOY, not by ECS rolling updates, so rollout cannot update its task definition",
        ),
        (
            "api",
            |_| {},
            "task definition arn:aws:ecs:us-east-1:123456789012:task-definition/web:1 has no container `api` (it has `app`, `sidecar`)",
        ),
    ];
    for (container, setup, expected) in cases {
        let mut world = World::standard();
        setup(&mut world);
        let fake = FakeAws::new(world);
        let (exec, _) = executor(false);
        let mut backend = ServiceBackend::new(context(fake.clone(), exec), spec(container));
        let err = backend.preflight().await.unwrap_err().to_string();
        assert!(err.starts_with(expected), "{err}");
        assert!(fake.world().changes().is_empty());
    }
}

#[tokio::test(start_paused = true)]
async fn recovery_without_a_journal_needs_the_task_definition_to_return_to() {
    let fake = FakeAws::new(World::standard());
    let mut run = backend(&fake);
    run.preflight().await.unwrap();
    run.set_weight(to(100.0)).await.unwrap();
    let calls = fake.world().calls.len();

    let mut elsewhere = backend(&fake);
    let err = elsewhere.recover(&Recovery::default()).await.unwrap_err();
    assert!(matches!(err, BackendError::Precondition(_)), "{err:?}");
    assert!(
        err.to_string().starts_with(
            "the task definition ECS service `web` ran before the rollout is only known to the journal; give it with `rollout rollback PLAN --task-definition FAMILY:REVISION`"
        ),
        "{err}"
    );
    assert_eq!(fake.world().calls.len(), calls, "AWS was not even asked");

    let recovery = Recovery {
        task_definition: Some("web:1".into()),
    };
    assert_eq!(
        elsewhere.recover(&recovery).await.unwrap(),
        Vec::<String>::new()
    );
    elsewhere.rollback().await.unwrap();
    assert!(fake.world().steady_on("web", TD1));
}

#[tokio::test]
async fn nothing_is_deployed_before_the_preflight() {
    let fake = FakeAws::new(World::standard());
    let err = backend(&fake).set_weight(to(100.0)).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "the ECS backend was asked to deploy a new task definition before its preflight check"
    );
    assert!(fake.world().calls.is_empty());
}
