//! `mode = "gateway"`: the weights of a Gateway API HTTPRoute's backendRefs to two Services
//! (see `gateway_weights`), read back from the route and confirmed by its Gateways' status.
//!
//! What the route's rules are made to hold is a `RouteWant`, turned into JSON patch
//! operations by `route_patch` and checked on the route read back by `RouteView::holds`: the
//! weights, and the rules rollout adds ahead of the weighted rules for segments and a mirror
//! (`route_rules`), which a rollback removes.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::Original;
use super::api::{Condition, DEPLOYMENTS, Deployment, HttpRoute, Kind, Service, Target};
use super::client::{Client, Guarded, POLL, Readiness};
use super::route_rules::{self, Extras, Mirror};
use crate::backend::{Backend, BackendError, Recovery, WeightChange};
use crate::plan::{GatewaySpec, Segment, Weight};

pub struct Gateway {
    spec: GatewaySpec,
    client: Client,
    /// Where the route is, for people.
    place: String,
    /// Set by a successful preflight, or handed back from the journal (`restore_state`).
    before: Option<Before>,
    /// The Deployments whose pods each Service selects, found at preflight.
    behind: Behind,
    /// The header match of each of the plan's segments, by its index (`None`: a segment of
    /// another kind, which validation keeps away from this backend).
    segment_headers: Vec<Option<Value>>,
    /// What the plan's stages add to the route at most: every segment and a mirror if any
    /// stage mirrors, for preflight's check of the Gateway API's limits.
    most: Extras,
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
#[derive(Debug, Clone, PartialEq)]
pub struct RouteWant {
    pub stable_weight: u32,
    pub canary_weight: u32,
    /// The rules added ahead of each weighted rule: none, unless a stage has segments or a
    /// mirror.
    pub extras: Extras,
}

impl RouteWant {
    /// The weights alone: no segment or mirror rule.
    pub fn at(weight: Weight) -> RouteWant {
        let (stable_weight, canary_weight) = gateway_weights(weight);
        RouteWant {
            stable_weight,
            canary_weight,
            extras: Extras::default(),
        }
    }

    fn weights(&self) -> (u32, u32) {
        (self.stable_weight, self.canary_weight)
    }

    /// For people: "weights 95/5, segments and a mirror of 10%".
    fn describe(&self) -> String {
        let mut text = format!("weights {}/{}", self.stable_weight, self.canary_weight);
        if !self.extras.segments.is_empty() {
            text.push_str(", the segments' rule");
        }
        if let Some(mirror) = &self.extras.mirror {
            text.push_str(&format!(", a mirror of {}", mirror.share));
        }
        text
    }
}

/// The rules of the route that send traffic to the two Services, with the JSON pointers to
/// their backendRefs' weights.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteView {
    pub resource_version: String,
    pub generation: i64,
    /// The weighted rules, those rollout added left out.
    pub rules: Vec<RuleView>,
    /// Every rule of the route as read.
    pub raw: Vec<Value>,
    /// The indexes of the rules rollout added (segments, mirror).
    pub added: Vec<usize>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RuleView {
    pub rule: usize,
    /// The indexes of the two Services' backendRefs in the rule.
    pub stable_ref: usize,
    pub canary_ref: usize,
    pub stable_weight: Option<u32>,
    pub canary_weight: Option<u32>,
}

/// The JSON pointer to a backendRef's weight, for the rule at index `rule` of the route.
fn weight_path(rule: usize, backend_ref: usize) -> String {
    format!("/spec/rules/{rule}/backendRefs/{backend_ref}/weight")
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
    /// Where rule `i` of the route is once the rules rollout added are removed.
    fn without_added(&self, i: usize) -> usize {
        i - self.added.iter().filter(|a| **a < i).count()
    }

    /// The rules rollout adds for `want`, ahead of each weighted rule, as it writes them.
    fn additions(&self, want: &RouteWant, canary: &str) -> Vec<Vec<Value>> {
        self.rules
            .iter()
            .map(|r| {
                route_rules::additions(&self.raw[r.rule], canary, &want.extras, want.weights())
            })
            .collect()
    }

    /// Whether the rules rollout added are those `want` adds, as the server may have defaulted
    /// them.
    fn holds_additions(&self, want: &RouteWant, canary: &str) -> Result<(), String> {
        let wanted: Vec<Value> = self.additions(want, canary).into_iter().flatten().collect();
        let found: Vec<&Value> = self.added.iter().map(|i| &self.raw[*i]).collect();
        if found.len() == wanted.len()
            && found
                .iter()
                .zip(&wanted)
                .all(|(f, w)| route_rules::holds(f, w))
        {
            return Ok(());
        }
        let share_dropped = wanted.iter().any(|w| {
            let Some(mirror) = route_rules::mirror_of(w, canary) else {
                return false;
            };
            let shared = |m: &Value| m.get("percent").is_some() || m.get("fraction").is_some();
            shared(mirror)
                && found
                    .iter()
                    .filter_map(|f| route_rules::mirror_of(f, canary))
                    .any(|m| !shared(m))
        });
        if share_dropped {
            return Err(
                "a RequestMirror filter without the share rollout wrote: the cluster's Gateway API \
                 CRDs predate percentage mirroring (HTTPRoute `percent` and `fraction`, Gateway API \
                 v1.2), and without a share a mirror copies every request. Install newer Gateway \
                 API CRDs, or mirror 100%"
                    .to_string(),
            );
        }
        if found.len() != wanted.len() {
            return Err(format!(
                "{} rule(s) of rollout's for segments and mirroring instead of the {} it wrote",
                found.len(),
                wanted.len()
            ));
        }
        Err("rollout's rules for segments and mirroring not as it wrote them".to_string())
    }

    /// Why the route does not hold `want`, naming the first rule that differs.
    fn holds(&self, want: &RouteWant, canary: &str) -> Result<(), String> {
        self.holds_additions(want, canary)?;
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
    /// `segments`: the plan's; `mirrors`: whether any stage mirrors.
    pub fn new(
        spec: GatewaySpec,
        client: Client,
        place: String,
        segments: &[Segment],
        mirrors: bool,
    ) -> Gateway {
        let segment_headers: Vec<Option<Value>> =
            segments.iter().map(route_rules::header_match).collect();
        let most = Extras {
            segments: segment_headers.iter().flatten().cloned().collect(),
            // Any share: only how many rules and matches the mirror adds counts here.
            mirror: mirrors.then(|| Mirror {
                share: Weight::FULL,
                methods: spec.mirror_methods.clone(),
            }),
        };
        Gateway {
            spec,
            client,
            place,
            before: None,
            behind: Behind::default(),
            segment_headers,
            most,
        }
    }

    fn route(&self) -> Target {
        Target::new(Kind::HttpRoute, &self.spec.route)
    }

    fn view(&self) -> impl Fn(&HttpRoute) -> Result<RouteView, String> + Send + Sync + '_ {
        let headers: Vec<Value> = self.segment_headers.iter().flatten().cloned().collect();
        move |route| {
            route_view(
                route,
                &self.spec.stable_service,
                &self.spec.canary_service,
                &headers,
            )
        }
    }

    /// What a change asks of the route. Everyone on the new version needs no segment or
    /// mirror rule.
    fn want(&self, change: &WeightChange) -> RouteWant {
        let mut want = RouteWant::at(change.weight);
        if change.weight.is_full() {
            return want;
        }
        want.extras = Extras {
            segments: change
                .segments
                .iter()
                .filter_map(|i| self.segment_headers.get(i).cloned().flatten())
                .collect(),
            mirror: change.mirror.map(|share| Mirror {
                share,
                methods: self.spec.mirror_methods.clone(),
            }),
        };
        want
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
        let purpose = if want.extras.is_empty() {
            format!(
                "set the route's weights to {} (stable) and {} (canary)",
                want.stable_weight, want.canary_weight
            )
        } else {
            format!("set the route to {}", want.describe())
        };
        let canary = self.spec.canary_service.as_str();
        let generation = self
            .client
            .update(&self.route(), &purpose, None, self.view(), |current| {
                route_patch(current, &want, canary)
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
            "read {what} back until it holds the {} and every Gateway has accepted \
             that generation of it, at most {}",
            want.describe(),
            humantime::format_duration(timeout)
        ));
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let (view, found) = self.client.read(&what, self.view()).await?;
            if let Err(difference) = view.holds(want, &self.spec.canary_service) {
                return Err(BackendError::NotConfirmed(format!(
                    "{what} read back with {difference}"
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
                // Segments and mirrored copies reach the canary at weight 0 too.
                want.canary_weight > 0 || !want.extras.is_empty(),
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
        let base: Vec<Value> = (0..view.raw.len())
            .filter(|i| !view.added.contains(i))
            .map(|i| view.raw[i].clone())
            .collect();
        let base_weighted: Vec<usize> = view
            .rules
            .iter()
            .map(|r| view.without_added(r.rule))
            .collect();
        if let Some(problem) =
            route_rules::over_limits(&base, &base_weighted, &self.spec.canary_service, &self.most)
        {
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
        let want = self.want(&change);
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
/// The rules rollout added (see `route_rules::is_added`) are set apart.
pub fn route_view(
    route: &HttpRoute,
    stable: &str,
    canary: &str,
    segment_headers: &[Value],
) -> Result<RouteView, String> {
    let namespace = route.metadata.namespace.as_str();
    let mut rules = Vec::new();
    let mut added = Vec::new();
    for (i, raw) in route.spec.rules.iter().enumerate() {
        if route_rules::is_added(raw, canary, segment_headers) {
            added.push(i);
            continue;
        }
        let rule = route.spec.rule(i);
        let find = |name: &str| {
            rule.backend_refs
                .iter()
                .position(|r| r.name == name && r.is_service_in(namespace))
        };
        match (find(stable), find(canary)) {
            (Some(s), Some(c)) => rules.push(RuleView {
                rule: i,
                stable_ref: s,
                canary_ref: c,
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
        raw: route.spec.rules.clone(),
        added,
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
///
/// When the rules rollout added are not those `want` adds, they are all removed and the new
/// ones inserted ahead of their weighted rules, in one patch: removals from the last, then the
/// weights at the indexes left, then the insertions from the first.
pub fn route_patch(current: &RouteView, want: &RouteWant, canary: &str) -> Vec<Value> {
    if current.holds_additions(want, canary).is_ok() {
        return weight_ops(&current.rules, want, |i| i);
    }
    let mut ops: Vec<Value> = current
        .added
        .iter()
        .rev()
        .map(|i| json!({"op": "remove", "path": format!("/spec/rules/{i}")}))
        .collect();
    ops.extend(weight_ops(&current.rules, want, |i| {
        current.without_added(i)
    }));
    let mut inserted = 0;
    for (rule, additions) in current.rules.iter().zip(current.additions(want, canary)) {
        for addition in additions {
            let at = current.without_added(rule.rule) + inserted;
            ops.push(json!({"op": "add", "path": format!("/spec/rules/{at}"), "value": addition}));
            inserted += 1;
        }
    }
    ops
}

/// The weight operations, with each rule's index in the route mapped by `index` (its place
/// once rollout's rules are removed).
fn weight_ops(rules: &[RuleView], want: &RouteWant, index: impl Fn(usize) -> usize) -> Vec<Value> {
    let mut ops = Vec::new();
    for rule in rules {
        let at = index(rule.rule);
        if rule.stable_weight != Some(want.stable_weight) {
            let path = weight_path(at, rule.stable_ref);
            ops.push(json!({"op": "add", "path": path, "value": want.stable_weight}));
        }
        if rule.canary_weight != Some(want.canary_weight) {
            let path = weight_path(at, rule.canary_ref);
            ops.push(json!({"op": "add", "path": path, "value": want.canary_weight}));
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
