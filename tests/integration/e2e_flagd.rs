//! The flagd backend end to end: rollout rewrites a real flags file stage by stage, and after
//! each stage a real OpenFeature SDK with the flagd provider in file mode (Python, pinned in
//! scripts/test.sh) evaluates it for 10,000 targeting keys, as a stage hook: the new variant's
//! share is the stage's weight, nobody who had it loses it, the segment always has it, other
//! flags evaluate as before (or as someone edited them meanwhile), and after a rollback
//! nobody has it.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::harness::rollout_bin;

const FLAGS: &str = r#"{
  "$schema": "https://flagd.dev/schema/v0/flags.json",
  "flags": {
    "new-checkout": {
      "state": "ENABLED",
      "variants": { "on": true, "off": false },
      "defaultVariant": "off"
    },
    "banner": {
      "state": "ENABLED",
      "variants": { "red": "red", "blue": "blue" },
      "defaultVariant": "red",
      "targeting": { "if": [{ "$ref": "berlin" }, "blue", null] }
    },
    "theme": {
      "state": "ENABLED",
      "variants": { "light": "light", "dark": "dark" },
      "defaultVariant": "dark",
      "targeting": { "fractional": [["light", 30], ["dark", 70]] }
    }
  },
  "$evaluators": { "berlin": { "in": [{ "var": "city" }, ["Berlin"]] } }
}
"#;

fn evaluator() -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/flagd/evaluate.py");
    let check = Command::new("python3")
        .args(["-c", "import openfeature.contrib.provider.flagd"])
        .output();
    assert!(
        check.is_ok_and(|o| o.status.success()),
        "the flagd tests need the OpenFeature flagd provider: run ./scripts/test.sh, or python3 -m pip install openfeature-provider-flagd==0.6.1"
    );
    script.display().to_string()
}

fn hook(eval: &str, extra: &str) -> String {
    format!(
        "[[stages.hooks]]\nrun = [\"python3\", \"{eval}\", \"flags.json\", \"stage-{{stage}}.json\"{extra}]\ntimeout = \"2m\"\n"
    )
}

fn plan(eval: &str, stages: &[(f64, &str, &str)], tail: &str) -> String {
    let mut plan = String::from(
        "name = \"checkout\"\n[defaults]\nbake = \"200ms\"\ninterval = \"100ms\"\n\
         [backend]\ntype = \"flagd\"\nflags_file = \"flags.json\"\nflag = \"new-checkout\"\n\
         [backend.segments.staff]\nattribute = \"email\"\nends_with = \"@example.com\"\n",
    );
    plan.push_str(tail);
    for (weight, segments, extra) in stages {
        plan.push_str(&format!("[[stages]]\nweight = {weight}\n{segments}\n"));
        plan.push_str(&hook(eval, extra));
    }
    plan
}

struct Eval {
    keys: usize,
    on: BTreeSet<u64>,
    staff: Vec<u64>,
    others: Value,
}

fn read(dir: &Path, name: &str) -> Eval {
    let path = dir.join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{} was not written: {e}", path.display()));
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        v["errors"],
        serde_json::json!([]),
        "{name}: evaluation errors"
    );
    let ids = |key: &str| -> Vec<u64> {
        v[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i.as_u64().unwrap())
            .collect()
    };
    Eval {
        keys: v["keys"].as_u64().unwrap() as usize,
        on: ids("on").into_iter().collect(),
        staff: ids("staff"),
        others: v["others"].clone(),
    }
}

fn rollout(dir: &Path, args: &[&str]) -> (i32, String) {
    let out = Command::new(rollout_bin())
        .args(args)
        .current_dir(dir)
        .env("ROLLOUT_STATE_DIR", dir.join("state"))
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Share of the keys outside the segment that get the new variant, in percent.
fn share_outside_staff(e: &Eval) -> f64 {
    let outside = e.keys - e.staff.len();
    let on = e.on.iter().filter(|i| *i % 10 != 0).count();
    on as f64 * 100.0 / outside as f64
}

#[test]
fn each_stage_gives_its_share_stickily_and_leaves_other_flags_alone() {
    let eval = evaluator();
    let dir = tempfile::tempdir().unwrap();
    let flags = dir.path().join("flags.json");
    std::fs::write(&flags, FLAGS).unwrap();
    std::fs::set_permissions(&flags, std::fs::Permissions::from_mode(0o640)).unwrap();
    let status = Command::new("python3")
        .args([eval.as_str(), "flags.json", "before.json"])
        .current_dir(dir.path())
        .status()
        .unwrap();
    assert!(status.success());
    let staff = "segments = [\"staff\"]";
    let stages = [
        (0.0, staff, ""),
        (1.0, "", ""),
        (10.0, "", ", \"--edit-banner\""),
        (25.0, "", ""),
        (50.0, "", ""),
        (100.0, "", ""),
    ];
    std::fs::write(dir.path().join("plan.toml"), plan(&eval, &stages, "")).unwrap();
    let (code, stderr) = rollout(dir.path(), &["run", "plan.toml"]);
    assert_eq!(code, 0, "{stderr}");

    let before = read(dir.path(), "before.json");
    assert!(before.on.is_empty());
    let mut previous = BTreeSet::new();
    for (n, (weight, _, _)) in stages.iter().enumerate() {
        let e = read(dir.path(), &format!("stage-{}.json", n + 1));
        assert_eq!(e.keys, 10_000);
        let share = share_outside_staff(&e);
        assert!(
            (share - weight).abs() <= 1.5,
            "stage {}: {share}% for weight {weight}%",
            n + 1
        );
        assert!(
            e.staff.iter().all(|i| e.on.contains(i)),
            "stage {}: a staff key lacks the new variant",
            n + 1
        );
        let lost: Vec<_> = previous.difference(&e.on).collect();
        assert!(
            lost.is_empty(),
            "stage {}: {} keys lost the new variant",
            n + 1,
            lost.len()
        );
        previous = e.on.clone();
        // theme never changes; banner is as before until someone edits it in stage 3, then
        // every later write keeps that edit.
        assert_eq!(e.others["theme"], before.others["theme"], "stage {}", n + 1);
        if n < 2 {
            assert_eq!(
                e.others["banner"],
                before.others["banner"],
                "stage {}",
                n + 1
            );
        } else {
            assert!(
                e.others["banner"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|v| v == "blue"),
                "stage {}: the edit of banner was lost",
                n + 1
            );
        }
    }
    assert_eq!(previous.len(), 10_000);
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&flags).unwrap()).unwrap();
    assert_eq!(doc["flags"]["banner"]["defaultVariant"], "blue");
    assert_eq!(
        doc["$evaluators"]["berlin"],
        serde_json::json!({ "in": [{ "var": "city" }, ["Berlin"]] })
    );
    let mode = std::fs::metadata(&flags).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o640);
}

#[test]
fn a_breach_flips_the_kill_switch_and_nobody_keeps_the_new_variant() {
    let eval = evaluator();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("flags.json"), FLAGS).unwrap();
    std::fs::write(dir.path().join("errors.txt"), "0\n").unwrap();
    let metric = format!(
        "[sources.app]\ntype = \"command\"\n[[metrics]]\nname = \"errors\"\nsource = \"app\"\nrun = [\"cat\", \"errors.txt\"]\nrollback = \"> 0.1\"\n\
         [[hooks]]\non = \"rolled-back\"\nrun = [\"python3\", \"{eval}\", \"flags.json\", \"rolled-back.json\"]\n"
    );
    let breach = ", \"--keys\", \"10000\"]\n[[stages.hooks]]\nrun = [\"sh\", \"-c\", \"echo 0.5 > errors.txt\"";
    let stages = [
        (5.0, "segments = [\"staff\"]", ""),
        (20.0, "", breach),
        (100.0, "", ""),
    ];
    std::fs::write(dir.path().join("plan.toml"), plan(&eval, &stages, &metric)).unwrap();
    let (code, stderr) = rollout(dir.path(), &["run", "plan.toml"]);
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("ROLLED BACK"), "{stderr}");
    let at_20 = read(dir.path(), "stage-2.json");
    assert!((share_outside_staff(&at_20) - 20.0).abs() <= 1.5);
    let after = read(dir.path(), "rolled-back.json");
    assert!(
        after.on.is_empty(),
        "{} keys still get the new variant",
        after.on.len()
    );
    let before_theme = read(dir.path(), "stage-1.json").others["theme"].clone();
    assert_eq!(after.others["theme"], before_theme);
}
