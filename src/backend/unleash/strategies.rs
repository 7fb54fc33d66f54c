//! The strategies rollout puts on an Unleash flag, how it recognizes them, and how strategies
//! are compared when read back.

use serde_json::{Value, json};

use crate::plan::{
    AttributeTest, Segment, SegmentRule, SegmentSet, UnleashBackend as Spec, Weight,
};

/// What every strategy rollout owns says in its title, after `rollout:PLAN`.
const MANAGED: &str = "(managed by rollout; do not edit)";

/// The strategies rollout owns on one flag, for one plan.
pub struct Owned {
    /// `rollout:PLAN `: the start of every title rollout writes for this plan.
    prefix: String,
    flag: String,
    stickiness: String,
    segments: Vec<Segment>,
}

impl Owned {
    pub fn new(plan: &str, spec: &Spec, segments: Vec<Segment>) -> Owned {
        Owned {
            prefix: format!("rollout:{plan} "),
            flag: spec.flag.clone(),
            stickiness: spec.stickiness.clone(),
            segments,
        }
    }

    pub fn is_ours(&self, strategy: &Value) -> bool {
        strategy["title"]
            .as_str()
            .is_some_and(|t| t.starts_with(&self.prefix))
    }

    pub fn same_title(&self, a: &Value, b: &Value) -> bool {
        self.is_ours(a) && a["title"] == b["title"]
    }

    /// The share: a gradual rollout of the whole flag, bucketed by the plan's stickiness and
    /// the flag's name (the group id stays the same, so a user's bucket never moves).
    fn rollout(&self, title: String, percent: u64, constraints: Vec<Value>) -> Value {
        json!({
            "name": "flexibleRollout",
            "title": title,
            "disabled": false,
            "parameters": {
                "rollout": percent.to_string(),
                "stickiness": self.stickiness,
                "groupId": self.flag,
            },
            "constraints": constraints,
        })
    }

    /// Our strategies for a weight and segments: the share, then every active segment at 100%.
    pub fn wanted(&self, weight: Weight, segments: SegmentSet) -> Vec<Value> {
        let percent = weight.in_steps(1).unwrap_or(0).min(100);
        let mut out = vec![self.rollout(
            format!("{}share {MANAGED}", self.prefix),
            percent,
            Vec::new(),
        )];
        if weight.is_full() {
            return out;
        }
        for segment in segments.iter().filter_map(|i| self.segments.get(i)) {
            if let Some(constraint) = constraint(&segment.rule) {
                let title = format!("{}segment {} {MANAGED}", self.prefix, segment.name);
                out.push(self.rollout(title, 100, vec![constraint]));
            }
        }
        out
    }
}

/// A segment as an Unleash constraint. Custom fields (`email`) are looked up in the context's
/// properties by the SDKs.
fn constraint(rule: &SegmentRule) -> Option<Value> {
    let SegmentRule::Attribute { attribute, test } = rule else {
        return None;
    };
    let (operator, values) = match test {
        AttributeTest::Equals(v) => ("IN", vec![v.clone()]),
        AttributeTest::In(values) => ("IN", values.clone()),
        AttributeTest::EndsWith(v) => ("STR_ENDS_WITH", vec![v.clone()]),
    };
    Some(json!({
        "contextName": attribute,
        "operator": operator,
        "values": values,
        "caseInsensitive": false,
        "inverted": false,
    }))
}

/// The fields that make a strategy what it is, and what a missing one means.
/// A field's name, and its value when missing or null.
type Field = (&'static str, fn() -> Value);

const FIELDS: [Field; 7] = [
    ("name", || Value::Null),
    ("title", || Value::Null),
    ("disabled", || Value::Bool(false)),
    ("parameters", || json!({})),
    ("constraints", || json!([])),
    ("variants", || json!([])),
    ("segments", || json!([])),
];

fn field(strategy: &Value, key: &str, default: fn() -> Value) -> Value {
    match strategy.get(key) {
        None | Some(Value::Null) => default(),
        Some(v) => v.clone(),
    }
}

/// Whether `found` (as the server lists it) is the strategy `wanted` describes.
pub fn same(wanted: &Value, found: &Value) -> bool {
    FIELDS
        .iter()
        .all(|(key, default)| field(wanted, key, *default) == field(found, key, *default))
}

/// Whether `found` is exactly the strategies `wanted` describes, in any order.
pub fn same_set(wanted: &[Value], found: &[Value]) -> bool {
    wanted.len() == found.len() && wanted.iter().all(|w| found.iter().any(|f| same(w, f)))
}

/// The body that re-creates a saved strategy (its id and server-made fields left out).
pub fn restorable(saved: &Value) -> Value {
    let mut body = serde_json::Map::new();
    for (key, default) in FIELDS {
        body.insert(key.to_string(), field(saved, key, default));
    }
    if let Some(order) = saved.get("sortOrder").filter(|v| !v.is_null()) {
        body.insert("sortOrder".into(), order.clone());
    }
    Value::Object(body)
}

/// Whether `GET /api/admin/user` says this token may change the flag's strategies and switch
/// it in the plan's project and environment.
pub fn may_change(answer: &Value, spec: &Spec) -> bool {
    let Some(permissions) = answer["permissions"].as_array() else {
        return false;
    };
    let has = |needed: &str| {
        permissions.iter().any(|p| {
            let name = p["permission"].as_str().unwrap_or_default();
            let in_scope = |key: &str, value: &str| {
                p.get(key)
                    .and_then(Value::as_str)
                    .is_none_or(|v| v == value || v == "*")
            };
            name == "ADMIN"
                || (name == needed
                    && in_scope("project", &spec.project)
                    && in_scope("environment", &spec.environment))
        })
    };
    [
        "CREATE_FEATURE_STRATEGY",
        "UPDATE_FEATURE_STRATEGY",
        "DELETE_FEATURE_STRATEGY",
        "UPDATE_FEATURE_ENVIRONMENT",
    ]
    .iter()
    .all(|p| has(p))
}

/// One strategy in a few words, for messages.
pub fn describe(strategy: &Value) -> String {
    let name = strategy["name"].as_str().unwrap_or("?");
    let title = strategy["title"]
        .as_str()
        .filter(|t| !t.is_empty())
        .map(|t| format!(" \"{t}\""))
        .unwrap_or_default();
    let rollout = strategy["parameters"]["rollout"]
        .as_str()
        .map(|r| format!(" at {r}%"))
        .unwrap_or_default();
    format!("{name}{title}{rollout}")
}

pub fn describe_all(strategies: &[Value]) -> String {
    if strategies.is_empty() {
        return "no strategies".to_string();
    }
    let all: Vec<String> = strategies.iter().map(describe).collect();
    format!("strategies {}", all.join(", "))
}
