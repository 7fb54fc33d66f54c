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
