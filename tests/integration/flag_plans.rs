//! Flag plans without services: what a dry run shows (the exact flags file, the exact Unleash
//! calls, never the token), a 0% stage with segments that bakes, and flag hygiene (status and
//! validate after a promotion).

use std::process::Command;

use crate::harness::{Test, rollout_bin};

const FLAGS: &str = r#"{
  "flags": {
    "new-checkout": {
      "state": "ENABLED",
      "variants": { "on": true, "off": false },
      "defaultVariant": "off"
    },
    "banner": { "state": "ENABLED", "variants": { "a": "a" }, "defaultVariant": "a" }
  }
}
"#;

const FLAGD_PLAN: &str = r#"
name = "checkout"
[defaults]
bake = "10m"
interval = "1m"
[backend]
type = "flagd"
flags_file = "flags.json"
flag = "new-checkout"
[backend.segments.staff]
attribute = "email"
ends_with = "@example.com"
[[stages]]
weight = 0
segments = ["staff"]
[[stages]]
weight = 2.5
[[stages]]
weight = 100
"#;

/// `rollout ARGS` in `dir`, with the state in its `.rollout`: (stdout, stderr, exit code).
fn rollout_in(dir: &std::path::Path, args: &[&str]) -> (String, String, Option<i32>) {
    let out = Command::new(rollout_bin())
        .args(args)
        .current_dir(dir)
        .env_remove("ROLLOUT_STATE_DIR")
        .env_remove("ROLLOUT_STATE")
        .output()
        .unwrap();
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.code(),
    )
}

#[test]
fn a_flagd_dry_run_prints_the_exact_file_each_stage_writes() {
    let ran = Test::new()
        .plan(FLAGD_PLAN)
        .file("flags.json", FLAGS)
        .args(&["run", "plan.toml", "--dry-run"])
        .run();
    let stderr = String::from_utf8_lossy(&ran.output.stderr);
    let stage_2 = r#"stage 2/3: 0% -> 2.5%
would write flags.json:
    | {
    |   "flags": {
    |     "new-checkout": {
    |       "state": "ENABLED",
    |       "variants": {
    |         "on": true,
    |         "off": false
    |       },
    |       "defaultVariant": "off",
    |       "targeting": {
    |         "if": [
    |           {
    |             "ends_with": [
    |               {
    |                 "var": "email"
    |               },
    |               "@example.com"
    |             ]
    |           },
    |           "on",
    |           {
    |             "fractional": [
    |               [
    |                 "on",
    |                 2500
    |               ],
    |               [
    |                 "off",
    |                 97500
    |               ]
    |             ]
    |           }
    |         ]
    |       }
    |     },
    |     "banner": {
    |       "state": "ENABLED",
    |       "variants": {
    |         "a": "a"
    |       },
    |       "defaultVariant": "a"
    |     }
    |   }
    | }
would read flags.json back and check that flag `new-checkout` is as written
stage 2: 2.5% of users get the new version
stage 2: segment staff also on the new version, whatever the weight
"#;
    assert!(stderr.contains(stage_2), "{stderr}");
    // A 0% stage with a segment gets users, so it bakes.
    assert!(stderr.contains("stage 1: segment staff also on the new version, whatever the weight\nstage 1: baking 10m"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(ran.dir.path().join("flags.json")).unwrap(),
        FLAGS
    );
}

#[test]
fn a_zero_stage_with_segments_bakes_in_the_plan_table() {
    let ran = Test::new()
        .plan(FLAGD_PLAN)
        .args(&["plan", "plan.toml"])
        .run();
    let table = ran.stdout();
    let row = table
        .lines()
        .find(|l| l.contains("0% + staff"))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(row.contains("10m"), "{row}");
    assert!(row.contains("none: advances on time alone"), "{row}");
}

const UNLEASH_PLAN: &str = r#"
name = "checkout"
[defaults]
bake = "10m"
interval = "1m"
[backend]
type = "unleash"
url = "https://unleash.example.com"
token = "${UNLEASH_TOKEN}"
environment = "production"
flag = "new-checkout"
[backend.segments.dach]
attribute = "country"
in = ["de", "at"]
[[stages]]
weight = 5
segments = ["dach"]
[[stages]]
weight = 100
"#;

#[test]
fn an_unleash_dry_run_prints_every_call_and_never_the_token() {
    let ran = Test::new()
        .plan(UNLEASH_PLAN)
        .env("UNLEASH_TOKEN", "*:*.very-secret-token")
        .args(&["run", "plan.toml", "--dry-run"])
        .run();
    let stderr = String::from_utf8_lossy(&ran.output.stderr);
    assert!(!stderr.contains("very-secret-token"), "{stderr}");
    let path = "/api/admin/projects/default/features/new-checkout/environments/production";
    for line in [
        "would call unleash GET /api/admin/user null".to_string(),
        format!(
            "would call unleash POST {path}/strategies {{\"name\":\"flexibleRollout\",\"title\":\"rollout:checkout share (managed by rollout; do not edit)\",\"disabled\":false,\"parameters\":{{\"rollout\":\"5\",\"stickiness\":\"default\",\"groupId\":\"new-checkout\"}},\"constraints\":[]}}"
        ),
        format!(
            "would call unleash POST {path}/strategies {{\"name\":\"flexibleRollout\",\"title\":\"rollout:checkout segment dach (managed by rollout; do not edit)\",\"disabled\":false,\"parameters\":{{\"rollout\":\"100\",\"stickiness\":\"default\",\"groupId\":\"new-checkout\"}},\"constraints\":[{{\"contextName\":\"country\",\"operator\":\"IN\",\"values\":[\"de\",\"at\"],\"caseInsensitive\":false,\"inverted\":false}}]}}"
        ),
        format!("would call unleash POST {path}/on null"),
        format!("would call unleash DELETE {path}/strategies/<id 2> null"),
    ] {
        assert!(stderr.contains(&line), "missing {line}\n{stderr}");
    }
    assert!(stderr.contains("DONE: Dry run complete"), "{stderr}");
}

#[test]
fn an_unset_token_variable_is_a_usage_error_before_anything_is_touched() {
    let ran = Test::new()
        .plan(UNLEASH_PLAN)
        .args(&["run", "plan.toml", "--dry-run"])
        .status(2)
        .run();
    let stderr = String::from_utf8_lossy(&ran.output.stderr);
    assert!(
        stderr.ends_with("\nerror: the unleash backend's token: environment variable `UNLEASH_TOKEN` is not set; nothing was changed\n"),
        "{stderr}"
    );
}

#[test]
fn after_a_promotion_status_tells_how_long_the_flag_is_on_and_validate_asks_to_remove_it() {
    let ran = Test::new()
        .plan(
            r#"
            name = "checkout"
            [defaults]
            bake = "100ms"
            interval = "100ms"
            [backend]
            type = "flagd"
            flags_file = "flags.json"
            flag = "new-checkout"
            cleanup_after = "30days"
            [[stages]]
            weight = 100
            "#,
        )
        .file("flags.json", FLAGS)
        .args(&["run", "plan.toml"])
        .run();
    let dir = ran.dir.path();
    let rollout = |args: &[&str]| rollout_in(dir, args);
    let (status, _, _) = rollout(&["status", "checkout"]);
    assert!(status.contains("  flag     flagd flag `new-checkout` in flags.json fully on for less than an hour (since "), "{status}");
    let (_, validate, code) = rollout(&["validate", "plan.toml"]);
    assert_eq!(code, Some(0));
    assert!(!validate.contains("fully on"), "{validate}");
    // Promoted long ago: validate says it is time to remove the flag.
    let journal = dir.join(".rollout/checkout/journal.json");
    let mut j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&journal).unwrap()).unwrap();
    j["since"] = "2020-01-01T00:00:00Z".into();
    std::fs::write(&journal, j.to_string()).unwrap();
    let (_, validate, code) = rollout(&["validate", "plan.toml"]);
    assert_eq!(code, Some(0));
    let expected = r#"warning: backend.flag: the flagd flag `new-checkout` in flags.json has been fully on since 2020-01-01T00:00:00Z, longer than cleanup_after (30days)
 --> plan.toml:8:8
  |
8 | flag = "new-checkout"
  |        ^^^^^^^^^^^^^^ rolled out to everyone: time to remove it
  |
  = help: remove the flag from the code and from its backend, then delete this plan; the journal in .rollout says when it was promoted
"#;
    assert!(validate.contains(expected), "{validate}");
    let (status, _, _) = rollout(&["status", "checkout"]);
    assert!(
        status.contains(
            "(since 2020-01-01T00:00:00Z); past its cleanup_after: remove it from the code"
        ),
        "{status}"
    );
}

#[test]
fn someone_else_editing_the_rolled_out_flag_stops_the_run_and_the_kill_switch_still_works() {
    // The stage 1 hook plays a colleague who turns the flag on for everyone by hand.
    let ran = Test::new()
        .plan(
            r#"
            name = "checkout"
            [defaults]
            bake = "100ms"
            interval = "100ms"
            [backend]
            type = "flagd"
            flags_file = "flags.json"
            flag = "new-checkout"
            [[stages]]
            weight = 10
            [[stages.hooks]]
            run = ["sed", "-i", "s/\"defaultVariant\": \"off\"/\"defaultVariant\": \"on\"/", "flags.json"]
            [[stages]]
            weight = 100
            "#,
        )
        .file("flags.json", FLAGS)
        .args(&["run", "plan.toml"])
        .status(1)
        .run();
    let stderr = String::from_utf8_lossy(&ran.output.stderr);
    assert!(
        stderr.contains("FAILED: Could not proceed: stage 2 could not set the weight to 100%: the flags file flags.json was edited by someone else: flag `new-checkout` is no longer as rollout left it"),
        "{stderr}"
    );
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(ran.dir.path().join("flags.json")).unwrap())
            .unwrap();
    assert_eq!(
        doc["flags"]["new-checkout"]["defaultVariant"], "off",
        "the kill switch"
    );
    assert!(doc["flags"]["new-checkout"].get("targeting").is_none());
    assert_eq!(doc["flags"]["banner"]["defaultVariant"], "a");
}

/// A run paused with a segment on: `status` says the segment still gets the new version, and the
/// rollback takes it back.
#[test]
fn status_names_the_segments_still_on_after_a_pause_and_not_after_the_rollback() {
    let ran = Test::new()
        .plan(
            r#"
            name = "checkout"
            [defaults]
            bake = "100ms"
            interval = "100ms"
            max_hold = "300ms"
            on_timeout = "pause"
            [backend]
            type = "flagd"
            flags_file = "flags.json"
            flag = "new-checkout"
            [backend.segments.staff]
            attribute = "email"
            ends_with = "@example.com"
            [[stages]]
            weight = 0
            segments = ["staff"]
            [[stages]]
            weight = 10
            approval = true
            [[stages]]
            weight = 100
            "#,
        )
        .file("flags.json", FLAGS)
        .args(&["run", "plan.toml"])
        .status(4)
        .run();
    let dir = ran.dir.path();
    let (paused, _, _) = rollout_in(dir, &["status", "checkout"]);
    assert!(
        paused.contains(
            "  users    10% on the new version\n  also     segment staff on the new version whatever the weight\n"
        ),
        "{paused}"
    );
    let (_, stderr, code) = rollout_in(dir, &["rollback", "plan.toml"]);
    assert_eq!(code, Some(0), "{stderr}");
    let (after, _, _) = rollout_in(dir, &["status", "checkout"]);
    assert!(!after.contains("  also "), "{after}");
}
