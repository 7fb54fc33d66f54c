//! Every example plan in plans/ is valid: they are what users copy.

use std::path::Path;
use std::process::Command;

use crate::harness::rollout_bin;

#[test]
fn every_example_plan_is_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("plans");
    let mut plans: Vec<_> = std::fs::read_dir(&dir)
        .expect("plans/ exists")
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "toml"))
        .collect();
    plans.sort();
    assert!(
        plans.len() >= 7,
        "expected example plans for every backend and strategy, found {plans:?}"
    );
    for plan in plans {
        let output = Command::new(rollout_bin())
            .arg("validate")
            .arg(&plan)
            .output()
            .expect("run rollout validate");
        assert!(
            output.status.success(),
            "{} is invalid:\n{}",
            plan.display(),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

#[test]
fn every_example_plan_walks_through_a_dry_run() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("plans");
    let state = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(&dir).expect("plans/ exists") {
        let plan = entry.expect("a directory entry").path();
        if plan.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let output = Command::new(rollout_bin())
            .arg("run")
            .arg(&plan)
            .arg("--dry-run")
            .env("PROM_TOKEN", "example-token")
            .env("UNLEASH_TOKEN", "example-token")
            .env("ROLLOUT_STATE_DIR", state.path())
            .output()
            .expect("run rollout --dry-run");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{}:\n{stderr}", plan.display());
        assert!(
            stderr.contains("DONE: Dry run complete"),
            "{}:\n{stderr}",
            plan.display()
        );
        assert!(
            !stderr.contains("example-token"),
            "{}: a secret was printed",
            plan.display()
        );
    }
    assert_eq!(
        std::fs::read_dir(state.path()).unwrap().count(),
        0,
        "a dry run wrote state"
    );
}
