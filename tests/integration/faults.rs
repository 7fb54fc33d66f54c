//! The tool's own plumbing failing (its journal, its report file, a damaged state folder, a
//! second process): traffic never moves forward on it, and what rollout says is true. The
//! backend here is the command backend writing each weight it is given to a file, so these
//! tests need no services.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::harness::rollout_bin;
use crate::running::{Running, wait_until};

/// A command-backend plan: every weight set is appended to `weights`; the gate reads
/// `error-rate`. `stage_one` is extra TOML for the first stage (its hooks, say).
fn plan(stage_one: &str, stages_after: &str) -> String {
    format!(
        r#"name = "shop"

[defaults]
interval = "100ms"
bake = "300ms"
max_hold = "2s"

[backend]
type = "command"
set_weight = ["sh", "-c", "echo $ROLLOUT_WEIGHT >> weights"]

[sources.canary]
type = "command"

[[metrics]]
name = "error-rate"
source = "canary"
run = ["cat", "error-rate"]
advance = "< 1%"
rollback = "> 5%"

[[stages]]
weight = 10
{stage_one}
{stages_after}
"#
    )
}

const LATER_STAGES: &str = "[[stages]]\nweight = 50\n[[stages]]\nweight = 100\n";

fn setup(plan_text: &str, error_rate: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("plan.toml"), plan_text).unwrap();
    std::fs::write(dir.path().join("error-rate"), error_rate).unwrap();
    dir
}

/// `rollout ARGS` in `dir`: (exit code, stdout, stderr).
fn rollout(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let output = Command::new(rollout_bin())
        .args(args)
        .current_dir(dir)
        .env_remove("ROLLOUT_STATE_DIR")
        .stdin(Stdio::null())
        .output()
        .expect("run rollout");
    (
        output.status.code().expect("exited"),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn weights(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("weights")).unwrap_or_default()
}

/// The disk fills up (here: the journal becomes a directory, which fails every write even for
/// root; the hook retries because rollout may write the journal between its rm and mkdir) after
/// stage 1's weight: stage 2 is never started, and the run says where traffic is.
#[test]
fn a_journal_that_cannot_be_written_stops_traffic_from_moving() {
    let hook = r#"[[stages.hooks]]
run = ["sh", "-c", "until mkdir -p .rollout/shop/journal.json/full 2>/dev/null; do rm -f .rollout/shop/journal.json; done"]"#;
    let dir = setup(&plan(hook, LATER_STAGES), "0\n");
    let (code, _, stderr) = rollout(dir.path(), &["run", "plan.toml"]);
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(
        weights(dir.path()),
        "10\n",
        "nothing moved after the journal failed"
    );
    assert!(
        stderr.contains(
            "Traffic was left where it was: 10% on the new version (stage 1). Make the state folder \
             writable again, then run `rollout rollback` (or `rollout resume`)"
        ),
        "{stderr}"
    );

    // The journal cannot be read either: status says so and how to get out.
    let (code, _, stderr) = rollout(dir.path(), &["status", "plan.toml"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("the journal .rollout/shop/journal.json is damaged: Is a directory")
            && stderr.contains(
                "`rollout rollback plan.toml` returns traffic to stable from the plan alone"
            ),
        "{stderr}"
    );
    let (code, _, stderr) = rollout(dir.path(), &["rollback", "plan.toml"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(weights(dir.path()), "10\n0\n");
}

/// Each way a journal can be damaged: `rollback` still returns traffic to stable from the plan,
/// moves the journal aside and says where; `status`, `resume` and `run` explain the way out.
#[test]
fn a_damaged_journal_does_not_block_the_emergency_rollback() {
    let damages: [(&str, &[u8]); 4] = [
        ("truncated", b"{\"version\": 1, \"name\": \"sh"),
        ("empty", b""),
        ("binary", &[0xff, 0x00, 0xfe, 0x13, 0x37]),
        ("wrong shape", b"[1, 2, 3]"),
    ];
    for (damage, bytes) in damages {
        // Paused at 10%: the gate never answers, and on_timeout = "pause".
        let text = plan("", LATER_STAGES).replace(
            "max_hold = \"2s\"",
            "max_hold = \"300ms\"\non_timeout = \"pause\"",
        );
        let dir = setup(&text, "");
        let (code, _, stderr) = rollout(dir.path(), &["run", "plan.toml"]);
        assert_eq!(code, 4, "{damage}: {stderr}");
        let journal = dir.path().join(".rollout/shop/journal.json");
        std::fs::write(&journal, bytes).unwrap();

        for args in [
            &["status", "shop"][..],
            &["resume", "plan.toml"],
            &["run", "plan.toml"],
        ] {
            let (code, _, stderr) = rollout(dir.path(), args);
            assert_eq!(code, 1, "{damage}, {args:?}: {stderr}");
            assert!(
                stderr.contains("rollout cannot tell where this rollout's traffic is")
                    && stderr.contains("returns traffic to stable from the plan alone"),
                "{damage}, {args:?}: {stderr}"
            );
        }
        assert_eq!(weights(dir.path()), "10\n", "{damage}: nothing moved");

        let (code, _, stderr) = rollout(dir.path(), &["rollback", "plan.toml"]);
        assert_eq!(code, 0, "{damage}: {stderr}");
        assert_eq!(weights(dir.path()), "10\n0\n", "{damage}");
        assert!(
            stderr.contains("it was moved to .rollout/shop/journal.damaged-")
                && stderr.contains("traffic is returned to stable from the plan alone"),
            "{damage}: {stderr}"
        );
        let kept: Vec<_> = std::fs::read_dir(dir.path().join(".rollout/shop"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.starts_with("journal.damaged-"))
            .collect();
        assert_eq!(
            kept.len(),
            1,
            "{damage}: the damaged journal is kept: {kept:?}"
        );
        let (code, stdout, stderr) = rollout(dir.path(), &["status", "shop"]);
        assert_eq!(code, 0, "{damage}: {stderr}");
        assert!(
            stdout.starts_with("shop: rolled back"),
            "{damage}: {stdout}"
        );
    }
}

#[test]
fn a_report_path_that_cannot_be_written_is_refused_before_traffic_moves() {
    let dir = setup(&plan("", LATER_STAGES), "0\n");
    let (code, _, stderr) = rollout(
        dir.path(),
        &["run", "plan.toml", "--report", "missing/evidence.json"],
    );
    assert_eq!(code, 2, "{stderr}");
    assert_eq!(
        stderr,
        "error: --report missing/evidence.json: the directory missing does not exist; nothing was changed\n"
    );
    assert_eq!(weights(dir.path()), "");
}

/// The report's folder disappears during the run: the rollout still promoted, and says loudly
/// that its evidence was not written.
#[test]
fn a_report_that_fails_at_the_end_keeps_the_rollouts_exit_code() {
    let hook = r#"[[stages.hooks]]
run = ["rm", "-r", "reports"]"#;
    let dir = setup(&plan(hook, LATER_STAGES), "0\n");
    std::fs::create_dir(dir.path().join("reports")).unwrap();
    let (code, _, stderr) = rollout(
        dir.path(),
        &["run", "plan.toml", "--report", "reports/evidence.json"],
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(weights(dir.path()), "10\n50\n100\n");
    assert!(
        stderr.contains(
            "error: the evidence report was NOT written: cannot create a temporary file in reports"
        ) && stderr.contains("the exit code still says how the rollout ended"),
        "{stderr}"
    );
}

/// A second process is refused with the lock's exit code (1), naming who holds the rollout.
#[test]
fn resume_while_another_process_drives_the_rollout_exits_1() {
    let text =
        plan("approval = true", LATER_STAGES).replace("max_hold = \"2s\"", "max_hold = \"60s\"");
    let dir = setup(&text, "0\n");
    let run = Running::start_in(dir.path(), &["run", "plan.toml"]);
    run.wait_for_line("rollout approve shop");
    let (code, _, stderr) = rollout(dir.path(), &["resume", "plan.toml"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "cannot be resumed: it is waiting for approval at 10% in stage 1 of 3, driven by `rollout run` (pid {} on ",
            run.pid()
        )),
        "{stderr}"
    );
    let (code, _, stderr) = rollout(dir.path(), &["approve", "shop", "--reject"]);
    assert_eq!(code, 0, "{stderr}");
    let (code, stderr, _) = run.finish();
    assert_eq!(code, 3, "{stderr}");
}

/// The state of a process from `/proc`, `None` once it is gone; a zombie is as good as gone.
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit(')').next().map(|rest| rest.trim().to_string()))
        .is_some_and(|rest| !rest.starts_with('Z'))
}

/// Every live process whose process group is `pgid`.
fn group_members(pgid: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| {
                    let rest = s.rsplit(')').next()?.to_string();
                    let fields: Vec<&str> = rest.split_whitespace().collect();
                    Some(fields.first()? != &"Z" && fields.get(2)?.parse::<u32>().ok()? == pgid)
                })
                .unwrap_or(false)
        })
        .collect()
}

/// A `set_weight` still running when its rollout is killed must not finish later and undo the
/// rollback: the child dies with its parent, and `rollout rollback` stops what it left behind
/// (a background grandchild here) before it acts.
#[test]
fn a_backend_command_does_not_outlive_its_rollout() {
    let slow = r#"set_weight = ["sh", "-c", "echo $$ > set-weight.pid; (sleep 2; echo $ROLLOUT_WEIGHT >> weights) & wait"]"#;
    let text = plan("", LATER_STAGES).replace(
        r#"set_weight = ["sh", "-c", "echo $ROLLOUT_WEIGHT >> weights"]"#,
        slow,
    );
    let dir = setup(&text, "0\n");
    let run = Running::start_in(dir.path(), &["run", "plan.toml"]);
    let pid_file = dir.path().join("set-weight.pid");
    let read_pid = || {
        std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|t| t.trim().parse::<u32>().ok())
    };
    assert!(
        wait_until(std::time::Duration::from_secs(20), || read_pid().is_some()),
        "set_weight never started"
    );
    let child = read_pid().unwrap();
    // The journal names the running command's group before rollout is killed.
    assert!(
        wait_until(std::time::Duration::from_secs(5), || {
            std::fs::read_to_string(dir.path().join(".rollout/shop/journal.json"))
                .is_ok_and(|j| j.contains(&format!("\"pgid\": {child}")))
        }),
        "the journal never recorded the child"
    );
    run.signal(libc::SIGKILL);
    let _ = run.finish_killed();
    assert!(
        wait_until(std::time::Duration::from_secs(5), || !alive(child)),
        "the set_weight command outlived its rollout"
    );
    assert!(
        !group_members(child).is_empty(),
        "its background grandchild is still there for the rollback to stop"
    );

    let (code, _, stderr) = rollout(dir.path(), &["rollback", "plan.toml"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "note: stopped process group {child} (set_weight), which the earlier `rollout`"
        )),
        "{stderr}"
    );
    assert_eq!(group_members(child), Vec::<u32>::new());
    assert_eq!(
        weights(dir.path()),
        "0\n",
        "only the rollback's weight was ever set"
    );
}

/// A hook that prints its environment, a secret included, fails: the secret is in no output,
/// reason or journal.
#[test]
fn what_a_failing_hook_prints_is_redacted() {
    let secret = "s3cr3t-token-4f9a";
    let hook = r#"[[stages.hooks]]
run = ["sh", "-c", "echo the token is $API_TOKEN >&2; exit 1"]"#;
    let text = plan(hook, LATER_STAGES).replace(
        "[sources.canary]\ntype = \"command\"",
        "[sources.canary]\ntype = \"command\"\n\n[sources.api]\ntype = \"http-json\"\nurl = \"http://127.0.0.1:9/stats\"\nheaders = { Authorization = \"Bearer ${API_TOKEN}\" }",
    );
    let dir = setup(&text, "0\n");
    let output = Command::new(rollout_bin())
        .args(["run", "plan.toml", "--output", "json"])
        .current_dir(dir.path())
        .env("API_TOKEN", secret)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert!(stdout.contains("the token is [redacted]"), "{stdout}");
    let journal = std::fs::read_to_string(dir.path().join(".rollout/shop/journal.json")).unwrap();
    for (what, text) in [
        ("stdout", &*stdout),
        ("stderr", &*stderr),
        ("journal", &*journal),
    ] {
        assert!(!text.contains(secret), "the secret is in {what}:\n{text}");
    }
}
