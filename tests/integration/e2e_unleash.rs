//! The unleash backend end to end, against a real unleash-server on PostgreSQL: each stage's
//! effect is checked as applications see it (unleash-client-node's isEnabled, fed by the client
//! API, for 10,000 user ids, run as a stage hook), and every way a rollout ends leaves the flag
//! as promised: promoted at 100%; rolled back (a breach, an interrupt, `rollout rollback` after
//! kill -9) with the flag disabled and the strategies it had put back.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};

use crate::harness::rollout_bin;
use crate::running::Running;
use crate::unleash_lab::{ADMIN_TOKEN, CLIENT_TOKEN, UnleashLab, support_dir};

fn theirs() -> Value {
    json!({"name": "default", "title": "internal users", "constraints": [
        {"contextName": "email", "operator": "STR_ENDS_WITH", "values": ["@corp.example"], "caseInsensitive": false, "inverted": false}
    ]})
}

fn evaluate_hook(lab: &UnleashLab, flag: &str, out: &str, disabled: bool) -> String {
    let script = support_dir().join("evaluate.mjs");
    let extra = if disabled { ", \"--disabled\"" } else { "" };
    format!(
        "run = [\"node\", \"{}\", \"{}\", \"{CLIENT_TOKEN}\", \"{flag}\", \"{out}\"{extra}]\ntimeout = \"2m\"\n",
        script.display(),
        lab.url()
    )
}

fn plan(lab: &UnleashLab, flag: &str, bake: &str, stages: &[(u32, &str)], tail: &str) -> String {
    let mut plan = format!(
        "name = \"{flag}\"\n[defaults]\nbake = \"{bake}\"\ninterval = \"100ms\"\n\
         [backend]\ntype = \"unleash\"\nurl = \"{}\"\ntoken = \"${{UNLEASH_TOKEN}}\"\n\
         environment = \"production\"\nflag = \"{flag}\"\nstickiness = \"userId\"\n\
         [backend.segments.staff]\nattribute = \"email\"\nends_with = \"@example.com\"\n{tail}",
        lab.url()
    );
    for (weight, extra) in stages {
        plan.push_str(&format!(
            "[[stages]]\nweight = {weight}\n{extra}\n[[stages.hooks]]\n{}",
            evaluate_hook(lab, flag, "stage-{stage}.json", false)
        ));
    }
    plan
}

fn rollout(dir: &Path, args: &[&str]) -> (i32, String) {
    let out = Command::new(rollout_bin())
        .args(args)
        .current_dir(dir)
        .env("UNLEASH_TOKEN", ADMIN_TOKEN)
        .env("ROLLOUT_STATE_DIR", dir.join("state"))
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn on(dir: &Path, name: &str) -> (BTreeSet<u64>, Vec<u64>) {
    let text = std::fs::read_to_string(dir.join(name))
        .unwrap_or_else(|e| panic!("{name} was not written: {e}"));
    let v: Value = serde_json::from_str(&text).unwrap();
    let ids = |k: &str| {
        v[k].as_array()
            .unwrap()
            .iter()
            .map(|i| i.as_u64().unwrap())
            .collect::<Vec<_>>()
    };
    (ids("on").into_iter().collect(), ids("staff"))
}

/// Share of the users outside the segment who get the flag, in percent.
fn share_outside_staff(on: &BTreeSet<u64>) -> f64 {
    on.iter().filter(|i| *i % 10 != 0).count() as f64 * 100.0 / 9000.0
}

/// The flag is disabled in production and has exactly the strategies it had before.
fn assert_restored(lab: &UnleashLab, flag: &str) {
    let (enabled, strategies) = lab.production(flag);
    assert!(!enabled, "the kill switch leaves {flag} disabled");
    assert_eq!(strategies.len(), 1, "{strategies:#?}");
    assert_eq!(strategies[0]["title"], "internal users");
    assert_eq!(strategies[0]["name"], "default");
    assert_eq!(
        strategies[0]["constraints"][0]["values"],
        json!(["@corp.example"])
    );
}

fn never_shows_the_token(dir: &Path, stderr: &str) {
    let secret = ADMIN_TOKEN.split('.').next_back().unwrap();
    assert!(!stderr.contains(secret), "the token was printed");
    let journal =
        std::fs::read_to_string(dir.join("state").join(dir_name(dir)).join("journal.json"))
            .unwrap_or_default();
    assert!(!journal.contains(secret), "the token was journaled");
}

fn dir_name(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("plan.toml"))
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .trim_start_matches("name = \"")
        .trim_end_matches('"')
        .to_string()
}

#[test]
fn stages_give_their_share_stickily_then_promote_or_flip_the_kill_switch() {
    let lab = UnleashLab::start();
    // Promoted: each stage's share, sticky, the segment always in.
    lab.create_flag("checkout-promote", &[theirs()]);
    let dir = tempfile::tempdir().unwrap();
    let stages = [(0, "segments = [\"staff\"]"), (5, ""), (30, ""), (100, "")];
    std::fs::write(
        dir.path().join("plan.toml"),
        plan(&lab, "checkout-promote", "200ms", &stages, ""),
    )
    .unwrap();
    let (code, stderr) = {
        let out = Command::new(rollout_bin())
            .args(["run", "plan.toml", "--verbose"])
            .current_dir(dir.path())
            .env("UNLEASH_TOKEN", ADMIN_TOKEN)
            .env("ROLLOUT_STATE_DIR", dir.path().join("state"))
            .output()
            .unwrap();
        (
            out.status.code().unwrap(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    assert_eq!(code, 0, "{stderr}");
    never_shows_the_token(dir.path(), &stderr);
    let mut previous = BTreeSet::new();
    for (n, (weight, _)) in stages.iter().enumerate() {
        let (on, staff) = on(dir.path(), &format!("stage-{}.json", n + 1));
        let share = share_outside_staff(&on);
        assert!(
            (share - f64::from(*weight)).abs() <= 1.5,
            "stage {}: {share}% at {weight}%",
            n + 1
        );
        assert!(
            staff.iter().all(|i| on.contains(i)),
            "stage {}: staff left out",
            n + 1
        );
        assert!(
            previous.is_subset(&on),
            "stage {}: someone lost the flag",
            n + 1
        );
        previous = on;
    }
    let (enabled, strategies) = lab.production("checkout-promote");
    assert!(enabled);
    assert_eq!(strategies.len(), 1, "{strategies:#?}");
    assert_eq!(strategies[0]["parameters"]["rollout"], "100");

    // A breach at 20%: the kill switch, and the strategies the flag had are back.
    lab.create_flag("checkout-breach", &[theirs()]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("errors.txt"), "0\n").unwrap();
    let tail = format!(
        "[sources.app]\ntype = \"command\"\n[[metrics]]\nname = \"errors\"\nsource = \"app\"\nrun = [\"cat\", \"errors.txt\"]\nrollback = \"> 0.1\"\n\
         [[hooks]]\non = \"rolled-back\"\n{}",
        evaluate_hook(&lab, "checkout-breach", "rolled-back.json", true)
    );
    let breach = "[[stages.hooks]]\nrun = [\"sh\", \"-c\", \"echo 0.5 > errors.txt\"]";
    let stages = [(5, "segments = [\"staff\"]"), (20, breach), (100, "")];
    std::fs::write(
        dir.path().join("plan.toml"),
        plan(&lab, "checkout-breach", "500ms", &stages, &tail),
    )
    .unwrap();
    let (code, stderr) = rollout(dir.path(), &["run", "plan.toml"]);
    assert_eq!(code, 3, "{stderr}");
    let (at_20, _) = on(dir.path(), "stage-2.json");
    assert!((share_outside_staff(&at_20) - 20.0).abs() <= 1.5);
    let (after, _) = on(dir.path(), "rolled-back.json");
    assert!(after.is_empty(), "{} users still get the flag", after.len());
    assert_restored(&lab, "checkout-breach");
}

#[test]
fn an_interrupt_or_a_rollback_after_kill_9_puts_the_strategies_back() {
    let lab = UnleashLab::start();
    for (flag, kill) in [("checkout-interrupt", false), ("checkout-killed", true)] {
        lab.create_flag(flag, &[theirs()]);
        let dir = tempfile::tempdir().unwrap();
        let stages = [(10, ""), (100, "")];
        let text = plan(&lab, flag, "5m", &stages, "");
        std::fs::write(dir.path().join("plan.toml"), &text).unwrap();
        let env = [
            ("UNLEASH_TOKEN".to_string(), ADMIN_TOKEN.to_string()),
            (
                "ROLLOUT_STATE_DIR".to_string(),
                dir.path().join("state").display().to_string(),
            ),
        ];
        let running = Running::start_with_env(dir.path(), &["run", "plan.toml"], &env);
        running.wait_for_line("baking");
        let (enabled, strategies) = lab.production(flag);
        assert!(enabled && strategies.len() == 1 && strategies[0]["parameters"]["rollout"] == "10");
        if kill {
            running.signal(libc::SIGKILL);
            let (code, _, _) = running.finish_killed();
            assert_eq!(code, None);
            let (code, stderr) = rollout(dir.path(), &["rollback", "plan.toml"]);
            assert_eq!(code, 0, "{stderr}");
            never_shows_the_token(dir.path(), &stderr);
        } else {
            running.signal(libc::SIGINT);
            let (code, stderr, _) = running.finish();
            assert_eq!(code, 3, "{stderr}");
            assert!(stderr.contains("interrupted by SIGINT"), "{stderr}");
        }
        assert_restored(&lab, flag);
    }
}
