//! A flagd flag-definition file as JSON: our flag found and rewritten in place, everything
//! else kept as it was (key order, and the file's indentation as far as serde_json can).

use serde_json::{Map, Value, json};

use crate::plan::{AttributeTest, FlagdBackend as Spec, Segment, SegmentRule, SegmentSet, Weight};

/// `fractional` weights are written out of this many: 0.001% steps, in integers (flagd
/// providers refuse decimals, and some refuse even `25.0`).
pub const TOTAL: u64 = 100 * crate::plan::FLAGD_STEPS_PER_PERCENT;

/// Parses the file; the error says where it is broken.
pub fn parse(text: &str) -> Result<Value, String> {
    let doc: Value = serde_json::from_str(text).map_err(|e| {
        format!(
            "is not valid JSON (line {}, column {}: {e}); rollout edits JSON flag files",
            e.line(),
            e.column()
        )
    })?;
    if !doc.is_object() {
        return Err("is not a flagd flag-definition file: its top level is not an object".into());
    }
    Ok(doc)
}

/// The flag named `key`, with the problem that keeps rollout from using it.
pub fn flag<'d>(doc: &'d Value, key: &str) -> Result<&'d Map<String, Value>, String> {
    let flags = doc
        .get("flags")
        .and_then(Value::as_object)
        .ok_or("has no `flags` object")?;
    match flags.get(key) {
        Some(Value::Object(flag)) => Ok(flag),
        Some(_) => Err(format!("flag `{key}` is not an object")),
        None => {
            let names: Vec<String> = flags.keys().map(|k| format!("`{k}`")).collect();
            Err(format!(
                "has no flag `{key}` (its flags: {})",
                if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(", ")
                }
            ))
        }
    }
}

fn flag_mut<'d>(doc: &'d mut Value, key: &str) -> Option<&'d mut Map<String, Value>> {
    doc.get_mut("flags")?.get_mut(key)?.as_object_mut()
}

/// What must hold of the flag before rollout moves users with it.
pub fn check_flag(flag: &Map<String, Value>, spec: &Spec) -> Result<(), String> {
    let key = &spec.flag;
    let variants = flag
        .get("variants")
        .and_then(Value::as_object)
        .ok_or_else(|| format!("flag `{key}` has no `variants` object"))?;
    for (role, name) in [
        ("on_variant", &spec.on_variant),
        ("off_variant", &spec.off_variant),
    ] {
        if !variants.contains_key(name) {
            let names: Vec<String> = variants.keys().map(|k| format!("`{k}`")).collect();
            return Err(format!(
                "flag `{key}` has no variant `{name}` (the plan's {role}); its variants are {}",
                names.join(", ")
            ));
        }
    }
    if flag.get("state").and_then(Value::as_str) != Some("ENABLED") {
        return Err(format!(
            "flag `{key}` is not ENABLED, so flagd gives everyone the application's own default; set \"state\": \"ENABLED\" (with \"defaultVariant\": \"{}\") before the rollout",
            spec.off_variant
        ));
    }
    Ok(())
}

/// Who gets the new variant: a weight and segments.
#[derive(Debug, Clone, Copy)]
pub struct Split {
    pub weight: Weight,
    pub segments: SegmentSet,
}

/// Our flag's `defaultVariant` and `targeting` for a split. 0% and 100% without segments are
/// plain default variants; otherwise segments come first, then a `fractional` split with the
/// new variant first, so that a user's bucket only ever joins the new variant as the weight
/// grows. Users without a targeting key fall through to the default: the off variant.
pub fn rule(spec: &Spec, segments: &[Segment], split: Split) -> (String, Option<Value>) {
    let (on, off) = (spec.on_variant.as_str(), spec.off_variant.as_str());
    if split.weight.is_full() {
        return (on.to_string(), None);
    }
    let share = split
        .weight
        .in_steps(crate::plan::FLAGD_STEPS_PER_PERCENT)
        .unwrap_or(0)
        .min(TOTAL);
    let rest = if share == 0 {
        None
    } else {
        Some(json!({ "fractional": [[on, share], [off, TOTAL - share]] }))
    };
    let mut members: Vec<Value> = split
        .segments
        .iter()
        .filter_map(|i| segments.get(i))
        .filter_map(|s| member(&s.rule))
        .collect();
    let targeting = match (members.len(), rest) {
        (0, rest) => rest,
        (1, rest) => Some(json!({ "if": [members.remove(0), on, rest.unwrap_or(json!(off))] })),
        (_, rest) => Some(json!({ "if": [{ "or": members }, on, rest.unwrap_or(json!(off))] })),
    };
    (off.to_string(), targeting)
}

/// The JSONLogic test of a segment's members.
fn member(rule: &SegmentRule) -> Option<Value> {
    let SegmentRule::Attribute { attribute, test } = rule else {
        return None;
    };
    let var = json!({ "var": attribute });
    Some(match test {
        AttributeTest::Equals(v) => json!({ "==": [var, v] }),
        AttributeTest::EndsWith(v) => json!({ "ends_with": [var, v] }),
        AttributeTest::In(values) => json!({ "in": [var, values] }),
    })
}

/// Sets our flag's default variant and targeting in `doc`, leaving every other key as it is.
pub fn apply(doc: &mut Value, key: &str, rule: &(String, Option<Value>)) -> Result<(), String> {
    let flag = flag_mut(doc, key).ok_or_else(|| format!("has no flag `{key}`"))?;
    flag.insert("defaultVariant".into(), Value::String(rule.0.clone()));
    match &rule.1 {
        Some(targeting) => {
            flag.insert("targeting".into(), targeting.clone());
        }
        None => {
            flag.shift_remove("targeting");
        }
    }
    Ok(())
}

/// Whether the flag in `doc` has exactly this default variant and targeting.
pub fn holds(doc: &Value, key: &str, rule: &(String, Option<Value>)) -> bool {
    let Ok(flag) = flag(doc, key) else {
        return false;
    };
    flag.get("defaultVariant").and_then(Value::as_str) == Some(rule.0.as_str())
        && flag.get("targeting") == rule.1.as_ref()
}

/// The document as text in the style of `original`: compact when it was on one line, else
/// indented with the unit its second line uses; its final newline kept.
pub fn render(doc: &Value, original: &str) -> String {
    use serde::Serialize;
    let body = original.trim();
    let mut out = if !body.contains('\n') {
        serde_json::to_string(doc).expect("a JSON value serializes")
    } else {
        let indent = indent_unit(body);
        let formatter = serde_json::ser::PrettyFormatter::with_indent(indent.as_bytes());
        let mut bytes = Vec::new();
        let mut ser = serde_json::Serializer::with_formatter(&mut bytes, formatter);
        doc.serialize(&mut ser).expect("a JSON value serializes");
        String::from_utf8(bytes).expect("serde_json writes UTF-8")
    };
    if original.ends_with('\n') {
        out.push('\n');
    }
    out
}

fn indent_unit(body: &str) -> String {
    body.lines()
        .skip(1)
        .map(|l| &l[..l.len() - l.trim_start().len()])
        .find(|ws| !ws.is_empty())
        .unwrap_or("  ")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::time::Duration;

    fn spec() -> Spec {
        Spec {
            flags_file: PathBuf::from("flags.json"),
            flag: "new-checkout".into(),
            on_variant: "on".into(),
            off_variant: "off".into(),
            cleanup_after: Duration::from_secs(1),
        }
    }

    fn split(weight: f64, segments: SegmentSet) -> Split {
        Split {
            weight: Weight::new(weight).unwrap(),
            segments,
        }
    }

    const FILE: &str = r#"{
    "$schema": "https://flagd.dev/schema/v0/flags.json",
    "flags": {
        "banner": {"state": "ENABLED", "variants": {"a": 1.5, "b": 2}, "defaultVariant": "a",
                   "targeting": {"$ref": "berlin"}},
        "new-checkout": {
            "state": "ENABLED",
            "variants": {"on": true, "off": false},
            "defaultVariant": "off",
            "metadata": {"owner": "payments"}
        },
        "zeta": {"state": "DISABLED", "variants": {"x": "y"}, "defaultVariant": "x"}
    },
    "$evaluators": {"berlin": {"in": [{"var": "city"}, ["Berlin"]]}},
    "metadata": {"version": "7"}
}
"#;

    #[test]
    fn only_our_flag_changes_and_every_key_keeps_its_place() {
        let mut doc = parse(FILE).unwrap();
        let rule = rule(&spec(), &[], split(25.0, SegmentSet::EMPTY));
        apply(&mut doc, "new-checkout", &rule).unwrap();
        let text = render(&doc, FILE);
        let keys: Vec<&str> = doc
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, ["$schema", "flags", "$evaluators", "metadata"]);
        let flags: Vec<&str> = doc["flags"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(flags, ["banner", "new-checkout", "zeta"]);
        let before = parse(FILE).unwrap();
        for other in ["banner", "zeta"] {
            assert_eq!(doc["flags"][other], before["flags"][other]);
        }
        assert_eq!(doc["$evaluators"], before["$evaluators"]);
        assert!(
            text.contains("\n    \"flags\": {\n        \"banner\""),
            "{text}"
        );
        assert!(text.ends_with("}\n"));
        assert!(
            text.contains("\"fractional\": [\n")
                && text.contains("25000")
                && text.contains("75000"),
            "{text}"
        );
        // Integers only: a provider refuses 25000.0.
        assert!(!text.contains("25000.0"), "{text}");
        let ours = doc["flags"]["new-checkout"].as_object().unwrap();
        let keys: Vec<&str> = ours.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "state",
                "variants",
                "defaultVariant",
                "metadata",
                "targeting"
            ]
        );
        assert!(holds(&doc, "new-checkout", &rule));
    }

    #[test]
    fn zero_and_full_are_plain_defaults_and_segments_come_first() {
        let segments = vec![
            Segment {
                name: crate::plan::Name::parse("staff").unwrap(),
                rule: SegmentRule::Attribute {
                    attribute: "email".into(),
                    test: AttributeTest::EndsWith("@example.com".into()),
                },
            },
            Segment {
                name: crate::plan::Name::parse("dach").unwrap(),
                rule: SegmentRule::Attribute {
                    attribute: "country".into(),
                    test: AttributeTest::In(vec!["de".into(), "at".into()]),
                },
            },
        ];
        let s = spec();
        assert_eq!(
            rule(&s, &segments, split(0.0, SegmentSet::EMPTY)),
            ("off".into(), None)
        );
        let all = SegmentSet::EMPTY.with(0).with(1);
        assert_eq!(rule(&s, &segments, split(100.0, all)), ("on".into(), None));
        let (default, targeting) = rule(&s, &segments, split(0.0, SegmentSet::EMPTY.with(0)));
        assert_eq!(default, "off");
        assert_eq!(
            targeting.unwrap(),
            json!({"if": [{"ends_with": [{"var": "email"}, "@example.com"]}, "on", "off"]})
        );
        let (_, targeting) = rule(&s, &segments, split(0.5, all));
        assert_eq!(
            targeting.unwrap(),
            json!({"if": [
                {"or": [{"ends_with": [{"var": "email"}, "@example.com"]}, {"in": [{"var": "country"}, ["de", "at"]]}]},
                "on",
                {"fractional": [["on", 500], ["off", 99500]]}
            ]})
        );
    }

    #[test]
    fn the_style_of_the_file_is_kept() {
        let compact = r#"{"flags":{"f":{"state":"ENABLED","variants":{"on":1,"off":0},"defaultVariant":"off"}}}"#;
        let mut doc = parse(compact).unwrap();
        let mut s = spec();
        s.flag = "f".into();
        apply(
            &mut doc,
            "f",
            &rule(&s, &[], split(100.0, SegmentSet::EMPTY)),
        )
        .unwrap();
        assert_eq!(
            render(&doc, compact),
            r#"{"flags":{"f":{"state":"ENABLED","variants":{"on":1,"off":0},"defaultVariant":"on"}}}"#
        );
        let tabs = "{\n\t\"flags\": {}\n}";
        assert_eq!(render(&parse(tabs).unwrap(), tabs), tabs);
    }

    #[test]
    fn problems_with_the_flag_are_named() {
        let doc = parse(FILE).unwrap();
        assert_eq!(
            flag(&doc, "nope").unwrap_err(),
            "has no flag `nope` (its flags: `banner`, `new-checkout`, `zeta`)"
        );
        let mut s = spec();
        s.on_variant = "v2".into();
        assert_eq!(
            check_flag(flag(&doc, "new-checkout").unwrap(), &s).unwrap_err(),
            "flag `new-checkout` has no variant `v2` (the plan's on_variant); its variants are `on`, `off`"
        );
        assert!(
            parse("{\"flags\": ")
                .unwrap_err()
                .starts_with("is not valid JSON (line 1, column 10")
        );
    }
}
