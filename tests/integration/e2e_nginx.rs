//! End to end: the built `rollout` drives a real nginx in front of two real services, gated by
//! a real Prometheus (or the services' own JSON stats), and afterwards real requests through
//! nginx show where traffic went.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::harness::effects;
use crate::lab::{Lab, wait_until};
pub use crate::running::Running;

pub fn toml_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|i| format!("{i:?}")).collect();
    format!("[{}]", quoted.join(", "))
}

/// The canary's share of 5xx over the last few seconds, straight from the services' counters.
const ERROR_RATE: &str = r#"sum(rate(http_requests_total{track="canary",code="500"}[5s])) / sum(rate(http_requests_total{track="canary"}[5s]))"#;

pub struct PlanOptions {
    pub defaults: String,
    pub test_command: Option<Vec<String>>,
    pub reload_command: Option<Vec<String>>,
    pub source: Source,
    pub stages: &'static str,
    /// More of `[backend]`: `location_file`, `[backend.segments.NAME]` tables.
    pub backend_extra: String,
}

/// A gate that always passes, read from a file the test controls (`error-rate` in `dir`).
pub fn passing_gate(dir: &Path) -> Source {
    let path = dir.join("error-rate");
    std::fs::write(&path, "0\n").unwrap();
    Source::File(path)
}

pub enum Source {
    Prometheus,
    HttpJson,
    /// A command source whose metric prints the contents of this file.
    File(std::path::PathBuf),
}

const THREE_STAGES: &str =
    "[[stages]]\nweight = 20\n\n[[stages]]\nweight = 50\n\n[[stages]]\nweight = 100\n";

impl Default for PlanOptions {
    fn default() -> Self {
        PlanOptions {
            defaults: "bake = \"3s\"\ninterval = \"1s\"\nmax_hold = \"15s\"".into(),
            test_command: None,
            reload_command: None,
            source: Source::Prometheus,
            stages: THREE_STAGES,
            backend_extra: String::new(),
        }
    }
}

/// A canary through the lab's nginx; by default three stages, 20% → 50% → 100%.
pub fn plan(lab: &Lab, options: PlanOptions) -> String {
    let (source, metric) = match options.source {
        Source::Prometheus => (
            format!(
                "type = \"prometheus\"\nurl = \"{}\"\ntimeout = \"2s\"",
                lab.prometheus_url()
            ),
            format!("query = '{ERROR_RATE}'"),
        ),
        Source::HttpJson => (
            format!(
                "type = \"http-json\"\nurl = \"http://{}/stats\"\ntimeout = \"2s\"",
                lab.canary_addr()
            ),
            "path = \"/error_rate\"".to_string(),
        ),
        Source::File(path) => (
            "type = \"command\"\ntimeout = \"2s\"".to_string(),
            format!("run = [\"cat\", \"{}\"]", path.display()),
        ),
    };
    format!(
        r#"
name = "e2e"

[defaults]
{defaults}

[backend]
type = "nginx"
upstream_file = "{upstream}"
upstream = "app"
stable = ["{stable}"]
canary = ["{canary}"]
test_command = {test}
reload_command = {reload}
pid_file = "{pid}"
command_timeout = "3s"
{backend_extra}

[sources.lab]
{source}

[[metrics]]
name = "error-rate"
source = "lab"
{metric}
advance = "< 5%"
rollback = "> 10%"

{stages}"#,
        defaults = options.defaults,
        upstream = lab.upstream_file().display(),
        stable = lab.stable_addr(),
        canary = lab.canary_addr(),
        test = toml_list(
            &options
                .test_command
                .unwrap_or_else(|| lab.nginx_test_command())
        ),
        reload = toml_list(
            &options
                .reload_command
                .unwrap_or_else(|| lab.nginx_reload_command())
        ),
        pid = lab.dir().join("nginx.pid").display(),
        stages = options.stages,
        backend_extra = options.backend_extra,
    )
}

pub fn upstream(lab: &Lab) -> String {
    std::fs::read_to_string(lab.upstream_file()).unwrap()
}

/// After a reload the old worker serves for a moment; wait until only one generation is left
/// so that what requests see is the new configuration.
pub fn settle(lab: &Lab) {
    assert!(
        wait_until(Duration::from_secs(10), || lab.nginx_worker_pids().len()
            == 1),
        "nginx kept several worker generations:\n{}",
        lab.logs()
    );
}

pub fn nginx_accepts_the_config(lab: &Lab) {
    let argv = lab.nginx_test_command();
    let output = Command::new(&argv[0]).args(&argv[1..]).output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

pub fn assert_only_stable(lab: &Lab) {
    settle(lab);
    assert_eq!(
        lab.send_requests(20),
        (20, 0),
        "requests must reach only stable:\n{}",
        upstream(lab)
    );
    assert!(
        !upstream(lab).contains(&lab.canary_addr()),
        "{}",
        upstream(lab)
    );
    nginx_accepts_the_config(lab);
}

#[test]
fn a_healthy_canary_reaches_100_percent() {
    let lab = Lab::start();
    let _traffic = lab.start_traffic();
    let run = Running::start(&plan(&lab, PlanOptions::default()), &[]);
    let (code, stderr, _) = run.finish();
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("PROMOTED: Every stage passed its gates"),
        "{stderr}"
    );
    for stage in [
        "stage 1 passed at 20%",
        "stage 2 passed at 50%",
        "stage 3 passed at 100%",
    ] {
        assert!(stderr.contains(stage), "{stage}: {stderr}");
    }
    settle(&lab);
    assert_eq!(
        lab.send_requests(20),
        (0, 20),
        "all traffic on the new version"
    );
    assert!(!upstream(&lab).contains(&lab.stable_addr()));
}

#[test]
fn a_canary_returning_5xx_is_rolled_back_by_the_promql_gate() {
    let lab = Lab::start();
    let _traffic = lab.start_traffic();
    lab.set_canary_failure(1.0);
    let run = Running::start(&plan(&lab, PlanOptions::default()), &[]);
    let (code, stderr, _) = run.finish();
    assert_eq!(code, 3, "{stderr}");
    assert!(
        stderr.contains("ROLLED BACK: Rolled back to the stable version because metric error-rate was 100% (rollback when > 10%) in stage 1 at 20%."),
        "{stderr}"
    );
    assert!(!stderr.contains("stage 2/3"), "it never advanced: {stderr}");
    assert_only_stable(&lab);
}

#[test]
fn a_canary_returning_5xx_is_rolled_back_by_the_http_json_gate() {
    let lab = Lab::start();
    let _traffic = lab.start_traffic();
    let options = PlanOptions {
        source: Source::HttpJson,
        ..PlanOptions::default()
    };
    let run = Running::start(&plan(&lab, options), &["--report", "evidence.json"]);
    // Healthy at first; it goes bad during the second stage.
    run.wait_for_line("stage 2: baking");
    lab.set_canary_failure(0.5);
    let (code, stderr, _) = run.finish();
    assert_eq!(code, 3, "{stderr}");
    assert!(
        stderr.contains("because metric error-rate was "),
        "{stderr}"
    );
    assert!(stderr.contains("in stage 2 at 50%"), "{stderr}");
    assert_only_stable(&lab);
}

/// Prometheus dies mid-bake: the rollout holds at its weight, never advances, and when
/// max_hold runs out does what on_timeout says.
#[test]
fn a_dead_prometheus_holds_the_rollout_until_max_hold() {
    for (on_timeout, expected_code) in [("rollback", 3), ("pause", 4)] {
        let lab = Lab::start();
        let _traffic = lab.start_traffic();
        let defaults = format!(
            "bake = \"3s\"\ninterval = \"1s\"\nmax_hold = \"4s\"\non_timeout = \"{on_timeout}\""
        );
        let run = Running::start(
            &plan(
                &lab,
                PlanOptions {
                    defaults,
                    ..PlanOptions::default()
                },
            ),
            &[],
        );
        run.wait_for_line("stage 1: baking");
        lab.kill_prometheus();
        let (code, stderr, _) = run.finish();
        assert_eq!(code, expected_code, "on_timeout = {on_timeout}: {stderr}");
        assert!(
            !stderr.contains("stage 2/3"),
            "it advanced without evidence: {stderr}"
        );
        assert!(
            stderr.contains("error-rate has no value"),
            "errors are reported: {stderr}"
        );
        assert!(
            stderr.contains("could not pass within max_hold"),
            "{stderr}"
        );
        if on_timeout == "rollback" {
            assert_only_stable(&lab);
        } else {
            // Paused: traffic deliberately left at the stage's weight.
            assert!(
                stderr.contains("PAUSED: Paused at 20% in stage 1"),
                "{stderr}"
            );
            assert!(
                upstream(&lab).contains(&lab.canary_addr()),
                "{}",
                upstream(&lab)
            );
            assert!(
                upstream(&lab).contains("Stage 1: 20%"),
                "{}",
                upstream(&lab)
            );
        }
    }
}

#[test]
fn sigterm_mid_bake_does_what_on_interrupt_says() {
    for (on_interrupt, expected_code) in [("rollback", 3), ("pause", 4)] {
        let lab = Lab::start();
        let _traffic = lab.start_traffic();
        let defaults =
            format!("bake = \"30s\"\ninterval = \"1s\"\non_interrupt = \"{on_interrupt}\"");
        let run = Running::start(
            &plan(
                &lab,
                PlanOptions {
                    defaults,
                    ..PlanOptions::default()
                },
            ),
            &[],
        );
        run.wait_for_line("stage 1: baking");
        run.signal(libc::SIGTERM);
        let (code, stderr, _) = run.finish();
        assert_eq!(
            code, expected_code,
            "on_interrupt = {on_interrupt}: {stderr}"
        );
        assert!(stderr.contains("received SIGTERM"), "{stderr}");
        if on_interrupt == "rollback" {
            assert!(stderr.contains("interrupted by SIGTERM"), "{stderr}");
            assert_only_stable(&lab);
        } else {
            assert!(
                upstream(&lab).contains("Stage 1: 20%"),
                "{}",
                upstream(&lab)
            );
        }
    }
}

/// nginx's test rejects the file of stage 2: the previous file goes back in place before
/// anything is reloaded, traffic returns to stable, and the run exits 1.
#[test]
fn a_failing_config_test_restores_the_previous_file_and_exits_1() {
    let lab = Lab::start();
    let _traffic = lab.start_traffic();
    let real_test = lab.nginx_test_command().join(" ");
    // A stand-in for nginx rejecting one particular file: the 50% stage's.
    let test = vec![
        "sh".to_string(),
        "-c".to_string(),
        format!(
            "if grep -q 'Stage 2: 50%' '{}'; then echo 'nginx: [emerg] rejected for the test' >&2; exit 1; fi; exec {real_test}",
            lab.upstream_file().display()
        ),
    ];
    let options = PlanOptions {
        test_command: Some(test),
        ..PlanOptions::default()
    };
    let run = Running::start(&plan(&lab, options), &["--output", "json"]);
    let (code, stderr, stdout) = run.finish();
    assert_eq!(code, 1, "{stderr}\n{stdout}");
    let events: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let writes: Vec<&str> = events
        .iter()
        .filter(|e| e["event"] == "action" && e["kind"] == "write")
        .map(|e| e["contents"].as_str().unwrap())
        .collect();
    assert_eq!(
        writes.len(),
        4,
        "stage 1, stage 2, the restore, the rollback: {writes:#?}"
    );
    assert!(writes[1].contains("Stage 2: 50%"));
    assert_eq!(writes[2], writes[0], "the previous file was put back");
    let finished = events.last().unwrap();
    assert_eq!(finished["kind"], "failed");
    let reason = finished["reason"].as_str().unwrap();
    assert!(reason.contains("nginx config test failed"), "{reason}");
    assert!(reason.contains("rejected for the test"), "{reason}");
    assert!(
        reason.contains("Traffic was returned to the stable version"),
        "{reason}"
    );
    assert_only_stable(&lab);
}

/// `nginx -s reload` exits 0 whether or not nginx applies the file; a reload that never takes
/// effect is caught by waiting for new worker processes, and reported as unknown traffic.
#[test]
fn a_reload_that_never_takes_effect_is_not_trusted() {
    let lab = Lab::start();
    let options = PlanOptions {
        reload_command: Some(vec!["true".to_string()]),
        ..PlanOptions::default()
    };
    let text = plan(&lab, options).replace("command_timeout = \"3s\"", "command_timeout = \"1s\"");
    let run = Running::start(&text, &[]);
    let (code, stderr, _) = run.finish();
    assert_eq!(code, 5, "{stderr}");
    assert!(
        stderr.contains("started no new worker processes"),
        "{stderr}"
    );
    assert!(stderr.contains("ROLLBACK FAILED"), "{stderr}");
    // Nothing was ever applied: nginx still serves the lab's original stable-only upstream.
    assert_eq!(lab.send_requests(10), (10, 0));
}

/// A dry run prints the very commands and writes a real run makes against nginx, in order:
/// both files of a plan with segment and mirror stages.
#[test]
fn a_dry_run_shows_the_effects_of_a_real_run_in_order() {
    let lab = Lab::start();
    let dir = tempfile::tempdir().unwrap();
    let options = PlanOptions {
        defaults: "bake = \"600ms\"\ninterval = \"200ms\"".into(),
        source: passing_gate(dir.path()),
        stages: "[[stages]]\nweight = 0\nsegments = [\"beta\"]\n\n[[stages]]\nweight = 0\nmirror = 30\n\n\
                 [[stages]]\nweight = 20\n\n[[stages]]\nweight = 100\n",
        backend_extra: format!(
            "location_file = \"{}\"\n\n[backend.segments.beta]\nheader = \"X-Beta\"\n",
            lab.location_file().display()
        ),
        ..PlanOptions::default()
    };
    std::fs::write(dir.path().join("plan.toml"), plan(&lab, options)).unwrap();
    let run = |extra: &[&str]| {
        let output = Command::new(crate::harness::rollout_bin())
            .args(["run", "plan.toml", "--output", "json"])
            .args(extra)
            .current_dir(dir.path())
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        assert_eq!(
            output.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        effects(&String::from_utf8_lossy(&output.stdout))
    };
    let before = (upstream(&lab), std::fs::read(lab.location_file()).unwrap());
    let dry = run(&["--dry-run"]);
    let after = (upstream(&lab), std::fs::read(lab.location_file()).unwrap());
    assert_eq!(after, before, "a dry run touched nginx");
    let real = run(&[]);
    let location = format!("write {:?}", lab.location_file().display().to_string());
    assert_eq!(
        dry.iter().filter(|e| **e == location).count(),
        5,
        "{dry:#?}"
    );
    assert!(dry.len() >= 20, "{dry:#?}");
    assert_eq!(dry, real);
}
