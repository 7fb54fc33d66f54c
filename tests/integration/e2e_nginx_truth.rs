//! The nginx backend tells the truth under setup faults, on the real lab: a symlinked
//! `upstream_file` really moves traffic, a file nginx does not include is never reported as
//! applied, and setup mistakes are caught before anything is touched (exit 1, not 5).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::e2e_nginx::{PlanOptions, Source, plan, settle, upstream};
use crate::harness::rollout_bin;
use crate::lab::Lab;

/// Runs `rollout ARGS` in `dir` to completion: (exit code, stderr).
fn rollout(dir: &Path, args: &[&str]) -> (i32, String) {
    let output = Command::new(rollout_bin())
        .args(args)
        .current_dir(dir)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run rollout");
    (
        output.status.code().expect("exited"),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A quick three-stage plan whose gate always passes, with `upstream_file` and `pid_file`
/// swapped for the given paths.
fn quick_plan(lab: &Lab, dir: &Path, upstream_file: &Path, pid_file: &Path) -> String {
    let gate = dir.join("error-rate");
    std::fs::write(&gate, "0\n").unwrap();
    let options = PlanOptions {
        defaults: "bake = \"1s\"\ninterval = \"200ms\"\nmax_hold = \"10s\"".into(),
        source: Source::File(gate),
        ..PlanOptions::default()
    };
    plan(lab, options)
        .replace(
            &format!("upstream_file = \"{}\"", lab.upstream_file().display()),
            &format!("upstream_file = \"{}\"", upstream_file.display()),
        )
        .replace(
            &format!("pid_file = \"{}\"", lab.dir().join("nginx.pid").display()),
            &format!("pid_file = \"{}\"", pid_file.display()),
        )
}

fn pid_file(lab: &Lab) -> PathBuf {
    lab.dir().join("nginx.pid")
}

/// nginx includes `upstream.conf`; the plan names a symlink to it. Writing must go through the
/// link: replacing the link by a regular file would leave nginx reading the old target while
/// the run promoted and reported 100%.
#[test]
fn a_symlinked_upstream_file_is_written_through_to_the_file_nginx_includes() {
    let lab = Lab::start();
    let dir = tempfile::tempdir().unwrap();
    let links = dir.path().join("links");
    std::fs::create_dir(&links).unwrap();
    let link = links.join("app-upstream.conf");
    std::os::unix::fs::symlink(lab.upstream_file(), &link).unwrap();
    std::fs::write(
        dir.path().join("plan.toml"),
        quick_plan(&lab, dir.path(), &link, &pid_file(&lab)),
    )
    .unwrap();
    let (code, stderr) = rollout(dir.path(), &["run", "plan.toml"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink(),
        "the link was replaced"
    );
    assert_eq!(std::fs::read_link(&link).unwrap(), lab.upstream_file());
    assert!(
        upstream(&lab).contains("Stage 3: 100%"),
        "{}",
        upstream(&lab)
    );
    settle(&lab);
    assert_eq!(
        lab.send_requests(20),
        (0, 20),
        "promoted, so every request must reach the canary:\n{}",
        upstream(&lab)
    );
}

/// An existing upstream file that nginx's configuration does not include: the preflight sees
/// it in nginx's own configuration dump (`nginx -T`), before any traffic moves.
#[test]
fn an_upstream_file_nginx_does_not_load_is_refused_before_anything_changes() {
    let lab = Lab::start();
    let dir = tempfile::tempdir().unwrap();
    let stray = dir.path().join("stray-upstream.conf");
    let before = format!("upstream app {{\n    server {};\n}}\n", lab.stable_addr());
    std::fs::write(&stray, &before).unwrap();
    std::fs::write(
        dir.path().join("plan.toml"),
        quick_plan(&lab, dir.path(), &stray, &pid_file(&lab)),
    )
    .unwrap();
    let workers = lab.nginx_worker_pids();
    let (code, stderr) = rollout(dir.path(), &["run", "plan.toml"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "nginx does not load {}: its configuration (`",
            stray.display()
        )),
        "{stderr}"
    );
    assert!(stderr.contains("includes only "), "{stderr}");
    assert!(!stderr.contains("PROMOTED"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&stray).unwrap(), before);
    assert_eq!(lab.nginx_worker_pids(), workers, "nginx was reloaded");
    assert_eq!(lab.send_requests(10), (10, 0));
}

/// A new upstream file (it did not exist, so the preflight cannot look for it) that nginx's
/// configuration does not include: every reload is checked against `nginx -T`, so the run
/// never says the weight was applied; nor that its rollback was, so it ends with exit 5.
#[test]
fn a_new_upstream_file_nginx_does_not_load_is_never_reported_as_applied() {
    let lab = Lab::start();
    let dir = tempfile::tempdir().unwrap();
    let stray = dir.path().join("new-upstream.conf");
    std::fs::write(
        dir.path().join("plan.toml"),
        quick_plan(&lab, dir.path(), &stray, &pid_file(&lab)),
    )
    .unwrap();
    let (code, stderr) = rollout(dir.path(), &["run", "plan.toml"]);
    assert_eq!(code, 5, "a rollback it cannot confirm either: {stderr}");
    assert!(stderr.contains("ROLLBACK FAILED"), "{stderr}");
    assert!(
        !stderr.contains("of traffic on the new version"),
        "a weight was reported as applied: {stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "the change could not be confirmed: nginx does not load {}: its configuration (`",
            stray.display()
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("PROMOTED"), "{stderr}");
    assert_eq!(lab.send_requests(10), (10, 0));
}

/// Setup mistakes that nginx would only trip over mid-run are found by the preflight: exit 1
/// with the path and the fix, nothing written, nginx never reloaded.
#[test]
fn setup_mistakes_fail_the_preflight_and_touch_nothing() {
    let lab = Lab::start();
    let dir = tempfile::tempdir().unwrap();
    let not_a_dir = dir.path().join("a-file");
    std::fs::write(&not_a_dir, "").unwrap();
    let dead_pid = {
        let mut child = Command::new("true").spawn().unwrap();
        child.wait().unwrap();
        child.id()
    };
    let dead_pid_file = dir.path().join("dead.pid");
    std::fs::write(&dead_pid_file, format!("{dead_pid}\n")).unwrap();
    let garbage_pid_file = dir.path().join("garbage.pid");
    std::fs::write(&garbage_pid_file, "nginx\n").unwrap();
    let missing_dir = dir.path().join("missing");
    let cases: Vec<(PathBuf, PathBuf, String)> = vec![
        (
            missing_dir.join("upstream.conf"),
            pid_file(&lab),
            format!(
                "cannot write the nginx upstream_file {}: its directory {} does not exist",
                missing_dir.join("upstream.conf").display(),
                missing_dir.display()
            ),
        ),
        (
            not_a_dir.join("upstream.conf"),
            pid_file(&lab),
            format!(
                "cannot write the nginx upstream_file {}: cannot create a file in {}",
                not_a_dir.join("upstream.conf").display(),
                not_a_dir.display()
            ),
        ),
        (
            lab.upstream_file(),
            dir.path().join("missing.pid"),
            format!(
                "cannot read the nginx pid_file {}",
                dir.path().join("missing.pid").display()
            ),
        ),
        (
            lab.upstream_file(),
            dead_pid_file.clone(),
            format!(
                "the nginx pid_file {} names process {dead_pid}, which is not running",
                dead_pid_file.display()
            ),
        ),
        (
            lab.upstream_file(),
            garbage_pid_file.clone(),
            format!(
                "the nginx pid_file {} does not hold a process id",
                garbage_pid_file.display()
            ),
        ),
    ];
    let upstream_before = upstream(&lab);
    let workers = lab.nginx_worker_pids();
    for (upstream_file, pid, expected) in cases {
        let run_dir = tempfile::tempdir().unwrap();
        std::fs::write(
            run_dir.path().join("plan.toml"),
            quick_plan(&lab, run_dir.path(), &upstream_file, &pid),
        )
        .unwrap();
        let (code, stderr) = rollout(run_dir.path(), &["run", "plan.toml"]);
        assert_eq!(code, 1, "{expected}: {stderr}");
        assert!(
            stderr.contains("The preflight check failed, so nothing was changed"),
            "{stderr}"
        );
        assert!(stderr.contains(&expected), "{expected}:\n{stderr}");
        assert!(!stderr.contains("stage 1/3"), "{stderr}");
        assert_eq!(upstream(&lab), upstream_before, "{expected}");
        assert!(!missing_dir.exists(), "{expected}");
        assert_eq!(
            lab.nginx_worker_pids(),
            workers,
            "{expected}: nginx reloaded"
        );
    }
    assert_eq!(lab.send_requests(10), (10, 0));
}
