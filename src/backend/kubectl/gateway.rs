//! `mode = "gateway"`: the weights of a Gateway API HTTPRoute's backendRefs to two Services
//! (see `gateway_weights`), read back from the route and confirmed by its Gateways' status.
//!
//! What the route's rules are made to hold is a `RouteWant`, turned into JSON patch
//! operations by `route_patch` and checked on the route read back by `RouteView::holds`: a
//! mirror filter or header-match rules for segments are more of the same, one field, its
//! operations and its check each.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::Original;
use super::api::{Condition, DEPLOYMENTS, Deployment, HttpRoute, Kind, Service, Target};
use super::client::{Client, Guarded, POLL, Readiness};
use crate::backend::{Backend, BackendError, Recovery, WeightChange};
use crate::plan::{GatewaySpec, Weight};

pub struct Gateway {
    spec: GatewaySpec,
    client: Client,
    /// Where the route is, for people.
    place: String,
    /// Set by a successful preflight, or handed back from the journal (`restore_state`).
    before: Option<Before>,
    /// The Deployments whose pods each Service selects, found at preflight.
    behind: Behind,
}

/// The route's weights before this run changed anything.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Before {
    pub route: String,
    /// The backendRef weights of every rule that routes to both Services.
    pub rules: Vec<OriginalRule>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OriginalRule {
    pub rule: usize,
    /// `None` where the route left the weight out (the Gateway API default is 1).
    pub stable_weight: Option<u32>,
    pub canary_weight: Option<u32>,
}

#[derive(Debug, Clone, Default)]
struct Behind {
    stable: Vec<String>,
    canary: Vec<String>,
}

/// What the route's rules to the two Services are made to hold.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RouteWant {
    pub stable_weight: u32,
    pub canary_weight: u32,
}

impl RouteWant {
    pub fn at(weight: Weight) -> RouteWant {
        let (stable_weight, canary_weight) = gateway_weights(weight);
        RouteWant {
            stable_weight,
            canary_weight,
        }
    }
}

/// The rules of the route that send traffic to the two Services, with the JSON pointers to
/// their backendRefs' weights.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteView {
    pub resource_version: String,
    pub generation: i64,
    pub rules: Vec<RuleView>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RuleView {
    pub rule: usize,
    pub stable_path: String,
    pub canary_path: String,
    pub stable_weight: Option<u32>,
    pub canary_weight: Option<u32>,
}

impl Guarded for RouteView {
    fn resource_version(&self) -> &str {
        &self.resource_version
    }

    fn generation(&self) -> i64 {
        self.generation
    }
}

impl RouteView {
    /// Why the route does not hold `want`, naming the first rule that differs.
    fn holds(&self, want: &RouteWant) -> Result<(), String> {
        // A weight left out is 1, as the Gateway API defaults it.
        let differs = |r: &&RuleView| {
            r.stable_weight.unwrap_or(1) != want.stable_weight
                || r.canary_weight.unwrap_or(1) != want.canary_weight
        };
        match self.rules.iter().find(differs) {
            None => Ok(()),
            Some(rule) => Err(format!(
                "weights {}/{} in rule {} instead of {}/{}",
                rule.stable_weight.unwrap_or(1),
                rule.canary_weight.unwrap_or(1),
                rule.rule,
                want.stable_weight,
                want.canary_weight
            )),
        }
    }
}

impl Gateway {
    pub fn new(spec: GatewaySpec, client: Client, place: String) -> Gateway {
        Gateway {
            spec,
            client,
            place,
            before: None,
            behind: Behind::default(),
        }
    }

    fn route(&self) -> Target {
        Target::new(Kind::HttpRoute, &self.spec.route)
    }

    fn view(&self) -> impl Fn(&HttpRoute) -> Result<RouteView, String> + Send + Sync + '_ {
        |route| route_view(route, &self.spec.stable_service, &self.spec.canary_service)
    }

    async fn selector(&self, service: &Target) -> Result<BTreeMap<String, String>, BackendError> {
        let found: Service = self
            .client
            .get_existing(service, "read the Service (preflight)")
            .await?;
        Ok(found.spec.selector.unwrap_or_default())
    }

    /// Makes the route hold `want`, then reads it back until its Gateways have accepted it.
    async fn set_route(&self, want: RouteWant) -> Result<(), BackendError> {
        let purpose = format!(
            "set the route's weights to {} (stable) and {} (canary)",
            want.stable_weight, want.canary_weight
        );
        let generation = self
            .client
            .update(&self.route(), &purpose, None, self.view(), |current| {
                route_patch(current, &want)
            })
            .await?;
        self.confirm_route(&want, generation).await
    }

    /// Reads the route back until it holds `want` and its Gateways have accepted that
    /// generation of it.
    async fn confirm_route(&self, want: &RouteWant, generation: i64) -> Result<(), BackendError> {
        let what = self.route();
        let timeout = self.client.rollout_timeout();
        self.client.note(&format!(
            "read {what} back until it holds the weights {}/{} and every Gateway has accepted \
             that generation of it, at most {}",
            want.stable_weight,
            want.canary_weight,
            humantime::format_duration(timeout)
        ));
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let (view, found) = self.client.read(&what, self.view()).await?;
            if let Err(difference) = view.holds(want) {
                return Err(BackendError::NotConfirmed(format!(
                    "{what} read back with {difference}: someone else changed it"
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
    async fn wait_behind(&self, want: &RouteWant) -> Result<(), BackendError> {
        let spec = &self.spec;
        for (service, names, gets) in [
            (
                &spec.stable_service,
                &self.behind.stable,
                want.stable_weight > 0,
            ),
            (
                &spec.canary_service,
                &self.behind.canary,
                want.canary_weight > 0,
            ),
        ] {
            if !gets {
                continue;
            }
            self.client.note(&format!(
                "wait until the Deployments whose pods service/{service} selects are rolled out, at most {}",
                humantime::format_duration(self.client.rollout_timeout())
            ));
            for name in names {
                let new_version = self.behind.canary.contains(name);
                self.client.wait_rolled_out(name, 0, new_version).await?;
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Backend for Gateway {
    fn describe(&self) -> String {
        format!(
            "Kubernetes HTTPRoute `{}` in {}",
            self.spec.route, self.place
        )
    }

    /// Reads everything and changes nothing: kubectl runs, the cluster answers, the route is
    /// there with rules to both Services and accepted by a Gateway, both Services are there,
    /// and every verb is allowed.
    async fn preflight(&mut self) -> Result<(), BackendError> {
        self.client.check_cluster().await?;
        let route = self.route();
        let services = [
            Target::new(Kind::Service, &self.spec.stable_service),
            Target::new(Kind::Service, &self.spec.canary_service),
        ];
        let found: HttpRoute = self
            .client
            .get_existing(&route, "read the HTTPRoute (preflight)")
            .await?;
        let precondition = |problem| BackendError::Precondition(format!("{route}: {problem}"));
        let view = self.view()(&found).map_err(precondition)?;
        if let Some(problem) = route_not_accepted(&found) {
            return Err(precondition(problem));
        }
        let selectors = [
            self.selector(&services[0]).await?,
            self.selector(&services[1]).await?,
        ];
        self.client
            .check_permissions(&[
                ("get", route.to_string()),
                ("patch", route.to_string()),
                ("get", services[0].to_string()),
                ("get", services[1].to_string()),
                ("list", DEPLOYMENTS.to_string()),
            ])
            .await?;
        let deployments: Vec<Deployment> = self
            .client
            .list(
                DEPLOYMENTS,
                "list the Deployments behind the Services (preflight)",
            )
            .await?;
        self.behind = Behind {
            stable: deployments_behind(&selectors[0], &deployments),
            canary: deployments_behind(&selectors[1], &deployments),
        };
        self.before
            .get_or_insert_with(|| original_route(&self.spec.route, &view));
        Ok(())
    }

    async fn set_weight(&mut self, change: WeightChange) -> Result<(), BackendError> {
        let want = RouteWant::at(change.weight);
        self.wait_behind(&want).await?;
        self.set_route(want).await
    }

    /// The route already sends everything to the canary Service, which stays as it is.
    async fn promote(&mut self) -> Result<(), BackendError> {
        Ok(())
    }

    async fn rollback(&mut self) -> Result<(), BackendError> {
        self.set_route(RouteWant::at(Weight::ZERO)).await
    }

    /// The rollback sets 100/0 on the route, which needs nothing more than a preflight.
    async fn recover(&mut self, _recovery: &Recovery) -> Result<Vec<String>, BackendError> {
        self.preflight().await?;
        Ok(Vec::new())
    }

    fn saved_state(&self) -> Option<Value> {
        let before = self.before.clone()?;
        Some(Original::Gateway(before).to_json())
    }

    fn restore_state(&mut self, state: Value) -> Result<(), BackendError> {
        match Original::from_json(state)? {
            Original::Gateway(before) => {
                self.before = Some(before);
                Ok(())
            }
            other => Err(other.of_another_mode("gateway")),
        }
    }
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

/// The rules of the route that send traffic to the two Services. Every rule that names one of
/// them must name both, or weights could not express the split there.
pub fn route_view(route: &HttpRoute, stable: &str, canary: &str) -> Result<RouteView, String> {
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

fn original_route(route: &str, view: &RouteView) -> Before {
    Before {
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

/// The operations that make the route hold `want`; none when it already does. `add` rather
/// than `replace`: a backendRef may leave `weight` out, and `add` on an object member sets it
/// whether or not it is there.
pub fn route_patch(current: &RouteView, want: &RouteWant) -> Vec<Value> {
    let mut ops = Vec::new();
    for rule in &current.rules {
        if rule.stable_weight != Some(want.stable_weight) {
            ops.push(json!({"op": "add", "path": rule.stable_path, "value": want.stable_weight}));
        }
        if rule.canary_weight != Some(want.canary_weight) {
            ops.push(json!({"op": "add", "path": rule.canary_path, "value": want.canary_weight}));
        }
    }
    ops
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
