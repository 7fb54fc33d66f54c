//! Checks the end-to-end lab itself, so that an end-to-end test failing means `rollout` is
//! wrong and not the lab: nginx routes and reloads, Prometheus sees both tracks and their
//! errors, and nothing is left running afterwards.

use std::collections::BTreeSet;
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use crate::lab::{Lab, Sample, wait_until};

/// Runs an argv from the lab (`nginx_test_command`, `nginx_reload_command`) and insists it works.
fn run(argv: &[String]) {
    let output = Command::new(&argv[0])
        .args(&argv[1..])
        .output()
        .unwrap_or_else(|e| panic!("run {argv:?}: {e}"));
    assert!(
        output.status.success(),
        "{argv:?} failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The tracks of the samples whose value is above zero.
fn tracks_above_zero(samples: &[Sample]) -> BTreeSet<&str> {
    samples
        .iter()
        .filter(|s| s.value > 0.0)
        .filter_map(|s| s.labels.get("track").map(String::as_str))
        .collect()
}

#[test]
fn lab_routes_reloads_and_is_seen_by_prometheus() {
    let lab = Lab::start();

    assert_eq!(
        lab.send_requests(20),
        (20, 0),
        "before any split, only stable answers"
    );

    std::fs::write(
        lab.upstream_file(),
        format!(
            "upstream app {{\n    server {} weight=1;\n    server {} weight=1;\n}}\n",
            lab.stable_addr(),
            lab.canary_addr()
        ),
    )
    .expect("write upstream.conf");
    run(&lab.nginx_test_command());
    run(&lab.nginx_reload_command());
    // The reload only signals nginx, and for a moment the old worker answers too: wait until
    // the new worker has answered from the canary and is the only one left.
    assert!(
        wait_until(Duration::from_secs(10), || {
            lab.send_requests(10).1 > 0 && lab.nginx_worker_pids().len() == 1
        }),
        "the canary never answered after the reload{}",
        lab.logs()
    );
    // Round robin over equal weights in a single worker alternates strictly.
    assert_eq!(
        lab.send_requests(100),
        (50, 50),
        "a 50/50 split{}",
        lab.logs()
    );

    let traffic = lab.start_traffic();
    let by_track = "sum by (track) (rate(http_requests_total[5s]))";
    assert!(
        wait_until(Duration::from_secs(15), || {
            lab.prometheus_query(by_track)
                .is_ok_and(|s| tracks_above_zero(&s) == BTreeSet::from(["canary", "stable"]))
        }),
        "Prometheus never saw traffic on both tracks: {:?}{}",
        lab.prometheus_query(by_track),
        lab.logs()
    );

    lab.set_canary_failure(1.0);
    let errors = r#"sum by (track) (rate(http_requests_total{code="500"}[5s]))"#;
    assert!(
        wait_until(Duration::from_secs(10), || {
            lab.prometheus_query(errors)
                .is_ok_and(|s| tracks_above_zero(&s) == BTreeSet::from(["canary"]))
        }),
        "Prometheus never saw the canary's 500s (and only those): {:?}{}",
        lab.prometheus_query(errors),
        lab.logs()
    );
    let counts = traffic.counts();
    drop(traffic);
    assert!(
        counts.server_errors > 0,
        "the traffic saw no 500s: {counts:?}"
    );
    assert_eq!(counts.other, 0, "requests lost on the way: {counts:?}");

    lab.kill_prometheus();
    assert!(
        lab.prometheus_query("up").is_err(),
        "Prometheus still answers after the kill"
    );

    let addrs = [lab.stable_addr(), lab.canary_addr(), lab.nginx_addr()];
    drop(lab);
    for addr in addrs {
        assert!(
            TcpStream::connect(&addr).is_err(),
            "{addr} still accepts connections after the lab was dropped"
        );
    }
}
