//! `mode = "replicas"`: two Deployments share `replicas` pods by weight (see `split_replicas`).
//! The side that grows is changed first and must be rolled out before the other side shrinks,
//! so capacity never drops below the total.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::Original;
use super::api::{Deployment, Target};
use super::client::{Client, Guarded};
use crate::backend::{Backend, BackendError, Recovery, WeightChange};
use crate::plan::{ReplicasSpec, Weight};

pub struct Replicas {
    spec: ReplicasSpec,
    client: Client,
    /// Where the Deployments are, for people.
    place: String,
    /// Set by a successful preflight, or handed back from the journal (`restore_state`).
    before: Option<Before>,
}

/// The Deployments before this run changed anything: what a rollback returns to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Before {
    pub stable: OriginalDeployment,
    pub canary: OriginalDeployment,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OriginalDeployment {
    pub name: String,
    pub replicas: u32,
    pub container: String,
    pub image: String,
}

/// What a change makes a Deployment hold; `None` leaves that field as it is.
#[derive(Debug, Clone, PartialEq)]
pub struct DeploymentWant {
    pub replicas: Option<u32>,
    pub image: Option<String>,
}

/// The fields of a Deployment a change is computed from, with the pointer to write the image.
#[derive(Debug, Clone, PartialEq)]
pub struct DeploymentView {
    pub resource_version: String,
    pub generation: i64,
    pub replicas: u32,
    /// JSON pointer to the container's `image`.
    pub image_path: String,
    pub image: String,
}

impl Guarded for DeploymentView {
    fn resource_version(&self) -> &str {
        &self.resource_version
    }

    fn generation(&self) -> i64 {
        self.generation
    }
}

impl Replicas {
    pub fn new(spec: ReplicasSpec, client: Client, place: String) -> Replicas {
        Replicas {
            spec,
            client,
            place,
            before: None,
        }
    }

    fn targets(&self) -> (Target, Target) {
        (
            Target::deployment(&self.spec.stable_deployment),
            Target::deployment(&self.spec.canary_deployment),
        )
    }

    async fn read(&self, target: &Target) -> Result<DeploymentView, BackendError> {
        let container = &self.spec.container;
        let (view, _) = self
            .client
            .read(target, |d: &Deployment| deployment_view(d, container))
            .await?;
        Ok(view)
    }

    /// Makes the Deployment hold `want`, and returns the generation to wait for. `known` is the
    /// Deployment as just read, if it was.
    async fn update(
        &self,
        name: &str,
        want: &DeploymentWant,
        purpose: &str,
        known: Option<DeploymentView>,
    ) -> Result<i64, BackendError> {
        let container = &self.spec.container;
        self.client
            .update(
                &Target::deployment(name),
                purpose,
                known,
                |d: &Deployment| deployment_view(d, container),
                |current| deployment_patch(current, want),
            )
            .await
    }

    async fn wait(&self, name: &str, generation: i64) -> Result<(), BackendError> {
        let new_version = name == self.spec.canary_deployment;
        self.client
            .wait_rolled_out(name, generation, new_version)
            .await
    }

    async fn change_and_wait(
        &self,
        name: &str,
        want: DeploymentWant,
        purpose: &str,
        known: Option<DeploymentView>,
    ) -> Result<(), BackendError> {
        let generation = self.update(name, &want, purpose, known).await?;
        self.wait(name, generation).await
    }

    /// The preflight's reads and checks; what the Deployments hold now.
    async fn inspect(&self) -> Result<Before, BackendError> {
        self.client.check_cluster().await?;
        let (stable, canary) = self.targets();
        let found = Before {
            stable: self.found(&stable).await?,
            canary: self.found(&canary).await?,
        };
        self.client
            .check_permissions(&[
                ("get", stable.to_string()),
                ("patch", stable.to_string()),
                ("get", canary.to_string()),
                ("patch", canary.to_string()),
            ])
            .await?;
        Ok(found)
    }

    async fn found(&self, target: &Target) -> Result<OriginalDeployment, BackendError> {
        let container = &self.spec.container;
        let d: Deployment = self
            .client
            .get_existing(target, "read the Deployment (preflight)")
            .await?;
        let view = deployment_view(&d, container)
            .map_err(|problem| BackendError::Precondition(format!("{target}: {problem}")))?;
        Ok(OriginalDeployment {
            name: target.name.clone(),
            replicas: view.replicas,
            container: container.clone(),
            image: view.image,
        })
    }

    fn before(&self) -> Result<&Before, BackendError> {
        self.before.as_ref().ok_or_else(|| {
            BackendError::Precondition(
                "what the Deployments held before the run is unknown: no preflight read them and \
                 no journal recorded them"
                    .into(),
            )
        })
    }
}

#[async_trait]
impl Backend for Replicas {
    fn describe(&self) -> String {
        format!(
            "Kubernetes Deployments `{}` (stable) and `{}` (canary) in {}",
            self.spec.stable_deployment, self.spec.canary_deployment, self.place
        )
    }

    /// Reads everything and changes nothing: kubectl runs, the cluster answers, both
    /// Deployments are there with the container, and every verb is allowed.
    async fn preflight(&mut self) -> Result<(), BackendError> {
        let found = self.inspect().await?;
        // Restored from a journal, the state before the run stays: the objects have changed since.
        self.before.get_or_insert(found);
        Ok(())
    }

    async fn set_weight(&mut self, change: WeightChange) -> Result<(), BackendError> {
        let spec = &self.spec;
        let (stable, canary) = (&spec.stable_deployment, &spec.canary_deployment);
        let (stable_count, canary_count) = split_replicas(spec.replicas, change.weight);
        let canary_now = self.read(&Target::deployment(canary)).await?;
        let grows = canary_count >= canary_now.replicas;
        let canary_want = DeploymentWant {
            replicas: Some(canary_count),
            image: Some(spec.image.clone()),
        };
        let stable_want = DeploymentWant {
            replicas: Some(stable_count),
            image: None,
        };
        let canary_purpose = format!(
            "the new image and {canary_count} of {} pods on the canary Deployment",
            spec.replicas
        );
        let stable_purpose = format!(
            "{stable_count} of {} pods on the stable Deployment",
            spec.replicas
        );
        if grows {
            self.change_and_wait(canary, canary_want, &canary_purpose, Some(canary_now))
                .await?;
            self.change_and_wait(stable, stable_want, &stable_purpose, None)
                .await
        } else {
            self.change_and_wait(stable, stable_want, &stable_purpose, None)
                .await?;
            self.change_and_wait(canary, canary_want, &canary_purpose, None)
                .await
        }
    }

    /// The stable Deployment takes the new image and the full count, and only once it is
    /// rolled out does the canary go to zero.
    async fn promote(&mut self) -> Result<(), BackendError> {
        let spec = &self.spec;
        let want = DeploymentWant {
            replicas: Some(spec.replicas),
            image: Some(spec.image.clone()),
        };
        self.change_and_wait(
            &spec.stable_deployment,
            want,
            "promote: the new image and every pod on the stable Deployment",
            None,
        )
        .await?;
        let want = DeploymentWant {
            replicas: Some(0),
            image: None,
        };
        self.change_and_wait(
            &spec.canary_deployment,
            want,
            "promote: 0 pods on the canary Deployment",
            None,
        )
        .await
    }

    async fn rollback(&mut self) -> Result<(), BackendError> {
        let Before { stable, canary } = self.before()?.clone();
        // Both writes go out before either wait: the canary leaves the Service's endpoints at
        // once while the stable Deployment comes back.
        let stable_generation = self
            .update(
                &stable.name,
                &DeploymentWant {
                    replicas: Some(stable.replicas),
                    image: Some(stable.image.clone()),
                },
                "roll back: the previous image and pod count on the stable Deployment",
                None,
            )
            .await?;
        let canary_generation = self
            .update(
                &canary.name,
                &DeploymentWant {
                    replicas: Some(0),
                    image: None,
                },
                "roll back: 0 pods on the canary Deployment",
                None,
            )
            .await?;
        self.wait(&stable.name, stable_generation).await?;
        self.wait(&canary.name, canary_generation).await?;
        let want = DeploymentWant {
            replicas: None,
            image: Some(canary.image.clone()),
        };
        self.change_and_wait(
            &canary.name,
            want,
            "roll back: the previous image on the canary Deployment",
            None,
        )
        .await
    }

    /// Stable is the plan's `replicas` on the stable Deployment with the image it runs now,
    /// and 0 on the canary; unknowable when the stable Deployment already runs the new image
    /// (the image before it is only in the journal).
    async fn recover(&mut self, _recovery: &Recovery) -> Result<Vec<String>, BackendError> {
        let Before {
            mut stable,
            mut canary,
        } = self.inspect().await?;
        let (total, new_image) = (self.spec.replicas, &self.spec.image);
        if stable.image == *new_image {
            return Err(BackendError::Precondition(format!(
                "the stable Deployment `{}` already runs the new image {new_image}, and the image it \
                 ran before is only known to the journal; set it by hand (`kubectl set image \
                 deployment/{} {}=PREVIOUS_IMAGE`), then run `rollout rollback` again",
                stable.name, stable.name, stable.container
            )));
        }
        stable.replicas = total;
        canary.replicas = 0;
        let note = format!(
            "no journal: returning to the plan's stable state, {total} pods of {} on `{}` and 0 on `{}` \
             (which keeps the image {})",
            stable.image, stable.name, canary.name, canary.image
        );
        self.before = Some(Before { stable, canary });
        Ok(vec![note])
    }

    fn saved_state(&self) -> Option<Value> {
        let before = self.before.clone()?;
        Some(Original::Replicas(before).to_json())
    }

    fn restore_state(&mut self, state: Value) -> Result<(), BackendError> {
        match Original::from_json(state)? {
            Original::Replicas(before) => {
                self.before = Some(before);
                Ok(())
            }
            other => Err(other.of_another_mode("replicas")),
        }
    }
}

/// Pods for the stable and the canary Deployment at a weight: `(stable, canary)`.
///
/// The canary gets `total × weight / 100` rounded to the nearest pod, an exact half rounding
/// down (toward the stable version, the cautious side); then a weight above 0 gives the canary
/// at least one pod, and a weight below 100 leaves the stable at least one pod when there are
/// two or more. With `total = 10`: 1% → 1 canary pod, 15% → 1, 16% → 2, 25% → 2, 95% → 9,
/// 99% → 9, 100% → 10. docs/plan.md has the same rules and a table.
pub fn split_replicas(total: u32, weight: Weight) -> (u32, u32) {
    // Thousandths of a percent, so that decimal weights round exactly.
    let share = (weight.percent() * 1000.0).round() as u64;
    let scaled = u64::from(total) * share;
    let (whole, rest) = (scaled / 100_000, scaled % 100_000);
    let mut canary = if rest * 2 > 100_000 { whole + 1 } else { whole } as u32;
    if share > 0 && canary == 0 {
        canary = 1;
    }
    if share < 100_000 && canary == total && total >= 2 {
        canary = total - 1;
    }
    let canary = canary.min(total);
    (total - canary, canary)
}

pub fn deployment_view(d: &Deployment, container: &str) -> Result<DeploymentView, String> {
    let containers = &d.spec.template.spec.containers;
    let (index, found) = containers
        .iter()
        .enumerate()
        .find(|(_, c)| c.name == container)
        .ok_or_else(|| {
            let names: Vec<&str> = containers.iter().map(|c| c.name.as_str()).collect();
            format!(
                "its pod template has no container `{container}` (it has {})",
                names.join(", ")
            )
        })?;
    Ok(DeploymentView {
        resource_version: d.metadata.resource_version.clone(),
        generation: d.metadata.generation,
        replicas: d.spec.replicas.unwrap_or(1),
        image_path: format!("/spec/template/spec/containers/{index}/image"),
        image: found.image.clone(),
    })
}

/// The JSON patch operations that make the Deployment hold `want`; none when it already does.
pub fn deployment_patch(current: &DeploymentView, want: &DeploymentWant) -> Vec<Value> {
    let mut ops = Vec::new();
    if let Some(image) = want.image.as_ref().filter(|i| **i != current.image) {
        ops.push(json!({"op": "replace", "path": current.image_path, "value": image}));
    }
    if let Some(replicas) = want.replicas.filter(|r| *r != current.replicas) {
        ops.push(json!({"op": "replace", "path": "/spec/replicas", "value": replicas}));
    }
    ops
}
