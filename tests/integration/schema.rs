//! `rollout schema` against the parser. The parser's own "valid fields here" lists (what it
//! says when a table holds an unknown field) are the truth of each table's fields: every table
//! of every example plan is probed with an unknown field, and the schema must list exactly the
//! same fields there. Every table the schema describes must be probed by some plan. With the
//! e2e tier, an independent validator (Python's jsonschema) checks every example plan against
//! the schema.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::harness::rollout_bin;

const PROBE: &str = "zz_probe";

pub fn schema() -> Value {
    let output = Command::new(rollout_bin()).arg("schema").output().unwrap();
    assert!(output.status.success());
    serde_json::from_slice(&output.stdout).expect("the schema is JSON")
}

pub fn example_plans() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("plans");
    let mut plans: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    plans.sort();
    plans
}

/// Tables the example plans do not have: `[state]`, and a source of each type.
const MORE_TABLES: &str = r#"
name = "more"
[state]
url = "s3://deploys/rollouts"
[backend]
type = "command"
set_weight = ["./set-weight.sh"]
[sources.prom]
type = "prometheus"
url = "http://127.0.0.1:9090"
[sources.stats]
type = "http-json"
url = "http://127.0.0.1:8081/stats"
[sources.scripts]
type = "command"
[[stages]]
weight = 100
"#;

const SEGMENTED_NGINX: &str = r#"[backend]
type = "nginx"
upstream_file = "/etc/nginx/conf.d/up.conf"
upstream = "app"
stable = ["10.0.0.1:80"]
canary = ["10.0.0.2:80"]"#;

const SEGMENTED_GATEWAY: &str = r#"[backend]
type = "kubectl"
mode = "gateway"
namespace = "shop"
route = "shop"
stable_service = "shop-stable"
canary_service = "shop-canary""#;

/// The plan with `zz_probe = 1` at the top and at the start of every table.
fn probed(text: &str) -> String {
    let mut out = format!("{PROBE} = 1\n");
    for line in text.lines() {
        out.push_str(line);
        out.push('\n');
        if line.starts_with('[') {
            out.push_str(&format!("{PROBE} = 1\n"));
        }
    }
    out
}

/// For each table's path (`backend`, `stages[2].hooks[0]`), the fields the parser accepts.
fn parser_fields(text: &str) -> BTreeMap<String, BTreeSet<String>> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("plan.toml"), probed(text)).unwrap();
    let output = Command::new(rollout_bin())
        .args(["validate", "--output", "json", "plan.toml"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    let mut tables = BTreeMap::new();
    for d in report["files"][0]["diagnostics"].as_array().unwrap() {
        let path = d["path"].as_str().unwrap();
        let Some(table) = path.strip_suffix(PROBE) else {
            continue;
        };
        let help = d["help"].as_str().unwrap_or_default();
        let list = help
            .strip_prefix("valid fields here: ")
            .unwrap_or_else(|| panic!("no field list for {path}: {help}"));
        let fields = list
            .split(", ")
            .map(|f| f.trim_matches('`').to_string())
            .collect();
        tables.insert(table.trim_end_matches('.').to_string(), fields);
    }
    tables
}

/// The schema's description of the table at `path` in `plan`, and a name for it.
fn schema_table<'s>(schema: &'s Value, plan: &toml::Value, path: &str) -> (String, &'s Value) {
    let root = &schema["properties"];
    let segments: Vec<&str> = path.split('.').collect();
    match segments.as_slice() {
        [""] => ("root".into(), schema),
        ["defaults"] | ["state"] | ["window"] => (path.into(), &root[path]),
        ["backend"] => branch("backend", &root["backend"], &plan["backend"]),
        ["backend", "segments", _] => {
            let (kind, backend) = branch("backend", &root["backend"], &plan["backend"]);
            (
                format!("{kind}.segments"),
                &backend["properties"]["segments"]["additionalProperties"],
            )
        }
        ["sources", name] => branch(
            "sources",
            &root["sources"]["additionalProperties"],
            &plan["sources"][name],
        ),
        [item] if item.starts_with("metrics[") => ("metrics".into(), &root["metrics"]["items"]),
        [item] if item.starts_with("stages[") => ("stages".into(), &root["stages"]["items"]),
        [item] if item.starts_with("hooks[") => ("hooks".into(), &root["hooks"]["items"]),
        [item] if item.starts_with("notify[") => {
            let i: usize = item[7..item.len() - 1].parse().unwrap();
            branch("notify", &root["notify"]["items"], &plan["notify"][i])
        }
        [stage, hook] if stage.starts_with("stages[") && hook.starts_with("hooks[") => (
            "stages.hooks".into(),
            &root["stages"]["items"]["properties"]["hooks"]["items"],
        ),
        _ => panic!("the test does not know where `{path}` is in the schema"),
    }
}

/// The `oneOf` branch whose `const` fields (type, mode) match the plan's table.
fn branch<'s>(name: &str, node: &'s Value, table: &toml::Value) -> (String, &'s Value) {
    let branches = node["oneOf"].as_array().unwrap();
    let found = branches.iter().find(|b| {
        b["properties"]
            .as_object()
            .unwrap()
            .iter()
            .all(|(key, p)| match p.get("const") {
                Some(c) => table.get(key).and_then(|v| v.as_str()) == c.as_str(),
                None => true,
            })
    });
    let found = found.unwrap_or_else(|| panic!("no {name} branch in the schema for {table:?}"));
    let consts: Vec<String> = found["properties"]
        .as_object()
        .unwrap()
        .values()
        .filter_map(|p| p.get("const")?.as_str().map(str::to_string))
        .collect();
    (format!("{name}:{}", consts.join("/")), found)
}

fn properties(node: &Value) -> BTreeSet<String> {
    node["properties"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect()
}

/// Every closed table the schema describes, by the name `schema_table` gives it.
fn schema_tables(schema: &Value) -> usize {
    fn count(v: &Value) -> usize {
        let own = usize::from(v.get("additionalProperties") == Some(&Value::Bool(false)));
        own + match v {
            Value::Object(map) => map.values().map(count).sum(),
            Value::Array(items) => items.iter().map(count).sum(),
            _ => 0,
        }
    }
    count(schema)
}

#[test]
fn the_schema_and_the_parser_know_the_same_fields() {
    let schema = schema();
    let mut texts: Vec<(String, String)> = example_plans()
        .iter()
        .map(|p| (p.display().to_string(), std::fs::read_to_string(p).unwrap()))
        .collect();
    texts.push(("(more tables)".into(), MORE_TABLES.into()));
    // Segments of requests, which no example plan uses yet.
    for backend in [SEGMENTED_NGINX, SEGMENTED_GATEWAY] {
        texts.push((
            "(segments of requests)".into(),
            format!("name = \"more\"\n{backend}\n[backend.segments.staff]\nheader = \"X-Staff\"\n[[stages]]\nweight = 100\n"),
        ));
    }
    let mut seen = BTreeSet::new();
    let mut problems = Vec::new();
    for (file, text) in &texts {
        let plan: toml::Value = toml::from_str(text).unwrap();
        for (path, parser) in parser_fields(text) {
            let (name, node) = schema_table(&schema, &plan, &path);
            let in_schema = properties(node);
            if in_schema != parser {
                problems.push(format!(
                    "{file}: `{path}` ({name}): only the parser knows {:?}; only the schema knows {:?}",
                    parser.difference(&in_schema).collect::<Vec<_>>(),
                    in_schema.difference(&parser).collect::<Vec<_>>()
                ));
            }
            seen.insert(name);
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert_eq!(
        seen.len(),
        schema_tables(&schema),
        "every table the schema describes is probed by an example plan; probed: {seen:?}"
    );
}

/// Validates TOML files against a JSON Schema with Python's jsonschema (draft 7), one line of
/// errors per invalid file; exit 0 when every file is valid.
#[cfg(feature = "e2e")]
const VALIDATOR: &str = r#"
import json, sys, tomllib
import jsonschema
schema = json.load(open(sys.argv[1]))
jsonschema.Draft7Validator.check_schema(schema)
validator = jsonschema.Draft7Validator(schema)
bad = 0
for path in sys.argv[2:]:
    with open(path, "rb") as f:
        plan = tomllib.load(f)
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(plan)]
    if errors:
        bad += 1
        print(f"{path}: " + "; ".join(errors))
sys.exit(1 if bad else 0)
"#;

#[cfg(feature = "e2e")]
fn validate_with_jsonschema(files: &[PathBuf]) -> (bool, String) {
    let available = Command::new("python3")
        .args(["-c", "import jsonschema, tomllib"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        available,
        "Python's jsonschema is missing (and Python 3.11+ for tomllib); install it with:\n  \
         python3 -m pip install jsonschema\n(./scripts/test.sh installs it)"
    );
    let dir = tempfile::tempdir().unwrap();
    let schema_file = dir.path().join("rollout.schema.json");
    std::fs::write(&schema_file, serde_json::to_string(&schema()).unwrap()).unwrap();
    let output = Command::new("python3")
        .args(["-c", VALIDATOR])
        .arg(&schema_file)
        .args(files)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[cfg(feature = "e2e")]
#[test]
fn every_example_plan_is_valid_against_the_schema_by_an_independent_validator() {
    let plans = example_plans();
    assert!(plans.len() >= 7);
    let (ok, errors) = validate_with_jsonschema(&plans);
    assert!(ok, "{errors}");
    // The validator does refuse what the schema excludes.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "name = \"Shop\"\n[backend]\ntype = \"command\"\nset_weight = [\"x\"]\nnamespace = \"prod\"\n[[stages]]\nweight = 100\n[window]\ndays = [\"someday\"]\n",
    )
    .unwrap();
    let (ok, errors) = validate_with_jsonschema(&[bad]);
    assert!(!ok);
    assert!(errors.contains("'Shop' does not match"), "{errors}");
    assert!(errors.contains("window/days/0"), "{errors}");
}
