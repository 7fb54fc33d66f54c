//! A rollout outlives its process: journal, lock, status, resume, rollback and approve, on
//! the real nginx lab.

use std::path::Path;
use std::process::Command;

use crate::e2e_nginx::{
    PlanOptions, Running, Source, assert_only_stable, nginx_accepts_the_config, passing_gate, plan,
    settle, upstream,
};
use crate::harness::rollout_bin;
use crate::lab::Lab;

/// Runs `rollout ARGS` in `dir` to completion: (exit code, stdout, stderr).
fn rollout(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let output = Command::new(rollout_bin())
        .args(args)
        .current_dir(dir)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run rollout");
    (
        output.status.code().expect("exited"),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn status_json(dir: &Path, name: &str) -> serde_json::Value {
    let (code, stdout, stderr) = rollout(dir, &["status", name, "--output", "json"]);
    assert_eq!(code, 0, "{stderr}");
    serde_json::from_str(&stdout).unwrap()
}

/// The weight the upstream file on disk sends to the new version, from its header comment.
fn weight_on_disk(lab: &Lab) -> f64 {
    let text = upstream(lab);
    let Some(line) = text.lines().find(|l| l.starts_with("# Stage ")) else {
        // The lab's own initial file: stable only.
        return 0.0;
    };
    let after = line.split(": ").nth(1).unwrap();
    after.split('%').next().unwrap().parse().unwrap()
}

/// Where `status` says traffic may be, as weights.
fn possible_weights(status: &serde_json::Value) -> Vec<f64> {
    let journal = &status["journal"];
    match journal["pending"]["action"].as_str() {
        Some("set-weight") => vec![
            journal["pending"]["from"].as_f64().unwrap(),
            journal["pending"]["weight"].as_f64().unwrap(),
        ],
        // A rollback under way rewrites to 0; before that the file still holds the last weight.
        Some("rollback") => vec![journal["weight"].as_f64().unwrap(), 0.0],
        _ => vec![journal["weight"].as_f64().unwrap()],
    }
}

/// `kill -9` at twenty moments of a run, the slow steps (config test, reload) widened so that
/// kills land inside them too. After each: `status` tells the truth about the file on disk, and
/// `rollback` (even trials) or `resume` (odd trials) ends with a consistent upstream that nginx
/// accepts and a finished rollout.
#[test]
fn kill_9_at_twenty_moments_then_status_rollback_and_resume_finish_the_job() {
    let lab = Lab::start();
    let slow = |argv: Vec<String>| {
        vec![
            "sh".to_string(),
            "-c".to_string(),
            format!("sleep 0.15; exec {}", argv.join(" ")),
        ]
    };
    let (mut interrupted, mut mid_change) = (0, 0);
    for trial in 0..20u64 {
        let dir = tempfile::tempdir().unwrap();
        let options = PlanOptions {
            defaults: "bake = \"600ms\"\ninterval = \"200ms\"".into(),
            test_command: Some(slow(lab.nginx_test_command())),
            reload_command: Some(slow(lab.nginx_reload_command())),
            source: passing_gate(dir.path()),
            ..PlanOptions::default()
        };
        std::fs::write(dir.path().join("plan.toml"), plan(&lab, options)).unwrap();
        // Verbose: every command and write is announced before it runs, so the kills land at
        // twenty successive points of the run, several of them mid-change.
        let run = Running::start_in(dir.path(), &["run", "plan.toml", "--verbose"]);
        // Counted from the run's first event (the plan's warnings come before it).
        run.wait_for_line("rollout e2e:");
        let started = run.line_count();
        run.wait_for_lines(started + trial as usize * 2);
        run.signal(libc::SIGKILL);
        let (code, stderr, _) = run.finish_killed();
        let status = status_json(dir.path(), "e2e");
        let state = status["state"].as_str().unwrap().to_string();
        let on_disk = weight_on_disk(&lab);
        match state.as_str() {
            "interrupted" => {
                let possible = possible_weights(&status);
                assert!(
                    possible.contains(&on_disk),
                    "trial {trial}: the file says {on_disk}% but status says {possible:?}: {status:#}\n{stderr}"
                );
                assert!(!status["running"].as_bool().unwrap());
                interrupted += 1;
                mid_change += usize::from(possible.len() == 2);
            }
            "promoted" => assert_eq!(on_disk, 100.0, "trial {trial}"),
            other => panic!("trial {trial}: unexpected state {other} (exit {code:?}): {status:#}"),
        }
        let (command, expected_weight) = if trial % 2 == 0 || state == "promoted" {
            ("rollback", 0.0)
        } else {
            ("resume", 100.0)
        };
        let (code, _, stderr) = rollout(dir.path(), &[command, "plan.toml"]);
        assert_eq!(
            code, 0,
            "trial {trial}: `rollout {command}` after kill -9 in state {state}:\n{stderr}"
        );
        assert_eq!(weight_on_disk(&lab), expected_weight, "trial {trial}");
        nginx_accepts_the_config(&lab);
        let finished = status_json(dir.path(), "e2e");
        let want = if command == "rollback" {
            "rolled back"
        } else {
            "promoted"
        };
        assert_eq!(finished["state"], want, "trial {trial}: {finished:#}");
        if command == "resume" {
            // The next trial starts from stable, as a real run would: a kill before its first
            // change must find nginx where the plan says the rollout starts.
            let (code, _, stderr) = rollout(dir.path(), &["rollback", "plan.toml"]);
            assert_eq!(code, 0, "trial {trial}: reset to stable: {stderr}");
        }
    }
    // The kills must really have landed mid-run, some in the middle of a weight change.
    assert!(
        interrupted >= 15,
        "only {interrupted} of 20 kills interrupted a run"
    );
    assert!(
        mid_change >= 3,
        "only {mid_change} kills landed during a weight change"
    );
    settle(&lab);
    assert_eq!(lab.send_requests(10), (10, 0), "the last trial rolled back");
}

#[test]
fn a_second_run_is_refused_and_a_stale_lock_is_taken_over() {
    let lab = Lab::start();
    let dir = tempfile::tempdir().unwrap();
    let options = PlanOptions {
        defaults: "bake = \"30s\"\ninterval = \"1s\"".into(),
        source: passing_gate(dir.path()),
        ..PlanOptions::default()
    };
    std::fs::write(dir.path().join("plan.toml"), plan(&lab, options)).unwrap();
    let first = Running::start_in(dir.path(), &["run", "plan.toml"]);
    first.wait_for_line("stage 1: baking");
    let (code, _, stderr) = rollout(dir.path(), &["run", "plan.toml"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("error: rollout `e2e` is already being driven by `rollout run` (pid "),
        "{stderr}"
    );
    let (code, _, stderr) = rollout(dir.path(), &["rollback", "plan.toml"]);
    assert_eq!(code, 1, "a rollback must not race a live run: {stderr}");
    // Killed without a chance to clean up: its lock and journal are left behind.
    first.signal(libc::SIGKILL);
    first.finish_killed();
    let (code, _, stderr) = rollout(dir.path(), &["rollback", "plan.toml", "-q"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("note: took over rollout `e2e` from `rollout run` (pid "),
        "{stderr}"
    );
    assert_only_stable(&lab);
}

/// A rollout paused in stage 1 at 20%: its gate reads gray (between advance < 5% and
/// rollback > 10%) until max_hold runs out. Returns the directory, the plan's text and the file
/// the gate reads.
fn paused_rollout(lab: &Lab) -> (tempfile::TempDir, String, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let gate_file = dir.path().join("error-rate");
    std::fs::write(&gate_file, "0.07\n").unwrap();
    let options = PlanOptions {
        defaults: "bake = \"1s\"\ninterval = \"200ms\"\nmax_hold = \"1s\"\non_timeout = \"pause\""
            .into(),
        source: Source::File(gate_file.clone()),
        ..PlanOptions::default()
    };
    let text = plan(lab, options);
    std::fs::write(dir.path().join("plan.toml"), &text).unwrap();
    let (code, _, stderr) = rollout(dir.path(), &["run", "plan.toml"]);
    assert_eq!(code, 4, "{stderr}");
    (dir, text, gate_file)
}

/// Another state folder (another machine) knows nothing of the paused rollout: the rollback
/// works from the plan alone, writes the stable-only upstream, and confirms the reload.
#[test]
fn a_rollback_without_the_journal_returns_nginx_to_stable() {
    let lab = Lab::start();
    let (dir, _, _) = paused_rollout(&lab);
    assert!(upstream(&lab).contains(&lab.canary_addr()), "paused at 20%");
    let (code, _, stderr) = rollout(
        dir.path(),
        &["rollback", "plan.toml", "--state-dir", "elsewhere"],
    );
    assert_eq!(code, 0, "{stderr}");
    assert_only_stable(&lab);
}

#[test]
fn resume_is_refused_when_the_plan_changed_unless_forced() {
    let lab = Lab::start();
    let (dir, text, gate_file) = paused_rollout(&lab);
    std::fs::write(dir.path().join("plan.toml"), format!("# changed\n{text}")).unwrap();
    let (code, _, stderr) = rollout(dir.path(), &["resume", "plan.toml"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("error: plan.toml changed since rollout `e2e` started"),
        "{stderr}"
    );
    assert_eq!(weight_on_disk(&lab), 20.0, "nothing was touched");
    std::fs::write(&gate_file, "0\n").unwrap();
    let (code, _, stderr) = rollout(dir.path(), &["resume", "plan.toml", "--force", "-q"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(weight_on_disk(&lab), 100.0);
}

#[test]
fn approve_and_reject_from_a_second_process() {
    let lab = Lab::start();
    for (answer, expected_code, expected_weight) in [("approve", 0, 100.0), ("reject", 3, 0.0)] {
        let dir = tempfile::tempdir().unwrap();
        let options = PlanOptions {
            defaults: "bake = \"500ms\"\ninterval = \"100ms\"\nmax_hold = \"60s\"".into(),
            source: passing_gate(dir.path()),
            stages: "[[stages]]\nweight = 50\napproval = true\n\n[[stages]]\nweight = 100\n",
            ..PlanOptions::default()
        };
        std::fs::write(dir.path().join("plan.toml"), plan(&lab, options)).unwrap();
        let run = Running::start_in(dir.path(), &["run", "plan.toml"]);
        run.wait_for_line("stage 1: waiting for approval: run `rollout approve e2e`");
        assert_eq!(
            status_json(dir.path(), "e2e")["state"],
            "waiting for approval"
        );
        let mut args = vec!["approve", "e2e", "--by", "alice"];
        if answer == "reject" {
            args.push("--reject");
        }
        let (code, _, stderr) = rollout(dir.path(), &args);
        assert_eq!(code, 0, "{stderr}");
        let (code, stderr, _) = run.finish();
        assert_eq!(code, expected_code, "{answer}: {stderr}");
        assert_eq!(weight_on_disk(&lab), expected_weight, "{answer}");
        if answer == "approve" {
            assert!(stderr.contains("stage 1: approved by alice"), "{stderr}");
        } else {
            assert!(
                stderr.contains("because alice refused to approve stage 1 (50%)"),
                "{stderr}"
            );
        }
    }
}

/// `status` of a paused rollout, exactly (times and temporary paths normalized).
#[test]
fn status_of_a_paused_rollout() {
    let lab = Lab::start();
    let (dir, _, _) = paused_rollout(&lab);
    let (code, stdout, _) = rollout(dir.path(), &["status", "e2e"]);
    assert_eq!(code, 0);
    let shown = normalize(&stdout, dir.path());
    // How many readings the stage took depends on timing: the latest ones are checked apart.
    let (shown, latest) = match shown.split_once("; latest in the stage: ") {
        Some((head, rest)) => {
            let (latest, tail) = rest.split_once('\n').unwrap();
            (format!("{head}\n{tail}"), latest.to_string())
        }
        None => (shown.clone(), "7% gray".to_string()),
    };
    let latest: Vec<&str> = latest.split(", ").collect();
    assert!(
        (1..=5).contains(&latest.len()) && latest.iter().all(|m| *m == "7% gray"),
        "{latest:?}"
    );
    assert_eq!(
        shown,
        "\
e2e: paused at 20% in stage 1 of 3 (since TIME)
  traffic  20% on the new version
  reason   Paused at 20% in stage 1: stage 1 at 20% could not pass within max_hold (1s after its bake): error-rate: the latest measurement is gray. Run `rollout resume` or `rollout rollback` to continue.
  metrics  error-rate = 7%: gray (stage 1, TIME)
  plan     DIR/plan.toml
  next     `rollout resume DIR/plan.toml` continues from stage 1, or `rollout rollback DIR/plan.toml` returns all traffic to stable
"
    );
    // The same from the plan file, and the journal agrees with the file on disk.
    let (_, by_plan, _) = rollout(dir.path(), &["status", "plan.toml"]);
    assert_eq!(by_plan, stdout);
    assert_eq!(weight_on_disk(&lab), 20.0);
}

/// A second SIGINT while the interrupt's rollback runs does not abandon it; a third does, and
/// the journal says a rollback was under way so that `rollout rollback` can finish it.
#[test]
fn repeated_interrupts_during_a_rollback() {
    let lab = Lab::start();
    // Reloads take a while, so that the rollback is still running when the signals arrive.
    let slow_reload = vec![
        "sh".to_string(),
        "-c".to_string(),
        format!("sleep 1.5; exec {}", lab.nginx_reload_command().join(" ")),
    ];
    for signals in [2, 3] {
        let dir = tempfile::tempdir().unwrap();
        let options = PlanOptions {
            defaults: "bake = \"60s\"\ninterval = \"1s\"".into(),
            reload_command: Some(slow_reload.clone()),
            source: passing_gate(dir.path()),
            ..PlanOptions::default()
        };
        std::fs::write(dir.path().join("plan.toml"), plan(&lab, options)).unwrap();
        let run = Running::start_in(dir.path(), &["run", "plan.toml"]);
        let pid = run.pid();
        run.wait_for_line("stage 1: baking");
        run.signal(libc::SIGINT);
        run.wait_for_line("rolling back: the run was interrupted by SIGINT");
        if signals >= 2 {
            run.signal(libc::SIGINT);
            run.wait_for_line("SIGINT again: the run is finishing");
        }
        if signals >= 3 {
            run.signal(libc::SIGINT);
        }
        let (code, stderr, _) = run.finish();
        if signals == 2 {
            assert_eq!(code, 3, "{stderr}");
            assert!(
                stderr.contains("SIGINT again: the run is finishing"),
                "{stderr}"
            );
            assert_only_stable(&lab);
        } else {
            assert_eq!(code, 5, "{stderr}");
            assert!(stderr.contains("abandoned by a third SIGINT"), "{stderr}");
            let status = status_json(dir.path(), "e2e");
            assert_eq!(status["state"], "interrupted", "{status:#}");
            // The process that stopped is named, not "pid ?".
            assert_eq!(status["journal"]["pid"], pid, "{status:#}");
            let (_, human, _) = rollout(dir.path(), &["status", "e2e"]);
            assert!(
                human.contains(&format!("`rollout` (pid {pid}) stopped without finishing")),
                "{human}"
            );
            assert_eq!(
                status["journal"]["pending"]["action"], "rollback",
                "{status:#}"
            );
            assert!(
                status["traffic"]
                    .as_str()
                    .unwrap()
                    .contains("a rollback was under way")
            );
            let (code, _, stderr) = rollout(dir.path(), &["rollback", "plan.toml", "-q"]);
            assert_eq!(code, 0, "{stderr}");
            assert_only_stable(&lab);
        }
    }
}

/// Times and the temporary directory vary from run to run; the rest must not.
fn normalize(text: &str, dir: &Path) -> String {
    let dir = std::fs::canonicalize(dir).unwrap();
    let mut out = text.replace(&dir.display().to_string(), "DIR");
    out = out.replace(&dir.display().to_string().replace("/private", ""), "DIR");
    let mut result = String::new();
    let mut rest = out.as_str();
    // RFC 3339 stamps: 2026-11-22T00:23:56Z
    while let Some(i) = rest.find(|c: char| c.is_ascii_digit()) {
        let candidate = &rest[i..];
        let is_stamp = candidate.len() >= 20
            && candidate.as_bytes()[4] == b'-'
            && candidate.as_bytes()[10] == b'T'
            && candidate.as_bytes()[19] == b'Z';
        if is_stamp {
            result.push_str(&rest[..i]);
            result.push_str("TIME");
            rest = &candidate[20..];
        } else {
            result.push_str(&rest[..=i]);
            rest = &rest[i + 1..];
        }
    }
    result.push_str(rest);
    result
}

/// `rollout rollback` says 5 when it could not confirm traffic is back on stable: here nginx
/// never applies a reload (the reload command does nothing), so no new workers ever appear.
#[test]
fn a_rollback_that_cannot_be_confirmed_exits_5() {
    let lab = Lab::start();
    let dir = tempfile::tempdir().unwrap();
    let options = PlanOptions {
        reload_command: Some(vec!["true".to_string()]),
        source: passing_gate(dir.path()),
        ..PlanOptions::default()
    };
    let text = plan(&lab, options).replace("command_timeout = \"3s\"", "command_timeout = \"1s\"");
    std::fs::write(dir.path().join("plan.toml"), text).unwrap();
    let (code, _, stderr) = rollout(dir.path(), &["rollback", "plan.toml"]);
    assert_eq!(code, 5, "{stderr}");
    assert!(stderr.contains("ROLLBACK FAILED"), "{stderr}");
    let status = status_json(dir.path(), "e2e");
    assert_eq!(status["state"], "rollback failed", "{status:#}");
    assert!(
        status["next"]
            .as_str()
            .unwrap()
            .contains("a person must check the backend")
    );
}
