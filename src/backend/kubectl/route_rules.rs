//! The HTTPRoute rules rollout adds for segments and mirroring, ahead of each rule that
//! splits traffic between the two Services (a "weighted rule"), and how it knows them again.
//!
//! The Gateway API picks among rules by how specific their matches are, not by their order:
//! the same path, then a method match, then the largest number of header matches, and only on
//! a tie the first rule listed. So:
//! - a segment rule copies the weighted rule's matches and adds the segment's header match: it
//!   beats the weighted rule, and sends only to the canary Service;
//! - a mirror rule copies the weighted rule with a `RequestMirror` filter towards the canary
//!   Service; when the mirror copies only some methods (GET and HEAD by default) its matches
//!   add those methods, which makes it beat the weighted rule for them. The segment rule then
//!   repeats its matches with each of those methods too, or the mirror rule's method match
//!   would beat the segment's header match for them.
//!
//! Both are inserted just ahead of their weighted rule, which settles any tie left.
//! rollout knows its rules by their shape, not by a record kept elsewhere, so that a rollback
//! from a process without the journal still removes them: a rule whose backendRefs are only the
//! canary Service and whose every match holds one of the plan's segment header matches, or a
//! rule with a `RequestMirror` filter towards the canary Service.

use serde_json::{Map, Value, json};

use crate::plan::{METHODS, Segment, SegmentRule, Weight};

/// The Gateway API's limits on a route (its CRD's maxItems and CEL rules).
pub const MAX_RULES: usize = 16;
pub const MAX_MATCHES_PER_RULE: usize = 64;
pub const MAX_MATCHES: usize = 128;

/// What a stage asks of the route besides the weights.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Extras {
    /// The header matches of the stage's segments.
    pub segments: Vec<Value>,
    pub mirror: Option<Mirror>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Mirror {
    pub share: Weight,
    /// The methods copied; every method when it lists all the Gateway API knows.
    pub methods: Vec<String>,
}

impl Extras {
    pub fn is_empty(&self) -> bool {
        self.segments.is_empty() && self.mirror.is_none()
    }
}

/// A segment as an HTTPRoute header match. The Gateway API matches a header by its exact value
/// or a regular expression, and has no cookie match: a header of any value is `.*`, a cookie a
/// pattern on the `Cookie` header, both matched in full or searched alike. Regular expressions
/// are "implementation-specific" in the Gateway API (Envoy, Istio and NGINX Gateway Fabric take
/// RE2 or PCRE, which read these the same).
pub fn header_match(segment: &Segment) -> Option<Value> {
    match &segment.rule {
        SegmentRule::Header {
            name,
            value: Some(value),
        } => Some(json!({"type": "Exact", "name": name, "value": value})),
        SegmentRule::Header { name, value: None } => {
            Some(json!({"type": "RegularExpression", "name": name, "value": ".*"}))
        }
        SegmentRule::Cookie { name, value } => {
            let value = value.as_deref().map_or("[^;]*".to_string(), regex_escape);
            let pattern = format!("^(.*;[ ]*)?{}={value}(;.*)?$", regex_escape(name));
            Some(json!({"type": "RegularExpression", "name": "Cookie", "value": pattern}))
        }
        SegmentRule::Attribute { .. } => None,
    }
}

/// ASCII punctuation escaped, so that RE2 and PCRE match it as itself; a space is left as it
/// is (RE2 refuses `\ `).
fn regex_escape(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if c.is_ascii_punctuation() {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The rules to insert ahead of the weighted rule `base`: the segment rule, then the mirror
/// rule, each when the stage has one. `weights` are the (stable, canary) weights of the stage,
/// which the mirror rule carries like its weighted rule.
pub fn additions(base: &Value, canary: &str, extras: &Extras, weights: (u32, u32)) -> Vec<Value> {
    let mut out = Vec::new();
    let matches = base_matches(base);
    let mirror_methods = extras
        .mirror
        .as_ref()
        .filter(|m| !copies_every_method(m))
        .map(|m| m.methods.as_slice())
        .unwrap_or(&[]);
    if !extras.segments.is_empty() {
        let mut segment_matches = Vec::new();
        for m in &matches {
            for header in &extras.segments {
                let with_header = with_header(m, header);
                segment_matches.push(with_header.clone());
                if m.get("method").is_none() {
                    for method in mirror_methods {
                        segment_matches.push(with_method(&with_header, method));
                    }
                }
            }
        }
        let mut rule = copy_of(base);
        rule.insert("matches".into(), Value::Array(segment_matches));
        let canary_ref = canary_ref(base, canary).map(|r| {
            let mut r = r.clone();
            if let Some(r) = r.as_object_mut() {
                r.remove("weight");
            }
            r
        });
        rule.insert(
            "backendRefs".into(),
            json!(canary_ref.into_iter().collect::<Vec<_>>()),
        );
        out.push(Value::Object(rule));
    }
    if let Some(mirror) = &extras.mirror
        && let Some(rule) = mirror_rule(base, canary, mirror, &matches, weights)
    {
        out.push(rule);
    }
    out
}

fn copies_every_method(mirror: &Mirror) -> bool {
    METHODS
        .iter()
        .all(|m| mirror.methods.iter().any(|x| x == m))
}

fn mirror_rule(
    base: &Value,
    canary: &str,
    mirror: &Mirror,
    matches: &[Value],
    (stable_weight, canary_weight): (u32, u32),
) -> Option<Value> {
    let mut rule = copy_of(base);
    if !copies_every_method(mirror) {
        let mut with_methods = Vec::new();
        for m in matches {
            match m.get("method").and_then(Value::as_str) {
                Some(method) if mirror.methods.iter().any(|x| x == method) => {
                    with_methods.push(m.clone());
                }
                Some(_) => {}
                None => with_methods.extend(mirror.methods.iter().map(|x| with_method(m, x))),
            }
        }
        if with_methods.is_empty() {
            return None;
        }
        rule.insert("matches".into(), Value::Array(with_methods));
    }
    let mut filters = base["filters"].as_array().cloned().unwrap_or_default();
    filters.push(
        json!({"type": "RequestMirror", "requestMirror": mirror_spec(base, canary, mirror.share)}),
    );
    rule.insert("filters".into(), Value::Array(filters));
    let mut refs = base["backendRefs"].as_array().cloned().unwrap_or_default();
    for r in &mut refs {
        let weight = if r["name"] == canary {
            canary_weight
        } else {
            stable_weight
        };
        r["weight"] = json!(weight);
    }
    rule.insert("backendRefs".into(), Value::Array(refs));
    Some(Value::Object(rule))
}

/// The filter's `requestMirror`: the canary Service at the port the weighted rule uses, and
/// the share. 100% is written without a share: it means the same where the Gateway API has
/// percentage mirroring (v1.2 on) and where it has not.
fn mirror_spec(base: &Value, canary: &str, share: Weight) -> Value {
    let mut backend = Map::new();
    backend.insert("name".into(), json!(canary));
    if let Some(port) = canary_ref(base, canary).and_then(|r| r.get("port")) {
        backend.insert("port".into(), port.clone());
    }
    let mut spec = Map::new();
    spec.insert("backendRef".into(), Value::Object(backend));
    let percent = share.percent();
    if share.is_full() {
        // Left out: the filter's default.
    } else if percent.fract() == 0.0 {
        spec.insert("percent".into(), json!(percent as u32));
    } else {
        let numerator = (percent * 1000.0).round() as u32;
        spec.insert(
            "fraction".into(),
            json!({"numerator": numerator, "denominator": 100_000}),
        );
    }
    Value::Object(spec)
}

/// The rule without what is the weighted rule's alone: its `name`, unique in a route.
fn copy_of(base: &Value) -> Map<String, Value> {
    let mut rule = base.as_object().cloned().unwrap_or_default();
    rule.remove("name");
    rule
}

/// A rule without matches matches every path, as the Gateway API defaults it.
fn base_matches(base: &Value) -> Vec<Value> {
    match base["matches"].as_array() {
        Some(matches) if !matches.is_empty() => matches.clone(),
        _ => vec![json!({"path": {"type": "PathPrefix", "value": "/"}})],
    }
}

fn with_header(m: &Value, header: &Value) -> Value {
    let mut m = m.clone();
    let mut headers = m["headers"].as_array().cloned().unwrap_or_default();
    headers.push(header.clone());
    m["headers"] = Value::Array(headers);
    m
}

fn with_method(m: &Value, method: &str) -> Value {
    let mut m = m.clone();
    m["method"] = json!(method);
    m
}

fn canary_ref<'v>(rule: &'v Value, canary: &str) -> Option<&'v Value> {
    rule["backendRefs"]
        .as_array()?
        .iter()
        .find(|r| r["name"] == canary)
}

/// Whether the rule is one rollout adds (see the module's doc): a segment rule for one of
/// `segment_headers`, or a mirror rule towards `canary`.
pub fn is_added(rule: &Value, canary: &str, segment_headers: &[Value]) -> bool {
    is_segment_rule(rule, canary, segment_headers) || mirror_of(rule, canary).is_some()
}

fn is_segment_rule(rule: &Value, canary: &str, segment_headers: &[Value]) -> bool {
    let refs = rule["backendRefs"]
        .as_array()
        .map_or(&[][..], Vec::as_slice);
    let matches = rule["matches"].as_array().map_or(&[][..], Vec::as_slice);
    let holds_segment = |m: &Value| {
        m["headers"].as_array().is_some_and(|headers| {
            headers
                .iter()
                .any(|h| segment_headers.iter().any(|s| same_header_match(h, s)))
        })
    };
    !refs.is_empty()
        && refs.iter().all(|r| r["name"] == canary)
        && !matches.is_empty()
        && matches.iter().all(holds_segment)
}

/// The rule's `requestMirror` towards `canary`, if it has one.
pub fn mirror_of<'v>(rule: &'v Value, canary: &str) -> Option<&'v Value> {
    rule["filters"].as_array()?.iter().find_map(|f| {
        let mirror = f.get("requestMirror")?;
        (f["type"] == "RequestMirror" && mirror["backendRef"]["name"] == canary).then_some(mirror)
    })
}

/// Header names are case-insensitive; a match without `type` is `Exact`, as the API defaults it.
fn same_header_match(a: &Value, b: &Value) -> bool {
    let name = |v: &Value| v["name"].as_str().map(str::to_ascii_lowercase);
    let kind = |v: &Value| v["type"].as_str().unwrap_or("Exact").to_string();
    name(a) == name(b) && kind(a) == kind(b) && a["value"] == b["value"]
}

/// Whether `actual` (as read back) holds everything `wanted` (as written) says: the API server
/// may add defaults, never take away or change what was written.
pub fn holds(actual: &Value, wanted: &Value) -> bool {
    match (actual, wanted) {
        (Value::Object(a), Value::Object(w)) => w
            .iter()
            .all(|(k, v)| a.get(k).is_some_and(|found| holds(found, v))),
        (Value::Array(a), Value::Array(w)) => {
            a.len() == w.len() && a.iter().zip(w).all(|(x, y)| holds(x, y))
        }
        _ => actual == wanted,
    }
}

/// Where the route would break the Gateway API's limits with every segment of the plan and a
/// mirror in place around `weighted` rules (by index among `rules`).
pub fn over_limits(
    rules: &[Value],
    weighted: &[usize],
    canary: &str,
    most: &Extras,
) -> Option<String> {
    let mut total_rules = 0;
    let mut total_matches = 0;
    for (i, rule) in rules.iter().enumerate() {
        let mut these = vec![rule.clone()];
        if weighted.contains(&i) {
            these.extend(additions(rule, canary, most, (0, 0)));
        }
        for r in &these {
            let matches = r["matches"].as_array().map_or(1, Vec::len);
            if matches > MAX_MATCHES_PER_RULE {
                return Some(format!(
                    "with every segment{} in place, a rule ahead of rule {i} would have {matches} matches, and the Gateway API allows {MAX_MATCHES_PER_RULE} in a rule",
                    if most.mirror.is_some() {
                        " and the mirror"
                    } else {
                        ""
                    }
                ));
            }
            total_matches += matches;
        }
        total_rules += these.len();
    }
    if total_rules > MAX_RULES {
        return Some(format!(
            "with rollout's segment and mirror rules in place the route would have {total_rules} rules, and the Gateway API allows {MAX_RULES}"
        ));
    }
    (total_matches > MAX_MATCHES).then(|| {
        format!(
            "with rollout's segment and mirror rules in place the route would have {total_matches} matches in all, and the Gateway API allows {MAX_MATCHES}"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Name;

    fn segment(name: &str, rule: SegmentRule) -> Segment {
        Segment {
            name: Name::parse(name).unwrap(),
            rule,
        }
    }

    fn weighted() -> Value {
        json!({
            "name": "main",
            "matches": [{"path": {"type": "PathPrefix", "value": "/api"}}],
            "filters": [{"type": "RequestHeaderModifier", "requestHeaderModifier": {"set": [{"name": "x-via", "value": "gw"}]}}],
            "backendRefs": [
                {"name": "stable", "port": 8080, "weight": 90},
                {"name": "canary", "port": 8081, "weight": 10},
            ],
        })
    }

    fn beta() -> Value {
        header_match(&segment(
            "beta",
            SegmentRule::Header {
                name: "X-Beta".into(),
                value: Some("yes".into()),
            },
        ))
        .unwrap()
    }

    fn mirror(percent: f64, methods: &[&str]) -> Option<Mirror> {
        Some(Mirror {
            share: Weight::new(percent).unwrap(),
            methods: methods.iter().map(|m| m.to_string()).collect(),
        })
    }

    #[test]
    fn segments_become_header_matches_the_gateway_api_takes() {
        let any = segment(
            "qa",
            SegmentRule::Header {
                name: "X-QA".into(),
                value: None,
            },
        );
        let cookie = segment(
            "ios",
            SegmentRule::Cookie {
                name: "platform.id".into(),
                value: Some("ios 17".into()),
            },
        );
        let any_cookie = segment(
            "c",
            SegmentRule::Cookie {
                name: "beta".into(),
                value: None,
            },
        );
        assert_eq!(
            beta(),
            json!({"type": "Exact", "name": "X-Beta", "value": "yes"})
        );
        assert_eq!(
            header_match(&any).unwrap(),
            json!({"type": "RegularExpression", "name": "X-QA", "value": ".*"})
        );
        assert_eq!(
            header_match(&cookie).unwrap(),
            json!({"type": "RegularExpression", "name": "Cookie", "value": "^(.*;[ ]*)?platform\\.id=ios 17(;.*)?$"})
        );
        assert_eq!(
            header_match(&any_cookie).unwrap()["value"],
            "^(.*;[ ]*)?beta=[^;]*(;.*)?$"
        );
    }

    #[test]
    fn a_segment_rule_sends_the_weighted_rules_matches_with_the_header_to_the_canary() {
        let extras = Extras {
            segments: vec![beta()],
            mirror: None,
        };
        let added = additions(&weighted(), "canary", &extras, (90, 10));
        assert_eq!(
            added,
            vec![json!({
                "matches": [{"path": {"type": "PathPrefix", "value": "/api"}, "headers": [beta()]}],
                "filters": weighted()["filters"],
                "backendRefs": [{"name": "canary", "port": 8081}],
            })]
        );
        assert!(is_added(&added[0], "canary", &[beta()]));
        assert!(!is_added(&weighted(), "canary", &[beta()]));
    }

    #[test]
    fn a_mirror_of_safe_methods_matches_them_and_the_segment_rule_repeats_them() {
        let extras = Extras {
            segments: vec![beta()],
            mirror: mirror(12.5, &["GET", "HEAD"]),
        };
        let added = additions(&weighted(), "canary", &extras, (90, 10));
        let path = json!({"type": "PathPrefix", "value": "/api"});
        assert_eq!(
            added[0]["matches"],
            json!([
                {"path": path, "headers": [beta()]},
                {"path": path, "headers": [beta()], "method": "GET"},
                {"path": path, "headers": [beta()], "method": "HEAD"},
            ])
        );
        assert_eq!(
            added[1],
            json!({
                "matches": [{"path": path, "method": "GET"}, {"path": path, "method": "HEAD"}],
                "filters": [
                    weighted()["filters"][0],
                    {"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "canary", "port": 8081}, "fraction": {"numerator": 12500, "denominator": 100000}}},
                ],
                "backendRefs": [
                    {"name": "stable", "port": 8080, "weight": 90},
                    {"name": "canary", "port": 8081, "weight": 10},
                ],
            })
        );
        assert!(is_added(&added[1], "canary", &[]));
    }

    #[test]
    fn a_whole_percent_is_a_percent_and_all_of_them_no_share_at_all() {
        let rule = |share, methods: &[&str]| {
            let extras = Extras {
                segments: vec![],
                mirror: mirror(share, methods),
            };
            additions(&weighted(), "canary", &extras, (100, 0)).remove(0)
        };
        let mirror_of = |r: &Value| r["filters"][1]["requestMirror"].clone();
        assert_eq!(mirror_of(&rule(5.0, &["GET"]))["percent"], 5);
        assert_eq!(
            mirror_of(&rule(100.0, &["GET"])),
            json!({"backendRef": {"name": "canary", "port": 8081}})
        );
        // Every method: the weighted rule's own matches, ahead of it.
        assert_eq!(rule(5.0, &METHODS)["matches"], weighted()["matches"]);
    }

    #[test]
    fn a_rule_without_matches_or_only_for_other_methods() {
        let mut bare = weighted();
        bare.as_object_mut().unwrap().remove("matches");
        let extras = Extras {
            segments: vec![beta()],
            mirror: mirror(5.0, &["GET"]),
        };
        let added = additions(&bare, "canary", &extras, (95, 5));
        assert_eq!(
            added[1]["matches"],
            json!([{"path": {"type": "PathPrefix", "value": "/"}, "method": "GET"}])
        );
        let mut posts = weighted();
        posts["matches"][0]["method"] = json!("POST");
        let added = additions(&posts, "canary", &extras, (95, 5));
        assert_eq!(added.len(), 1, "no mirror rule for a rule of POSTs only");
    }

    #[test]
    fn what_was_written_is_held_by_what_is_read_back_with_defaults_added() {
        let written = json!({"matches": [{"headers": [{"name": "a", "value": "b"}]}], "x": 1});
        let read = json!({"matches": [{"headers": [{"name": "a", "value": "b", "type": "Exact"}], "path": {"type": "PathPrefix", "value": "/"}}], "x": 1});
        assert!(holds(&read, &written));
        let pruned = json!({"requestMirror": {"backendRef": {"name": "c"}}});
        assert!(!holds(
            &pruned,
            &json!({"requestMirror": {"backendRef": {"name": "c"}, "percent": 5}})
        ));
    }

    #[test]
    fn the_route_limits_are_checked_with_everything_in_place() {
        let extras = Extras {
            segments: vec![beta(); 3],
            mirror: mirror(5.0, &["GET", "HEAD"]),
        };
        assert_eq!(over_limits(&[weighted()], &[0], "canary", &extras), None);
        let rules = vec![weighted(); 6];
        let all: Vec<usize> = (0..6).collect();
        let problem = over_limits(&rules, &all, "canary", &extras).unwrap();
        assert!(problem.contains("18 rules"), "{problem}");
        let many = Extras {
            segments: vec![beta(); 30],
            mirror: mirror(5.0, &["GET", "HEAD"]),
        };
        let problem = over_limits(&[weighted()], &[0], "canary", &many).unwrap();
        assert!(problem.contains("90 matches"), "{problem}");
    }
}
