//! `type = "kubectl"`: drives a Kubernetes cluster through the user's own `kubectl`, with their
//! kubeconfig, context and credentials.
//!
//! Every call is an argv array with `--kubeconfig`/`--context`/`-n` from the plan, and every
//! answer is read as JSON (`-o json`), never as human text. Only verbs and patch types that
//! behave the same on every conformant API server are used: `get`, `auth can-i`, `version`, and
//! `patch --type=json` (RFC 6902), whose first operation `test`s `metadata.resourceVersion`.
//! The API server applies a JSON patch to the object as stored at that moment, so the patch
//! lands only on the exact version that was read; a concurrent writer (a person, a controller
//! updating status) makes it fail, and the change is re-read and recomputed. Each change is
//! computed from the object as read and skipped when the object already holds it, which is
//! what makes a stage safe to apply again.
//!
//! Modes:
//! - `replicas`: two Deployments share `replicas` pods by weight (see `split_replicas`). The
//!   side that grows is changed first and must be rolled out before the other side shrinks,
//!   so capacity never drops below the total.
//! - `gateway`: the weights of a Gateway API HTTPRoute's two backendRefs (see
//!   `gateway_weights`), read back from the route and confirmed by its Gateway's status.
//!
//! Readiness is judged from a Deployment's status as `kubectl rollout status` judges it, and
//! also until a scale-down's surplus pods are gone (see `judge_deployment`), by polling `get`
//! until `rollout_timeout`. `kubectl rollout status` itself is not used: it watches, and its
//! verdict is human text.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{Backend, BackendError, Cmd, ExecError, Executor, Recovery, WeightChange};
use crate::plan::{KubectlBackend as Spec, KubectlMode, Plan, Weight};

/// The limit for one kubectl call; waits for readiness are bounded by `rollout_timeout`.
const KUBECTL_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a Deployment or route is read while waiting for it.
const POLL: Duration = Duration::from_millis(500);
/// How many times a change is re-read and re-applied when others keep writing the object.
const CONFLICT_ATTEMPTS: u32 = 5;
const DEPLOYMENT: &str = "deployment.apps";
const ROUTE: &str = "httproute.gateway.networking.k8s.io";
const SERVICE: &str = "service";

/// What the objects looked like before this run changed anything, captured at preflight: what
/// a rollback returns to, and what a journal can persist so that a later process can too.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "kebab-case")]
pub enum Original {
    Replicas {
        stable: OriginalDeployment,
        canary: OriginalDeployment,
    },
    Gateway {
        route: String,
        /// The backendRef weights of every rule that routes to both Services.
        rules: Vec<OriginalRule>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OriginalDeployment {
    pub name: String,
    pub replicas: u32,
    pub container: String,
    pub image: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OriginalRule {
    pub rule: usize,
    /// `None` where the route left the weight out (the Gateway API default is 1).
    pub stable_weight: Option<u32>,
    pub canary_weight: Option<u32>,
}

pub struct Kubectl {
    spec: Spec,
    exec: Arc<dyn Executor>,
    /// Set by a successful preflight, or handed back from the journal (`restore_state`).
    pub original: Option<Original>,
    /// Gateway mode: the Deployments whose pods the stable and the canary Service select.
    behind: (Vec<String>, Vec<String>),
    /// Dry runs read nothing: what the objects would look like after the changes shown so far.
    simulated: BTreeMap<String, View>,
}

/// The fields of an object a change is computed from, with the JSON pointers to write them.
#[derive(Debug, Clone, PartialEq)]
enum View {
    Deployment(DeploymentView),
    Route(RouteView),
}

impl Kubectl {
    pub fn new(_plan: &Plan, spec: Spec, exec: Arc<dyn Executor>) -> Self {
        Kubectl {
            spec,
            exec,
            original: None,
            behind: (Vec::new(), Vec::new()),
            simulated: BTreeMap::new(),
        }
    }

    fn dry(&self) -> bool {
        self.exec.is_dry_run()
    }

    fn cmd(&self, args: Vec<String>, purpose: impl Into<String>) -> Cmd {
        Cmd {
            argv: kubectl_argv(&self.spec, args),
            env: Vec::new(),
            timeout: KUBECTL_TIMEOUT,
            purpose: purpose.into(),
            // `get -o json` of every Deployment in a namespace can run to megabytes.
            stdout_keep: crate::exec::KEEP_DOCUMENT,
        }
    }

    /// Runs kubectl; a missing kubectl is said plainly, with what to do about it.
    async fn run(&self, cmd: &Cmd) -> Result<super::Output, BackendError> {
        match self.exec.run(cmd).await {
            Ok(output) => Ok(output),
            Err(ExecError::Spawn { program, source }) => Err(BackendError::Precondition(format!(
                "cannot run kubectl (`{program}`): {source}; install kubectl or set `kubectl` in [backend] to its path"
            ))),
            Err(e) => Err(e.into()),
        }
    }

    async fn run_checked(&self, cmd: &Cmd) -> Result<super::Output, BackendError> {
        let output = self.run(cmd).await?;
        if output.success() {
            Ok(output)
        } else {
            Err(BackendError::failed(cmd, &output))
        }
    }

    /// `kubectl get` of one object; `None` when it does not exist (`--ignore-not-found` prints
    /// nothing then, so absence is told without reading kubectl's messages).
    async fn get<T: for<'de> Deserialize<'de>>(
        &self,
        target: &str,
        purpose: &str,
    ) -> Result<Option<T>, BackendError> {
        let cmd = self.cmd(
            args(&["get", target, "-o", "json", "--ignore-not-found"]),
            purpose,
        );
        let output = self.run_checked(&cmd).await?;
        if output.stdout.trim().is_empty() {
            return Ok(None);
        }
        parse(&output, &cmd.purpose).map(Some)
    }

    async fn get_existing<T: for<'de> Deserialize<'de>>(
        &self,
        target: &str,
        purpose: &str,
    ) -> Result<T, BackendError> {
        self.get(target, purpose).await?.ok_or_else(|| {
            BackendError::Precondition(format!(
                "{target} does not exist in namespace {}",
                self.spec.namespace
            ))
        })
    }

    fn replicas_mode(&self) -> Option<ReplicasMode<'_>> {
        match &self.spec.mode {
            KubectlMode::Replicas {
                stable_deployment,
                canary_deployment,
                replicas,
                container,
                image,
            } => Some(ReplicasMode {
                stable: stable_deployment,
                canary: canary_deployment,
                total: *replicas,
                container,
                image,
            }),
            KubectlMode::Gateway { .. } => None,
        }
    }

    // ---- preflight ------------------------------------------------------------------------

    async fn check_cluster(&self) -> Result<(), BackendError> {
        let cmd = self.cmd(
            args(&["version", "-o", "json"]),
            "reach the cluster (preflight)",
        );
        let output = self.run(&cmd).await?;
        let place = match &self.spec.context {
            Some(context) => format!("the cluster of context `{context}`"),
            None => "the cluster of the current context".to_string(),
        };
        if !output.success() {
            return Err(BackendError::Precondition(format!(
                "cannot reach {place} ({}): {}",
                output.status_text(),
                output.tail()
            )));
        }
        if self.dry() {
            return Ok(());
        }
        let version: VersionInfo = parse(&output, &cmd.purpose)?;
        if version.server_version.is_none() {
            return Err(BackendError::Precondition(format!(
                "kubectl did not report {place}'s version: {}",
                output.tail()
            )));
        }
        Ok(())
    }

    /// `kubectl auth can-i` for every verb the run needs; `--quiet` answers by exit status.
    async fn check_permissions(&self, needs: &[(&str, String)]) -> Result<(), BackendError> {
        let mut refused = Vec::new();
        for (verb, target) in needs {
            let cmd = self.cmd(
                args(&["auth", "can-i", verb, target, "--quiet"]),
                format!("check that `{verb}` is allowed on {target} (preflight)"),
            );
            let output = self.run(&cmd).await?;
            match output.code {
                Some(0) => {}
                // 1 is "no"; anything else is kubectl failing to ask.
                Some(1) if output.stderr.trim().is_empty() => {
                    refused.push(format!("{verb} {target}"));
                }
                _ => return Err(BackendError::failed(&cmd, &output)),
            }
        }
        if refused.is_empty() {
            Ok(())
        } else {
            Err(BackendError::Precondition(format!(
                "kubectl auth can-i says the credentials may not {} in namespace {}",
                refused.join(", "),
                self.spec.namespace
            )))
        }
    }

    async fn preflight_replicas(&mut self) -> Result<(), BackendError> {
        let mode = self.replicas_mode().expect("replicas mode");
        let (stable, canary) = (
            target(DEPLOYMENT, mode.stable),
            target(DEPLOYMENT, mode.canary),
        );
        let container = mode.container.to_string();
        let mut found = Vec::new();
        for name in [&stable, &canary] {
            if self.dry() {
                self.get::<Value>(name, "read the Deployment (preflight)")
                    .await?;
                continue;
            }
            let d: Deployment = self
                .get_existing(name, "read the Deployment (preflight)")
                .await?;
            let view = deployment_view(&d, &container)
                .map_err(|problem| BackendError::Precondition(format!("{name}: {problem}")))?;
            found.push((d.metadata.name.clone(), view));
        }
        self.check_permissions(&[
            ("get", stable.clone()),
            ("patch", stable.clone()),
            ("get", canary.clone()),
            ("patch", canary.clone()),
        ])
        .await?;
        let mode = self.replicas_mode().expect("replicas mode");
        if self.dry() {
            // What a dry run assumes was there: the stable at the full count, the canary at 0.
            let assumed = |replicas| DeploymentView {
                resource_version: "<resourceVersion>".into(),
                generation: 0,
                replicas,
                image_path: format!("/spec/template/spec/containers/<index of {container}>/image"),
                image: "<image before the run>".into(),
            };
            found = vec![
                (mode.stable.to_string(), assumed(mode.total)),
                (mode.canary.to_string(), assumed(0)),
            ];
            for (name, view) in &found {
                self.simulated
                    .insert(name.clone(), View::Deployment(view.clone()));
            }
        }
        let original = |(name, view): &(String, DeploymentView)| OriginalDeployment {
            name: name.clone(),
            replicas: view.replicas,
            container: container.clone(),
            image: view.image.clone(),
        };
        // Restored from a journal, the state before the run stays: the objects have changed since.
        if self.original.is_none() {
            self.original = Some(Original::Replicas {
                stable: original(&found[0]),
                canary: original(&found[1]),
            });
        }
        Ok(())
    }

    async fn preflight_gateway(&mut self) -> Result<(), BackendError> {
        let KubectlMode::Gateway {
            route,
            stable_service,
            canary_service,
        } = self.spec.mode.clone()
        else {
            unreachable!("gateway mode")
        };
        let route_target = target(ROUTE, &route);
        let services = [
            target(SERVICE, &stable_service),
            target(SERVICE, &canary_service),
        ];
        let needs = [
            ("get", route_target.clone()),
            ("patch", route_target.clone()),
            ("get", services[0].clone()),
            ("get", services[1].clone()),
            ("list", "deployments.apps".to_string()),
        ];
        if self.dry() {
            self.get::<Value>(&route_target, "read the HTTPRoute (preflight)")
                .await?;
            for service in &services {
                self.get::<Value>(service, "read the Service (preflight)")
                    .await?;
            }
            self.check_permissions(&needs).await?;
            self.list_deployments().await?;
            let view = RouteView {
                resource_version: "<resourceVersion>".into(),
                generation: 0,
                rules: vec![RuleView {
                    rule: 0,
                    stable_path: format!(
                        "/spec/rules/<rule>/backendRefs/<index of {stable_service}>/weight"
                    ),
                    canary_path: format!(
                        "/spec/rules/<rule>/backendRefs/<index of {canary_service}>/weight"
                    ),
                    stable_weight: None,
                    canary_weight: None,
                }],
            };
            self.original
                .get_or_insert_with(|| original_route(&route, &view));
            self.simulated.insert(route, View::Route(view));
            return Ok(());
        }
        let found: HttpRoute = self
            .get_existing(&route_target, "read the HTTPRoute (preflight)")
            .await?;
        let view = route_view(&found, &stable_service, &canary_service)
            .map_err(|problem| BackendError::Precondition(format!("{route_target}: {problem}")))?;
        if let Some(problem) = route_not_accepted(&found) {
            return Err(BackendError::Precondition(format!(
                "{route_target}: {problem}"
            )));
        }
        let mut selectors = Vec::new();
        for service in &services {
            let svc: Service = self
                .get_existing(service, "read the Service (preflight)")
                .await?;
            selectors.push(svc.spec.selector.unwrap_or_default());
        }
        self.check_permissions(&needs).await?;
        let deployments = self.list_deployments().await?;
        self.behind = (
            deployments_behind(&selectors[0], &deployments),
            deployments_behind(&selectors[1], &deployments),
        );
        self.original
            .get_or_insert_with(|| original_route(&route, &view));
        Ok(())
    }

    async fn list_deployments(&self) -> Result<Vec<Deployment>, BackendError> {
        let cmd = self.cmd(
            args(&["get", "deployments.apps", "-o", "json"]),
            "list the Deployments behind the Services (preflight)",
        );
        let output = self.run_checked(&cmd).await?;
        if self.dry() {
            return Ok(Vec::new());
        }
        let list: List<Deployment> = parse(&output, &cmd.purpose)?;
        Ok(list.items)
    }

    // ---- Deployments ----------------------------------------------------------------------

    async fn read_deployment(&self, name: &str) -> Result<DeploymentView, BackendError> {
        let what = target(DEPLOYMENT, name);
        if self.dry() {
            self.get::<Value>(&what, "read the Deployment").await?;
            return match self.simulated.get(name) {
                Some(View::Deployment(view)) => Ok(view.clone()),
                _ => unreachable!("dry runs simulate every Deployment they change"),
            };
        }
        let container = &self.replicas_mode().expect("replicas mode").container;
        let d: Deployment = self.get_existing(&what, "read the Deployment").await?;
        deployment_view(&d, container)
            .map_err(|problem| BackendError::Precondition(format!("{what}: {problem}")))
    }

    /// Makes the Deployment hold `want`, and returns the generation to wait for. `known` is the
    /// Deployment as just read, if it was.
    async fn update_deployment(
        &mut self,
        name: &str,
        want: &DeploymentWant,
        purpose: &str,
        mut known: Option<DeploymentView>,
    ) -> Result<i64, BackendError> {
        let what = target(DEPLOYMENT, name);
        let mut attempt = 1;
        loop {
            let current = match known.take() {
                Some(view) => view,
                None => self.read_deployment(name).await?,
            };
            let ops = deployment_patch(&current, want);
            if ops.is_empty() {
                return Ok(current.generation);
            }
            let cmd = self.cmd(patch_args(&what, &ops), purpose);
            let output = self.run(&cmd).await?;
            if output.success() {
                if self.dry() {
                    let mut next = current;
                    next.apply(want);
                    self.simulated
                        .insert(name.to_string(), View::Deployment(next));
                    return Ok(0);
                }
                let patched: Deployment = parse(&output, &cmd.purpose)?;
                return Ok(patched.metadata.generation);
            }
            let now = self.read_deployment(name).await?;
            if now.resource_version == current.resource_version || attempt >= CONFLICT_ATTEMPTS {
                return Err(BackendError::failed(&cmd, &output));
            }
            attempt += 1;
        }
    }

    /// Polls until the Deployment's status says the rollout of `generation` is complete.
    async fn wait_rolled_out(&self, name: &str, generation: i64) -> Result<(), BackendError> {
        let timeout = self.spec.rollout_timeout;
        let what = target(DEPLOYMENT, name);
        if self.dry() {
            self.exec.note(&format!(
                "wait until {what} is rolled out (its status: the new generation observed, every \
                 replica updated and available, no ProgressDeadlineExceeded), at most {}",
                humantime::format_duration(timeout)
            ));
            return Ok(());
        }
        // The new version failing to become ready is the release failing its stage; anything
        // else (the stable side, or a cluster that does not answer) is ours to report.
        let verdict = |why: String, read: bool| {
            if read && self.runs_new_version(name) {
                BackendError::NewVersionFailed(why)
            } else {
                BackendError::NotConfirmed(why)
            }
        };
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // A failed read is not a verdict on the rollout: keep asking until the deadline.
            let (last, read) = match self
                .get::<Deployment>(&what, "read the Deployment's rollout status")
                .await
            {
                Ok(Some(d)) => match judge_deployment(&d, generation) {
                    Readiness::Ready => return Ok(()),
                    Readiness::Failed(why) => {
                        return Err(verdict(format!("{what} failed to roll out: {why}"), true));
                    }
                    Readiness::Waiting(why) => (why, true),
                },
                Ok(None) => ("it no longer exists".to_string(), false),
                Err(e) => (e.to_string(), false),
            };
            if tokio::time::Instant::now() >= deadline {
                let why = format!(
                    "{what} did not finish rolling out within {} (rollout_timeout): {last}",
                    humantime::format_duration(timeout)
                );
                return Err(verdict(why, read));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Whether the Deployment runs the new version: the canary Deployment, or one behind the
    /// canary Service.
    fn runs_new_version(&self, name: &str) -> bool {
        match &self.spec.mode {
            KubectlMode::Replicas {
                canary_deployment, ..
            } => canary_deployment == name,
            KubectlMode::Gateway { .. } => self.behind.1.iter().any(|n| n == name),
        }
    }

    async fn change_and_wait(
        &mut self,
        name: &str,
        want: DeploymentWant,
        purpose: &str,
        known: Option<DeploymentView>,
    ) -> Result<(), BackendError> {
        let generation = self.update_deployment(name, &want, purpose, known).await?;
        self.wait_rolled_out(name, generation).await
    }

    async fn set_replicas_weight(&mut self, weight: Weight) -> Result<(), BackendError> {
        let mode = self.replicas_mode().expect("replicas mode");
        let (stable, canary) = (mode.stable.to_string(), mode.canary.to_string());
        let image = mode.image.to_string();
        let (stable_count, canary_count) = split_replicas(mode.total, weight);
        let canary_now = self.read_deployment(&canary).await?;
        let grows = canary_count >= canary_now.replicas;
        let canary_want = DeploymentWant {
            replicas: Some(canary_count),
            image: Some(image),
        };
        let stable_want = DeploymentWant {
            replicas: Some(stable_count),
            image: None,
        };
        let canary_purpose = format!(
            "the new image and {canary_count} of {} pods on the canary Deployment",
            mode.total
        );
        let stable_purpose = format!(
            "{stable_count} of {} pods on the stable Deployment",
            mode.total
        );
        if grows {
            self.change_and_wait(&canary, canary_want, &canary_purpose, Some(canary_now))
                .await?;
            self.change_and_wait(&stable, stable_want, &stable_purpose, None)
                .await
        } else {
            self.change_and_wait(&stable, stable_want, &stable_purpose, None)
                .await?;
            self.change_and_wait(&canary, canary_want, &canary_purpose, None)
                .await
        }
    }

    async fn promote_replicas(&mut self) -> Result<(), BackendError> {
        let mode = self.replicas_mode().expect("replicas mode");
        let (stable, canary) = (mode.stable.to_string(), mode.canary.to_string());
        let want = DeploymentWant {
            replicas: Some(mode.total),
            image: Some(mode.image.to_string()),
        };
        self.change_and_wait(
            &stable,
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
            &canary,
            want,
            "promote: 0 pods on the canary Deployment",
            None,
        )
        .await
    }

    async fn rollback_replicas(&mut self) -> Result<(), BackendError> {
        let Some(Original::Replicas { stable, canary }) = self.original.clone() else {
            return Ok(());
        };
        // Both writes go out before either wait: the canary leaves the Service's endpoints at
        // once while the stable Deployment comes back.
        let stable_generation = self
            .update_deployment(
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
            .update_deployment(
                &canary.name,
                &DeploymentWant {
                    replicas: Some(0),
                    image: None,
                },
                "roll back: 0 pods on the canary Deployment",
                None,
            )
            .await?;
        self.wait_rolled_out(&stable.name, stable_generation)
            .await?;
        self.wait_rolled_out(&canary.name, canary_generation)
            .await?;
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

    // ---- gateway --------------------------------------------------------------------------

    fn gateway_names(&self) -> (String, String, String) {
        match &self.spec.mode {
            KubectlMode::Gateway {
                route,
                stable_service,
                canary_service,
            } => (
                route.clone(),
                stable_service.clone(),
                canary_service.clone(),
            ),
            KubectlMode::Replicas { .. } => unreachable!("gateway mode"),
        }
    }

    async fn read_route(&self) -> Result<(RouteView, Option<HttpRoute>), BackendError> {
        let (route, stable, canary) = self.gateway_names();
        let what = target(ROUTE, &route);
        if self.dry() {
            self.get::<Value>(&what, "read the HTTPRoute").await?;
            return match self.simulated.get(&route) {
                Some(View::Route(view)) => Ok((view.clone(), None)),
                _ => unreachable!("dry runs simulate the route"),
            };
        }
        let found: HttpRoute = self.get_existing(&what, "read the HTTPRoute").await?;
        let view = route_view(&found, &stable, &canary)
            .map_err(|problem| BackendError::Precondition(format!("{what}: {problem}")))?;
        Ok((view, Some(found)))
    }

    async fn set_route_weight(&mut self, weight: Weight) -> Result<(), BackendError> {
        let (route, _, _) = self.gateway_names();
        let what = target(ROUTE, &route);
        let (stable_weight, canary_weight) = gateway_weights(weight);
        let purpose = format!(
            "set the route's weights to {stable_weight} (stable) and {canary_weight} (canary)"
        );
        let mut attempt = 1;
        let generation = loop {
            let (current, _) = self.read_route().await?;
            let ops = route_patch(&current, stable_weight, canary_weight);
            if ops.is_empty() {
                break current.generation;
            }
            let cmd = self.cmd(patch_args(&what, &ops), purpose.as_str());
            let output = self.run(&cmd).await?;
            if output.success() {
                if self.dry() {
                    let mut next = current;
                    for rule in &mut next.rules {
                        rule.stable_weight = Some(stable_weight);
                        rule.canary_weight = Some(canary_weight);
                    }
                    self.simulated.insert(route.clone(), View::Route(next));
                    break 0;
                }
                let patched: HttpRoute = parse(&output, &cmd.purpose)?;
                break patched.metadata.generation;
            }
            let (now, _) = self.read_route().await?;
            if now.resource_version == current.resource_version || attempt >= CONFLICT_ATTEMPTS {
                return Err(BackendError::failed(&cmd, &output));
            }
            attempt += 1;
        };
        self.confirm_route(stable_weight, canary_weight, generation)
            .await
    }

    /// Reads the route back until it holds the weights and its Gateways have accepted that
    /// generation of it.
    async fn confirm_route(
        &self,
        stable_weight: u32,
        canary_weight: u32,
        generation: i64,
    ) -> Result<(), BackendError> {
        let (route, _, _) = self.gateway_names();
        let what = target(ROUTE, &route);
        let timeout = self.spec.rollout_timeout;
        if self.dry() {
            self.exec.note(&format!(
                "read {what} back until it holds the weights {stable_weight}/{canary_weight} and \
                 every Gateway has accepted that generation of it, at most {}",
                humantime::format_duration(timeout)
            ));
            return Ok(());
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let (view, found) = self.read_route().await?;
            let found = found.expect("a real read");
            if let Some(rule) = view.rules.iter().find(|r| {
                r.stable_weight.unwrap_or(1) != stable_weight
                    || r.canary_weight.unwrap_or(1) != canary_weight
            }) {
                return Err(BackendError::NotConfirmed(format!(
                    "{what} read back with weights {}/{} in rule {} instead of {stable_weight}/{canary_weight}: someone else changed it",
                    rule.stable_weight.unwrap_or(1),
                    rule.canary_weight.unwrap_or(1),
                    rule.rule
                )));
            }
            let last = match judge_route(&found, generation) {
                Readiness::Ready => return Ok(()),
                Readiness::Failed(why) => {
                    return Err(BackendError::NotConfirmed(format!("{what}: {why}")));
                }
                Readiness::Waiting(why) => why,
            };
            if tokio::time::Instant::now() >= deadline {
                return Err(BackendError::NotConfirmed(format!(
                    "{what} holds the new weights, but within {} (rollout_timeout) {last}",
                    humantime::format_duration(timeout)
                )));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The Deployments behind a Service that is about to get traffic must be rolled out.
    async fn wait_behind(&self, weight: Weight) -> Result<(), BackendError> {
        let (_, stable, canary) = self.gateway_names();
        let (stable_weight, canary_weight) = gateway_weights(weight);
        for (service, names, gets) in [
            (&stable, &self.behind.0, stable_weight > 0),
            (&canary, &self.behind.1, canary_weight > 0),
        ] {
            if !gets {
                continue;
            }
            if self.dry() {
                self.exec.note(&format!(
                    "wait until the Deployments whose pods service/{service} selects are rolled out, at most {}",
                    humantime::format_duration(self.spec.rollout_timeout)
                ));
                continue;
            }
            for name in names {
                self.wait_rolled_out(name, 0).await?;
            }
        }
        Ok(())
    }
}

struct ReplicasMode<'a> {
    stable: &'a str,
    canary: &'a str,
    total: u32,
    container: &'a str,
    image: &'a str,
}

#[async_trait]
impl Backend for Kubectl {
    fn describe(&self) -> String {
        let place = match &self.spec.context {
            Some(context) => format!("namespace {} of context `{context}`", self.spec.namespace),
            None => format!("namespace {}", self.spec.namespace),
        };
        match &self.spec.mode {
            KubectlMode::Replicas {
                stable_deployment,
                canary_deployment,
                ..
            } => format!(
                "Kubernetes Deployments `{stable_deployment}` (stable) and `{canary_deployment}` (canary) in {place}"
            ),
            KubectlMode::Gateway { route, .. } => {
                format!("Kubernetes HTTPRoute `{route}` in {place}")
            }
        }
    }

    /// Reads everything and changes nothing: kubectl runs, the cluster answers, every object
    /// is there and in a shape the run can work with, and every verb is allowed.
    async fn preflight(&mut self) -> Result<(), BackendError> {
        self.check_cluster().await?;
        match self.spec.mode {
            KubectlMode::Replicas { .. } => self.preflight_replicas().await,
            KubectlMode::Gateway { .. } => self.preflight_gateway().await,
        }
    }

    async fn set_weight(&mut self, change: WeightChange) -> Result<(), BackendError> {
        match self.spec.mode {
            KubectlMode::Replicas { .. } => self.set_replicas_weight(change.weight).await,
            KubectlMode::Gateway { .. } => {
                self.wait_behind(change.weight).await?;
                self.set_route_weight(change.weight).await
            }
        }
    }

    /// Replicas mode: the stable Deployment takes the new image and the full count, and only
    /// once it is rolled out does the canary go to zero. Gateway mode: the route already sends
    /// everything to the canary Service, which stays as it is.
    async fn promote(&mut self) -> Result<(), BackendError> {
        match self.spec.mode {
            KubectlMode::Replicas { .. } => self.promote_replicas().await,
            KubectlMode::Gateway { .. } => Ok(()),
        }
    }

    async fn rollback(&mut self) -> Result<(), BackendError> {
        match self.spec.mode {
            KubectlMode::Replicas { .. } => self.rollback_replicas().await,
            KubectlMode::Gateway { .. } => self.set_route_weight(Weight::ZERO).await,
        }
    }

    /// Replicas mode: stable is the plan's `replicas` on the stable Deployment with the image
    /// it runs now, and 0 on the canary; unknowable when the stable Deployment already runs
    /// the new image (the image before it is only in the journal). Gateway mode: the rollback
    /// sets 100/0 on the route, which needs nothing more than a preflight.
    async fn recover(&mut self, _recovery: &Recovery) -> Result<Vec<String>, BackendError> {
        self.preflight().await?;
        let Some(mode) = self.replicas_mode() else {
            return Ok(Vec::new());
        };
        let (total, new_image) = (mode.total, mode.image.to_string());
        let Some(Original::Replicas { stable, canary }) = &mut self.original else {
            return Ok(Vec::new());
        };
        if stable.image == new_image {
            return Err(BackendError::Precondition(format!(
                "the stable Deployment `{}` already runs the new image {new_image}, and the image it \
                 ran before is only known to the journal; set it by hand (`kubectl set image \
                 deployment/{} {}=PREVIOUS_IMAGE`), then run `rollout rollback` again",
                stable.name, stable.name, stable.container
            )));
        }
        stable.replicas = total;
        canary.replicas = 0;
        Ok(vec![format!(
            "no journal: returning to the plan's stable state, {total} pods of {} on `{}` and 0 on `{}` \
             (which keeps the image {})",
            stable.image, stable.name, canary.name, canary.image
        )])
    }

    fn saved_state(&self) -> Option<Value> {
        let original = self.original.as_ref()?;
        Some(serde_json::to_value(original).expect("the original state serializes"))
    }

    fn restore_state(&mut self, state: Value) -> Result<(), BackendError> {
        let original: Original = serde_json::from_value(state).map_err(|e| {
            BackendError::Precondition(format!(
                "the journal's record of the Kubernetes objects before the run cannot be read ({e})"
            ))
        })?;
        self.original = Some(original);
        Ok(())
    }
}

// ---- pure parts -------------------------------------------------------------------------------

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn target(kind: &str, name: &str) -> String {
    format!("{kind}/{name}")
}

/// The full argv: the program, the plan's connection flags, then the command.
pub fn kubectl_argv(spec: &Spec, command: Vec<String>) -> Vec<String> {
    let mut argv = vec![spec.kubectl.clone()];
    if let Some(kubeconfig) = &spec.kubeconfig {
        argv.push("--kubeconfig".into());
        argv.push(kubeconfig.display().to_string());
    }
    if let Some(context) = &spec.context {
        argv.push("--context".into());
        argv.push(context.clone());
    }
    argv.push("-n".into());
    argv.push(spec.namespace.clone());
    argv.extend(command);
    argv
}

/// `kubectl patch TARGET --type=json -p OPS -o json`.
fn patch_args(target: &str, ops: &[Value]) -> Vec<String> {
    vec![
        "patch".into(),
        target.into(),
        "--type=json".into(),
        "-p".into(),
        Value::Array(ops.to_vec()).to_string(),
        "-o".into(),
        "json".into(),
    ]
}

fn parse<T: for<'de> Deserialize<'de>>(
    output: &super::Output,
    purpose: &str,
) -> Result<T, BackendError> {
    if output.stdout_dropped > 0 {
        return Err(BackendError::UnexpectedOutput {
            purpose: purpose.to_string(),
            problem: format!(
                "kubectl printed more than rollout reads ({} dropped)",
                crate::exec::human_bytes(output.stdout_dropped)
            ),
        });
    }
    serde_json::from_str(&output.stdout).map_err(|e| BackendError::UnexpectedOutput {
        purpose: purpose.to_string(),
        problem: format!("it is not the JSON expected ({e})"),
    })
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

/// HTTPRoute backendRef weights `(stable, canary)` for a stage weight: relative numbers that add
/// up to the smallest of 100, 1000, 10000 and 100000 that expresses it exactly (25% is 75/25,
/// 0.5% is 995/5), so `kubectl get httproute` reads as a share.
pub fn gateway_weights(weight: Weight) -> (u32, u32) {
    let share = (weight.percent() * 1000.0).round() as u32; // out of 100000
    let mut scale = 100u32;
    while scale < 100_000 && !share.is_multiple_of(100_000 / scale) {
        scale *= 10;
    }
    let canary = share / (100_000 / scale);
    (scale - canary, canary)
}

/// What a change makes a Deployment hold; `None` leaves that field as it is.
#[derive(Debug, Clone, PartialEq)]
struct DeploymentWant {
    replicas: Option<u32>,
    image: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
struct DeploymentView {
    resource_version: String,
    generation: i64,
    replicas: u32,
    /// JSON pointer to the container's `image`.
    image_path: String,
    image: String,
}

impl DeploymentView {
    fn apply(&mut self, want: &DeploymentWant) {
        if let Some(replicas) = want.replicas {
            self.replicas = replicas;
        }
        if let Some(image) = &want.image {
            self.image = image.clone();
        }
    }
}

fn deployment_view(d: &Deployment, container: &str) -> Result<DeploymentView, String> {
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

/// The JSON patch that makes the Deployment hold `want`, guarded by its resourceVersion; empty
/// when it already does.
fn deployment_patch(current: &DeploymentView, want: &DeploymentWant) -> Vec<Value> {
    let mut ops = Vec::new();
    if let Some(image) = want.image.as_ref().filter(|i| **i != current.image) {
        ops.push(json!({"op": "replace", "path": current.image_path, "value": image}));
    }
    if let Some(replicas) = want.replicas.filter(|r| *r != current.replicas) {
        ops.push(json!({"op": "replace", "path": "/spec/replicas", "value": replicas}));
    }
    guarded(&current.resource_version, ops)
}

fn guarded(resource_version: &str, mut ops: Vec<Value>) -> Vec<Value> {
    if !ops.is_empty() {
        ops.insert(
            0,
            json!({"op": "test", "path": "/metadata/resourceVersion", "value": resource_version}),
        );
    }
    ops
}

#[derive(Debug, Clone, PartialEq)]
struct RouteView {
    resource_version: String,
    generation: i64,
    rules: Vec<RuleView>,
}

#[derive(Debug, Clone, PartialEq)]
struct RuleView {
    rule: usize,
    stable_path: String,
    canary_path: String,
    stable_weight: Option<u32>,
    canary_weight: Option<u32>,
}

/// The rules of the route that send traffic to the two Services. Every rule that names one of
/// them must name both, or weights could not express the split there.
fn route_view(route: &HttpRoute, stable: &str, canary: &str) -> Result<RouteView, String> {
    let namespace = route.metadata.namespace.as_str();
    let mut rules = Vec::new();
    for (i, rule) in route.spec.rules.iter().enumerate() {
        let find = |name: &str| {
            rule.backend_refs
                .iter()
                .position(|r| r.name == name && r.is_service_in(namespace))
        };
        match (find(stable), find(canary)) {
            (Some(s), Some(c)) => rules.push(RuleView {
                rule: i,
                stable_path: format!("/spec/rules/{i}/backendRefs/{s}/weight"),
                canary_path: format!("/spec/rules/{i}/backendRefs/{c}/weight"),
                stable_weight: rule.backend_refs[s].weight,
                canary_weight: rule.backend_refs[c].weight,
            }),
            (None, None) => {}
            (Some(_), None) => {
                return Err(format!(
                    "rule {i} sends traffic to Service `{stable}` but has no backendRef for `{canary}`; add one with weight 0"
                ));
            }
            (None, Some(_)) => {
                return Err(format!(
                    "rule {i} sends traffic to Service `{canary}` but has no backendRef for `{stable}`"
                ));
            }
        }
    }
    if rules.is_empty() {
        return Err(format!(
            "no rule has backendRefs for both Services `{stable}` and `{canary}`"
        ));
    }
    Ok(RouteView {
        resource_version: route.metadata.resource_version.clone(),
        generation: route.metadata.generation,
        rules,
    })
}

fn original_route(route: &str, view: &RouteView) -> Original {
    Original::Gateway {
        route: route.to_string(),
        rules: view
            .rules
            .iter()
            .map(|r| OriginalRule {
                rule: r.rule,
                stable_weight: r.stable_weight,
                canary_weight: r.canary_weight,
            })
            .collect(),
    }
}

/// `add` rather than `replace`: a backendRef may leave `weight` out, and `add` on an object
/// member sets it whether or not it is there.
fn route_patch(current: &RouteView, stable: u32, canary: u32) -> Vec<Value> {
    let mut ops = Vec::new();
    for rule in &current.rules {
        if rule.stable_weight != Some(stable) {
            ops.push(json!({"op": "add", "path": rule.stable_path, "value": stable}));
        }
        if rule.canary_weight != Some(canary) {
            ops.push(json!({"op": "add", "path": rule.canary_path, "value": canary}));
        }
    }
    guarded(&current.resource_version, ops)
}

/// Names of the Deployments whose pods a Service's selector picks.
fn deployments_behind(
    selector: &BTreeMap<String, String>,
    deployments: &[Deployment],
) -> Vec<String> {
    if selector.is_empty() {
        return Vec::new();
    }
    deployments
        .iter()
        .filter(|d| {
            let labels = &d.spec.template.metadata.labels;
            selector.iter().all(|(k, v)| labels.get(k) == Some(v))
        })
        .map(|d| d.metadata.name.clone())
        .collect()
}

#[derive(Debug, Clone, PartialEq)]
pub enum Readiness {
    Ready,
    /// Not yet, and why.
    Waiting(String),
    /// It will not get there by waiting.
    Failed(String),
}

/// Whether a Deployment has finished rolling out `generation` (or any later one), judged from
/// its status the way `kubectl rollout status` judges it, and also until a scale-down is done.
pub fn judge_deployment(d: &Deployment, generation: i64) -> Readiness {
    let status = &d.status;
    let wanted = d.metadata.generation.max(generation);
    if status.observed_generation < wanted {
        return Readiness::Waiting(format!(
            "the Deployment controller has not yet seen generation {wanted} (observedGeneration is {})",
            status.observed_generation
        ));
    }
    if let Some(c) = status
        .conditions
        .iter()
        .find(|c| c.kind == "Progressing" && c.reason == "ProgressDeadlineExceeded")
    {
        return Readiness::Failed(format!(
            "its Progressing condition is ProgressDeadlineExceeded (no progress within \
             progressDeadlineSeconds = {}s): {}",
            d.spec.progress_deadline_seconds.unwrap_or(600),
            c.message
        ));
    }
    let replicas = d.spec.replicas.unwrap_or(1);
    if status.updated_replicas < replicas {
        return Readiness::Waiting(format!(
            "{} of {replicas} replicas run the current pod template",
            status.updated_replicas
        ));
    }
    // Where `kubectl rollout status` waits only for old pods beyond the updated ones, this
    // also waits for the surplus of a scale-down: a canary "at 0" still serving would not be.
    if status.replicas > replicas {
        return Readiness::Waiting(format!(
            "{} replicas exist where {replicas} are wanted: the surplus is still terminating",
            status.replicas
        ));
    }
    if status.available_replicas < status.updated_replicas {
        return Readiness::Waiting(format!(
            "{} of {} updated replicas are available",
            status.available_replicas, status.updated_replicas
        ));
    }
    Readiness::Ready
}

/// Why a route would move no traffic, if no Gateway has accepted it.
fn route_not_accepted(route: &HttpRoute) -> Option<String> {
    let accepted = route.status.parents.iter().any(|p| {
        p.conditions
            .iter()
            .any(|c| c.kind == "Accepted" && c.status == "True")
    });
    (!accepted).then(|| {
        "no Gateway has accepted this route (status.parents has no Accepted condition that is True), \
         so its weights would move no traffic"
            .to_string()
    })
}

/// Whether every Gateway the route is attached to has accepted `generation` of it (or a later
/// one) and resolved its backendRefs. A condition without `observedGeneration` is taken at its
/// word.
pub fn judge_route(route: &HttpRoute, generation: i64) -> Readiness {
    let wanted = route.metadata.generation.max(generation);
    if route.status.parents.is_empty() {
        return Readiness::Waiting("no Gateway has reported on the route".into());
    }
    for parent in &route.status.parents {
        let gateway = parent.parent_ref.name.as_str();
        let accepted = parent.conditions.iter().find(|c| c.kind == "Accepted");
        let Some(accepted) = accepted else {
            return Readiness::Waiting(format!(
                "Gateway `{gateway}` has not said whether it accepts the route"
            ));
        };
        let seen = |c: &Condition| c.observed_generation.is_none_or(|g| g >= wanted);
        if !seen(accepted) {
            return Readiness::Waiting(format!(
                "Gateway `{gateway}` has not yet accepted generation {wanted} of the route"
            ));
        }
        if accepted.status != "True" {
            return Readiness::Failed(format!(
                "Gateway `{gateway}` does not accept the route ({}): {}",
                accepted.reason, accepted.message
            ));
        }
        if let Some(refs) = parent
            .conditions
            .iter()
            .find(|c| c.kind == "ResolvedRefs" && seen(c) && c.status == "False")
        {
            return Readiness::Failed(format!(
                "Gateway `{gateway}` cannot resolve the route's backendRefs ({}): {}",
                refs.reason, refs.message
            ));
        }
    }
    Readiness::Ready
}

// ---- the JSON kubectl prints, as far as the backend reads it ----------------------------------

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct VersionInfo {
    server_version: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct List<T> {
    items: Vec<T>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Meta {
    pub name: String,
    pub namespace: String,
    pub resource_version: String,
    pub generation: i64,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Deployment {
    pub metadata: Meta,
    pub spec: DeploymentSpec,
    pub status: DeploymentStatus,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct DeploymentSpec {
    /// Absent means 1, as the API server defaults it.
    pub replicas: Option<u32>,
    pub progress_deadline_seconds: Option<u32>,
    pub template: PodTemplate,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct PodTemplate {
    pub metadata: TemplateMeta,
    pub spec: PodSpec,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct TemplateMeta {
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct PodSpec {
    pub containers: Vec<Container>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Container {
    pub name: String,
    pub image: String,
}

/// Zero counts are left out of the JSON by the API server, hence the defaults.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct DeploymentStatus {
    pub observed_generation: i64,
    pub replicas: u32,
    pub updated_replicas: u32,
    pub available_replicas: u32,
    pub conditions: Vec<Condition>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub kind: String,
    pub status: String,
    pub reason: String,
    pub message: String,
    pub observed_generation: Option<i64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct HttpRoute {
    pub metadata: Meta,
    pub spec: RouteSpec,
    pub status: RouteStatus,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct RouteSpec {
    pub rules: Vec<RouteRule>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct RouteRule {
    pub backend_refs: Vec<BackendRef>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct BackendRef {
    pub name: String,
    pub group: Option<String>,
    pub kind: Option<String>,
    pub namespace: Option<String>,
    pub weight: Option<u32>,
}

impl BackendRef {
    /// A Service in the route's own namespace; `group`, `kind` and `namespace` left out mean
    /// exactly that.
    fn is_service_in(&self, namespace: &str) -> bool {
        self.group.as_deref().unwrap_or("").is_empty()
            && self.kind.as_deref().unwrap_or("Service") == "Service"
            && self.namespace.as_deref().is_none_or(|n| n == namespace)
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct RouteStatus {
    pub parents: Vec<RouteParentStatus>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct RouteParentStatus {
    pub parent_ref: ParentRef,
    pub conditions: Vec<Condition>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ParentRef {
    pub name: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
struct Service {
    spec: ServiceSpec,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
struct ServiceSpec {
    selector: Option<BTreeMap<String, String>>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// A document recorded from `kubectl get -o json`, under tests/fixtures/kubectl/.
    fn fixture<T: for<'de> Deserialize<'de>>(name: &str) -> T {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/kubectl")
            .join(name);
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()))
    }

    fn weight(p: f64) -> Weight {
        Weight::new(p).unwrap()
    }

    fn spec(mode: KubectlMode) -> Spec {
        Spec {
            kubectl: "kubectl".into(),
            kubeconfig: Some(PathBuf::from("/etc/rollout/kube config")),
            context: Some("prod-eu-west-1".into()),
            namespace: "shop".into(),
            mode,
            rollout_timeout: Duration::from_secs(300),
        }
    }

    fn replicas_mode() -> KubectlMode {
        KubectlMode::Replicas {
            stable_deployment: "inventory".into(),
            canary_deployment: "inventory-canary".into(),
            replicas: 10,
            container: "app".into(),
            image: "registry.example.com/shop/inventory:4.2.0".into(),
        }
    }

    #[test]
    fn every_command_carries_the_plans_connection_flags() {
        let argv = kubectl_argv(&spec(replicas_mode()), args(&["get", "deployment.apps/x"]));
        assert_eq!(
            argv,
            [
                "kubectl",
                "--kubeconfig",
                "/etc/rollout/kube config",
                "--context",
                "prod-eu-west-1",
                "-n",
                "shop",
                "get",
                "deployment.apps/x"
            ]
        );
        let mut bare = spec(replicas_mode());
        bare.kubeconfig = None;
        bare.context = None;
        bare.kubectl = "/opt/k8s/kubectl".into();
        assert_eq!(
            kubectl_argv(&bare, args(&["version", "-o", "json"])),
            ["/opt/k8s/kubectl", "-n", "shop", "version", "-o", "json"]
        );
    }

    #[test]
    fn a_patch_is_guarded_by_the_resource_version_it_was_computed_from() {
        let stable: Deployment = fixture("deployment-stable.json");
        let view = deployment_view(&stable, "app").unwrap();
        // `app` is the second container: the pointer names its index.
        assert_eq!(view.image_path, "/spec/template/spec/containers/1/image");
        assert_eq!(view.image, "registry.example.com/shop/inventory:4.1.3");
        assert_eq!(view.replicas, 10);
        let want = DeploymentWant {
            replicas: Some(9),
            image: Some("registry.example.com/shop/inventory:4.2.0".into()),
        };
        let ops = deployment_patch(&view, &want);
        assert_eq!(
            patch_args("deployment.apps/inventory", &ops),
            [
                "patch",
                "deployment.apps/inventory",
                "--type=json",
                "-p",
                r#"[{"op":"test","path":"/metadata/resourceVersion","value":"48211937"},{"op":"replace","path":"/spec/template/spec/containers/1/image","value":"registry.example.com/shop/inventory:4.2.0"},{"op":"replace","path":"/spec/replicas","value":9}]"#,
                "-o",
                "json"
            ]
        );
    }

    #[test]
    fn a_change_already_made_writes_nothing() {
        let stable: Deployment = fixture("deployment-stable.json");
        let view = deployment_view(&stable, "app").unwrap();
        let same = DeploymentWant {
            replicas: Some(10),
            image: Some("registry.example.com/shop/inventory:4.1.3".into()),
        };
        assert!(deployment_patch(&view, &same).is_empty());
        let only_replicas = DeploymentWant {
            replicas: Some(3),
            image: Some("registry.example.com/shop/inventory:4.1.3".into()),
        };
        assert_eq!(deployment_patch(&view, &only_replicas).len(), 2);
    }

    #[test]
    fn a_missing_container_is_named_with_the_ones_there() {
        let stable: Deployment = fixture("deployment-stable.json");
        let err = deployment_view(&stable, "web").unwrap_err();
        assert_eq!(
            err,
            "its pod template has no container `web` (it has log-shipper, app)"
        );
    }

    #[test]
    fn replicas_split_by_weight_with_at_least_one_canary_pod() {
        let split = |total, w| split_replicas(total, weight(w));
        assert_eq!(split(10, 0.0), (10, 0));
        assert_eq!(split(10, 0.1), (9, 1));
        assert_eq!(split(10, 1.0), (9, 1));
        assert_eq!(split(10, 10.0), (9, 1));
        assert_eq!(split(10, 14.0), (9, 1));
        // An exact half rounds toward stable.
        assert_eq!(split(10, 15.0), (9, 1));
        assert_eq!(split(10, 16.0), (8, 2));
        assert_eq!(split(10, 25.0), (8, 2));
        assert_eq!(split(4, 25.0), (3, 1));
        assert_eq!(split(4, 99.0), (1, 3));
        assert_eq!(split(10, 50.0), (5, 5));
        assert_eq!(split(10, 95.0), (1, 9));
        assert_eq!(split(10, 99.0), (1, 9));
        assert_eq!(split(10, 100.0), (0, 10));
        assert_eq!(split(3, 50.0), (2, 1));
        assert_eq!(split(4, 33.3), (3, 1));
        assert_eq!(split(1, 50.0), (0, 1));
        assert_eq!(split(1, 0.0), (1, 0));
        assert_eq!(split(2, 99.9), (1, 1));
        for total in 1..=25 {
            for tenths in 0..=1000 {
                let w = f64::from(tenths) / 10.0;
                let (s, c) = split(total, w);
                assert_eq!(s + c, total);
                assert_eq!(c > 0, w > 0.0, "{total} pods at {w}%");
            }
        }
    }

    #[test]
    fn gateway_weights_read_as_shares() {
        let w = |p| gateway_weights(weight(p));
        assert_eq!(w(0.0), (100, 0));
        assert_eq!(w(1.0), (99, 1));
        assert_eq!(w(25.0), (75, 25));
        assert_eq!(w(0.5), (995, 5));
        assert_eq!(w(0.25), (9975, 25));
        assert_eq!(w(0.001), (99999, 1));
        assert_eq!(w(100.0), (0, 100));
    }

    #[test]
    fn readiness_is_judged_from_recorded_deployment_status() {
        let judge = |name: &str, generation| {
            let d: Deployment = fixture(name);
            judge_deployment(&d, generation)
        };
        assert_eq!(judge("deployment-stable.json", 12), Readiness::Ready);
        assert_eq!(
            judge("deployment-canary-scaled-to-zero.json", 31),
            Readiness::Ready
        );
        assert_eq!(
            judge("deployment-generation-not-observed.json", 13),
            Readiness::Waiting(
                "the Deployment controller has not yet seen generation 13 (observedGeneration is 12)"
                    .into()
            )
        );
        assert_eq!(
            judge("deployment-rolling-out.json", 13),
            Readiness::Waiting("5 of 10 replicas run the current pod template".into())
        );
        assert_eq!(
            judge("deployment-old-replicas-terminating.json", 13),
            Readiness::Waiting(
                "12 replicas exist where 10 are wanted: the surplus is still terminating".into()
            )
        );
        let Readiness::Failed(why) = judge("deployment-progress-deadline-exceeded.json", 33) else {
            panic!("a deployment past its progress deadline has failed");
        };
        assert!(
            why.starts_with("its Progressing condition is ProgressDeadlineExceeded"),
            "{why}"
        );
        assert!(why.contains("has timed out progressing"), "{why}");
        // A status older than the generation a patch returned is not trusted.
        assert!(matches!(
            judge("deployment-stable.json", 13),
            Readiness::Waiting(_)
        ));
    }

    #[test]
    fn available_replicas_must_catch_up_with_updated_ones() {
        let mut d: Deployment = fixture("deployment-old-replicas-terminating.json");
        d.status.replicas = 10;
        d.status.available_replicas = 7;
        assert_eq!(
            judge_deployment(&d, 13),
            Readiness::Waiting("7 of 10 updated replicas are available".into())
        );
    }

    #[test]
    fn the_route_rules_to_weight_are_those_naming_both_services() {
        let route: HttpRoute = fixture("httproute.json");
        let view = route_view(&route, "search-api-stable", "search-api-canary").unwrap();
        assert_eq!(
            view,
            RouteView {
                resource_version: "91733012".into(),
                generation: 4,
                rules: vec![RuleView {
                    rule: 0,
                    stable_path: "/spec/rules/0/backendRefs/0/weight".into(),
                    canary_path: "/spec/rules/0/backendRefs/1/weight".into(),
                    stable_weight: Some(100),
                    canary_weight: Some(0),
                }],
            }
        );
        assert_eq!(
            serde_json::to_string(&route_patch(&view, 99, 1)).unwrap(),
            r#"[{"op":"test","path":"/metadata/resourceVersion","value":"91733012"},{"op":"add","path":"/spec/rules/0/backendRefs/0/weight","value":99},{"op":"add","path":"/spec/rules/0/backendRefs/1/weight","value":1}]"#
        );
        assert!(route_patch(&view, 100, 0).is_empty());
        let err = route_view(&route, "search-api-stable", "search-api-next").unwrap_err();
        assert!(err.contains("no backendRef for `search-api-next`"), "{err}");
        let err = route_view(&route, "nothing", "else").unwrap_err();
        assert_eq!(
            err,
            "no rule has backendRefs for both Services `nothing` and `else`"
        );
    }

    #[test]
    fn a_route_is_confirmed_by_its_gateways_status() {
        let route: HttpRoute = fixture("httproute.json");
        assert_eq!(judge_route(&route, 4), Readiness::Ready);
        assert_eq!(route_not_accepted(&route), None);
        let pending: HttpRoute = fixture("httproute-generation-not-accepted.json");
        assert_eq!(
            judge_route(&pending, 5),
            Readiness::Waiting(
                "Gateway `public` has not yet accepted generation 5 of the route".into()
            )
        );
        let mut unresolved = pending.clone();
        for c in &mut unresolved.status.parents[0].conditions {
            c.observed_generation = Some(5);
            if c.kind == "ResolvedRefs" {
                c.status = "False".into();
                c.reason = "BackendNotFound".into();
            }
        }
        assert!(matches!(judge_route(&unresolved, 5), Readiness::Failed(_)));
        let mut orphan = route.clone();
        orphan.status.parents.clear();
        assert!(route_not_accepted(&orphan).is_some());
    }

    #[test]
    fn a_services_selector_finds_its_deployments() {
        #[derive(Deserialize)]
        struct Svc {
            spec: ServiceSpec,
        }
        let service: Svc = fixture("service.json");
        let selector = service.spec.selector.unwrap();
        let mut canary: Deployment = fixture("deployment-canary-scaled-to-zero.json");
        canary.metadata.name = "search-api-canary".into();
        canary.spec.template.metadata.labels =
            [("app", "search-api"), ("track", "canary"), ("tier", "web")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
        let other: Deployment = fixture("deployment-stable.json");
        assert_eq!(
            deployments_behind(&selector, &[other.clone(), canary]),
            ["search-api-canary"]
        );
        assert!(deployments_behind(&BTreeMap::new(), &[other]).is_empty());
    }

    #[test]
    fn the_original_state_survives_a_journal() {
        let original = Original::Replicas {
            stable: OriginalDeployment {
                name: "inventory".into(),
                replicas: 10,
                container: "app".into(),
                image: "registry.example.com/shop/inventory:4.1.3".into(),
            },
            canary: OriginalDeployment {
                name: "inventory-canary".into(),
                replicas: 0,
                container: "app".into(),
                image: "registry.example.com/shop/inventory:4.1.3".into(),
            },
        };
        let text = serde_json::to_string(&original).unwrap();
        assert!(text.starts_with(r#"{"mode":"replicas","stable":{"name":"inventory""#));
        assert_eq!(serde_json::from_str::<Original>(&text).unwrap(), original);
    }
}
