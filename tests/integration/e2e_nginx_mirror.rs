//! End to end: mirrored (shadow) traffic and segments through the lab's real nginx, with the
//! backend's second file (`location_file`, included in the lab's `location /`). Copies are
//! counted where they arrive, in the canary service; what clients get is read from every
//! answer's body.

use std::path::Path;
use std::process::Command;

use crate::e2e_nginx::{
    PlanOptions, nginx_accepts_the_config, passing_gate, plan, settle, upstream,
};
use crate::harness::rollout_bin;
use crate::lab::Lab;
use crate::running::Running;

/// `[backend]` lines for the lab's location file and two segments: a header with any value,
/// and a cookie with a value.
fn with_location(lab: &Lab) -> String {
    format!(
        "location_file = \"{}\"\n\n[backend.segments.beta]\nheader = \"X-Beta\"\n\n\
         [backend.segments.ios]\ncookie = \"platform\"\nvalue = \"ios 17\"\n",
        lab.location_file().display()
    )
}

fn location(lab: &Lab) -> String {
    std::fs::read_to_string(lab.location_file()).unwrap()
}

fn approve(dir: &Path) {
    let output = Command::new(rollout_bin())
        .args(["approve", "e2e"])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// What the canary service has answered since its last reset, by method.
fn canary_by_method(lab: &Lab, method: &str) -> u64 {
    let (_, body) = crate::lab::http_get(&lab.canary_addr(), "/control/count").unwrap();
    let counts: serde_json::Value = serde_json::from_str(&body).unwrap();
    counts["by_method"][method].as_u64().unwrap_or(0)
}

fn reset_canary(lab: &Lab) {
    let (status, _) = crate::lab::http_post(&lab.canary_addr(), "/control/reset").unwrap();
    assert_eq!(status, 200);
}

/// A client on one kept-alive connection, as browsers and most services keep theirs.
struct Client {
    http: reqwest::blocking::Client,
    url: String,
}

impl Client {
    fn new(lab: &Lab) -> Client {
        Client {
            http: reqwest::blocking::Client::builder()
                .timeout(std::time::Duration::from_secs(5))
                .pool_max_idle_per_host(1)
                .build()
                .unwrap(),
            url: format!("{}/", lab.nginx_url()),
        }
    }

    /// Sends `n` requests and says which version answered each, by the body: `(stable,
    /// canary)`. Anything else (a 5xx, no answer) fails the test.
    fn send(
        &self,
        lab: &Lab,
        n: usize,
        method: &str,
        header: Option<(&str, &str)>,
    ) -> (usize, usize) {
        let (mut stable, mut canary) = (0, 0);
        for _ in 0..n {
            let mut request = self.http.request(method.parse().unwrap(), &self.url);
            if let Some((name, value)) = header {
                request = request.header(name, value);
            }
            let response = request.send().unwrap();
            let status = response.status().as_u16();
            let body = response.text().unwrap();
            match body.trim_end() {
                _ if status >= 500 => panic!("a client got HTTP {status}: {body}{}", lab.logs()),
                v if v == lab.stable_version() => stable += 1,
                v if v == lab.canary_version() => canary += 1,
                other if method == "HEAD" && other.is_empty() => stable += 1,
                other => panic!("neither version answered: HTTP {status} {other}"),
            }
        }
        (stable, canary)
    }

    /// nginx reads the next request of a kept-alive connection only once the mirror copies
    /// of the previous one are done: after this POST's answer (POST is not mirrored), every
    /// copy of the requests before it has reached the canary.
    fn drain(&self, lab: &Lab) {
        self.send(lab, 1, "POST", None);
    }
}

/// P% of GET requests reach the canary as copies (counted there), every client answer comes
/// from stable, POSTs are not copied, and the location file is plain again after promotion.
#[test]
fn a_mirror_stage_copies_its_share_to_the_canary_and_clients_see_only_stable() {
    let lab = Lab::start();
    let dir = tempfile::tempdir().unwrap();
    let options = PlanOptions {
        defaults: "bake = \"1s\"\ninterval = \"200ms\"".into(),
        source: passing_gate(dir.path()),
        stages: "[[stages]]\nweight = 0\nmirror = 40\napproval = true\n\n[[stages]]\nweight = 100\n",
        backend_extra: with_location(&lab),
        ..PlanOptions::default()
    };
    std::fs::write(dir.path().join("plan.toml"), plan(&lab, options)).unwrap();
    let run = Running::start_in(dir.path(), &["run", "plan.toml"]);
    run.wait_for_line("stage 1: waiting for approval");
    assert!(
        run.stderr()
            .contains("stage 1: 40% of requests also copied to the new version"),
        "{}",
        run.stderr()
    );
    settle(&lab);
    nginx_accepts_the_config(&lab);
    let client = Client::new(&lab);
    reset_canary(&lab);
    const N: usize = 400;
    assert_eq!(
        client.send(&lab, N, "GET", None),
        (N, 0),
        "clients get stable answers only"
    );
    client.drain(&lab);
    let copies = canary_by_method(&lab, "GET");
    // Binomial(400, 0.4): mean 160, standard deviation 9.8; five of them either way.
    assert!(
        (111..=209).contains(&copies),
        "{copies} copies of {N} GETs at 40%\n{}",
        location(&lab)
    );
    assert_eq!(client.send(&lab, 100, "POST", None), (100, 0));
    client.drain(&lab);
    assert_eq!(canary_by_method(&lab, "POST"), 0, "POSTs are not mirrored");
    assert_eq!(canary_by_method(&lab, "GET"), copies);
    approve(dir.path());
    let (code, stderr, _) = run.finish();
    assert_eq!(code, 0, "{stderr}");
    assert!(!location(&lab).contains("mirror"), "{}", location(&lab));
}

/// The canary fails every copy it gets: its own error rate rolls the release back during the
/// mirror stage, and no client ever sees an error or the canary.
#[test]
fn a_canary_failing_every_mirrored_request_is_rolled_back_and_no_client_sees_an_error() {
    let lab = Lab::start();
    let traffic = lab.start_traffic();
    lab.set_canary_failure(1.0);
    let options = PlanOptions {
        defaults: "bake = \"20s\"\ninterval = \"1s\"\nmax_hold = \"30s\"".into(),
        stages: "[[stages]]\nweight = 0\nmirror = 100\n\n[[stages]]\nweight = 100\n",
        backend_extra: with_location(&lab),
        ..PlanOptions::default()
    };
    let run = Running::start(&plan(&lab, options), &[]);
    let (code, stderr, _) = run.finish();
    assert_eq!(code, 3, "{stderr}");
    assert!(
        stderr
            .contains("because metric error-rate was 100% (rollback when > 10%) in stage 1 at 0%"),
        "{stderr}"
    );
    let counts = traffic.counts();
    drop(traffic);
    assert!(counts.stable > 0, "{counts:?}");
    // The copies reached the canary, and it failed them.
    assert!(lab.canary_stats()["errors"].as_u64().unwrap() > 0);
    assert_eq!(
        (counts.canary, counts.other, counts.server_errors),
        (0, 0, 0),
        "{counts:?}"
    );
    assert!(!location(&lab).contains("mirror"), "{}", location(&lab));
    settle(&lab);
    assert_eq!(lab.send_requests(20), (20, 0));
}

/// Segments, then a mirror, then a weight, then everyone: at each stage requests go where it
/// says, and at the end the location file proxies plainly again.
#[test]
fn segment_then_mirror_then_ten_percent_then_full_ends_with_plain_proxying() {
    let lab = Lab::start();
    let dir = tempfile::tempdir().unwrap();
    let options = PlanOptions {
        defaults: "bake = \"1s\"\ninterval = \"200ms\"".into(),
        source: passing_gate(dir.path()),
        stages: "[[stages]]\nweight = 0\nsegments = [\"beta\", \"ios\"]\napproval = true\n\n\
                 [[stages]]\nweight = 0\nmirror = 50\napproval = true\n\n\
                 [[stages]]\nweight = 10\napproval = true\n\n\
                 [[stages]]\nweight = 100\n",
        backend_extra: with_location(&lab),
        ..PlanOptions::default()
    };
    std::fs::write(dir.path().join("plan.toml"), plan(&lab, options)).unwrap();
    let run = Running::start_in(dir.path(), &["run", "plan.toml"]);
    let client = Client::new(&lab);

    run.wait_for_line("stage 1: waiting for approval");
    settle(&lab);
    assert_eq!(
        client.send(&lab, 20, "GET", None),
        (20, 0),
        "no header: stable"
    );
    assert_eq!(
        client.send(&lab, 20, "GET", Some(("X-Beta", "1"))),
        (0, 20),
        "the header: canary"
    );
    assert_eq!(
        client.send(&lab, 10, "POST", Some(("X-Beta", "yes"))),
        (0, 10)
    );
    for (cookie, expected) in [
        ("a=b; platform=ios 17", (0, 5)),
        ("platform=ios 18", (5, 0)),
    ] {
        let answered = client.send(&lab, 5, "GET", Some(("Cookie", cookie)));
        assert_eq!(answered, expected, "{cookie}");
    }
    approve(dir.path());

    run.wait_for_line("stage 2: waiting for approval");
    settle(&lab);
    reset_canary(&lab);
    assert_eq!(client.send(&lab, 200, "GET", None), (200, 0));
    assert_eq!(
        client.send(&lab, 20, "GET", Some(("X-Beta", "1"))),
        (0, 20),
        "segments stay on"
    );
    client.drain(&lab);
    // The segment's 20 were answered by the canary, not copied to it as well.
    let copies = canary_by_method(&lab, "GET") - 20;
    assert!(
        (50..=150).contains(&copies),
        "{copies} copies of 200 GETs at 50%"
    );
    approve(dir.path());

    run.wait_for_line("stage 3: waiting for approval");
    settle(&lab);
    reset_canary(&lab);
    let (stable, canary) = client.send(&lab, 300, "GET", None);
    client.drain(&lab);
    assert!((5..=60).contains(&canary), "{canary} of 300 at 10%");
    assert_eq!(
        canary_by_method(&lab, "GET"),
        canary as u64,
        "no copies after the mirror stage"
    );
    assert_eq!(stable + canary, 300);
    assert_eq!(client.send(&lab, 10, "GET", Some(("X-Beta", "1"))), (0, 10));
    approve(dir.path());

    let (code, stderr, _) = run.finish();
    assert_eq!(code, 0, "{stderr}");
    let text = location(&lab);
    assert!(text.contains("location: plain proxying."), "{text}");
    assert!(!text.contains("mirror") && !text.contains("if ("), "{text}");
    settle(&lab);
    assert_eq!(lab.send_requests(10), (0, 10));
    nginx_accepts_the_config(&lab);
}

/// nginx's test refuses the pair of stage 2: both files go back to stage 1's, together, before
/// anything is reloaded, and the rollback leaves both stable.
#[test]
fn a_failing_config_test_restores_both_files() {
    let lab = Lab::start();
    let dir = tempfile::tempdir().unwrap();
    let real_test = lab.nginx_test_command().join(" ");
    let test = vec![
        "sh".to_string(),
        "-c".to_string(),
        format!(
            "if grep -q 'Stage 2 location: segments' '{}'; then echo 'nginx: [emerg] rejected for the test' >&2; exit 1; fi; exec {real_test}",
            lab.location_file().display()
        ),
    ];
    let options = PlanOptions {
        defaults: "bake = \"500ms\"\ninterval = \"100ms\"".into(),
        source: passing_gate(dir.path()),
        test_command: Some(test),
        stages: "[[stages]]\nweight = 0\nsegments = [\"beta\"]\n\n[[stages]]\nweight = 10\nsegments = [\"ios\"]\n\n[[stages]]\nweight = 100\n",
        backend_extra: with_location(&lab),
        ..PlanOptions::default()
    };
    let run = Running::start(&plan(&lab, options), &["--output", "json"]);
    let (code, stderr, stdout) = run.finish();
    assert_eq!(code, 1, "{stderr}\n{stdout}");
    let writes: Vec<(String, String)> = stdout
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| e["event"] == "action" && e["kind"] == "write")
        .map(|e| {
            (
                e["path"].as_str().unwrap().to_string(),
                e["contents"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let (up, loc) = (
        lab.upstream_file().display().to_string(),
        lab.location_file().display().to_string(),
    );
    let paths: Vec<&str> = writes.iter().map(|(p, _)| p.as_str()).collect();
    // Preflight's neutral location file; stage 1's pair; stage 2's pair; the restore,
    // location first; the rollback's pair.
    assert_eq!(
        paths,
        [&loc, &up, &loc, &up, &loc, &loc, &up, &up, &loc],
        "{stderr}"
    );
    assert!(writes[4].1.contains("Stage 2 location: segments beta, ios"));
    assert_eq!(
        writes[5].1, writes[2].1,
        "stage 1's location file was put back"
    );
    assert_eq!(
        writes[6].1, writes[1].1,
        "stage 1's upstream file was put back"
    );
    assert!(stderr.contains("rejected for the test"), "{stderr}");
    assert!(
        location(&lab).contains("plain proxying"),
        "{}",
        location(&lab)
    );
    assert!(!upstream(&lab).contains(&format!("server {} weight", lab.canary_addr())));
    settle(&lab);
    assert_eq!(lab.send_requests(10), (10, 0));
    let client = Client::new(&lab);
    assert_eq!(client.send(&lab, 5, "GET", Some(("X-Beta", "1"))), (5, 0));
}

/// A location file that does not exist, or that nginx does not include in the location: the
/// preflight check says what to do, and nothing is changed.
#[test]
fn the_preflight_check_says_what_the_location_file_needs() {
    let lab = Lab::start();
    let dir = tempfile::tempdir().unwrap();
    let elsewhere = dir.path().join("elsewhere.inc");
    let cases = [
        (
            dir.path().join("missing.inc"),
            format!(
                "the nginx location_file {} does not exist: create it empty, and add `include {};` inside the location that proxies to http://app, before its proxy_pass",
                dir.path().join("missing.inc").display(),
                dir.path().join("missing.inc").display()
            ),
        ),
        (
            elsewhere.clone(),
            format!(
                "nginx does not load {}: its configuration",
                elsewhere.display()
            ),
        ),
    ];
    std::fs::write(&elsewhere, "").unwrap();
    let before = (upstream(&lab), location(&lab));
    for (file, expected) in cases {
        let options = PlanOptions {
            source: passing_gate(dir.path()),
            stages: "[[stages]]\nweight = 0\nmirror = 10\n\n[[stages]]\nweight = 100\n",
            backend_extra: format!("location_file = \"{}\"\n", file.display()),
            ..PlanOptions::default()
        };
        let run = Running::start(&plan(&lab, options), &[]);
        let (code, stderr, _) = run.finish();
        assert_eq!(code, 1, "{stderr}");
        assert!(
            stderr.contains("The preflight check failed, so nothing was changed"),
            "{stderr}"
        );
        assert!(stderr.contains(&expected), "{expected}\n{stderr}");
        assert_eq!((upstream(&lab), location(&lab)), before);
    }
    assert_eq!(std::fs::read_to_string(&elsewhere).unwrap(), "");
}

/// Killed with -9 in a stage with a segment and a mirror, then rolled back by a process that has
/// no journal (another state folder): both files go back to plain proxying to stable, and clients
/// with the segment's header get stable again.
#[test]
fn kill_9_in_a_mirror_stage_then_a_rollback_without_the_journal_restores_both_files() {
    let lab = Lab::start();
    let dir = tempfile::tempdir().unwrap();
    let options = PlanOptions {
        defaults: "bake = \"1s\"\ninterval = \"200ms\"".into(),
        source: passing_gate(dir.path()),
        stages: "[[stages]]\nweight = 10\nsegments = [\"beta\"]\nmirror = 50\napproval = true\n\n\
                 [[stages]]\nweight = 100\n",
        backend_extra: with_location(&lab),
        ..PlanOptions::default()
    };
    std::fs::write(dir.path().join("plan.toml"), plan(&lab, options)).unwrap();
    let run = Running::start_in(dir.path(), &["run", "plan.toml"]);
    run.wait_for_line("stage 1: waiting for approval");
    assert!(location(&lab).contains("mirror "), "{}", location(&lab));
    let client = Client::new(&lab);
    settle(&lab);
    assert_eq!(client.send(&lab, 10, "GET", Some(("X-Beta", "1"))), (0, 10));
    run.signal(libc::SIGKILL);
    let (code, _, _) = run.finish_killed();
    assert_eq!(code, None, "killed by the signal");
    let output = Command::new(rollout_bin())
        .args(["rollback", "plan.toml", "--state-dir", "elsewhere"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let plain = location(&lab);
    assert!(plain.contains("location: plain proxying"), "{plain}");
    assert!(
        !plain.contains("mirror") && !plain.contains("proxy_pass"),
        "{plain}"
    );
    let file = upstream(&lab);
    let block = file
        .split("upstream app {")
        .nth(1)
        .unwrap()
        .split('}')
        .next()
        .unwrap();
    assert!(!block.contains(&lab.canary_addr()), "{file}");
    settle(&lab);
    nginx_accepts_the_config(&lab);
    let client = Client::new(&lab);
    assert_eq!(client.send(&lab, 20, "GET", Some(("X-Beta", "1"))), (20, 0));
    assert_eq!(client.send(&lab, 20, "GET", None), (20, 0));
}
