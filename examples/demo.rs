//! The newcomer's demo (run it with `./scripts/demo.sh [--bad]`): the test lab's real nginx, real
//! Prometheus and two real services, live traffic, and `rollout run` in this terminal.
//! With `--bad`, the canary starts answering 500 during the second stage and is rolled back.

#[path = "../tests/integration/lab.rs"]
mod lab;

use std::process::Command;
use std::thread;
use std::time::Duration;

use lab::Lab;

fn main() {
    let bad = std::env::args().any(|a| a == "--bad");
    let rollout = std::env::current_exe()
        .expect("the demo's own path")
        .parent()
        .and_then(|examples| examples.parent())
        .expect("target/debug/examples/demo")
        .join("rollout");
    eprintln!(
        "starting two services (v1 stable, v2 canary), nginx and Prometheus on 127.0.0.1 ..."
    );
    let lab = Lab::start();
    let traffic = lab.start_traffic();
    eprintln!(
        "nginx on {}, Prometheus on {}, sending about 50 requests a second through nginx\n",
        lab.nginx_url(),
        lab.prometheus_url()
    );
    let plan = lab.dir().join("demo.toml");
    std::fs::write(&plan, plan_text(&lab)).expect("write the demo plan");

    let saboteur = bad.then(|| {
        let canary = lab.canary_addr();
        thread::spawn(move || {
            // Long enough for stage 1 to pass and stage 2 to start.
            thread::sleep(Duration::from_secs(24));
            let _ = lab::http_post(&canary, "/control/fail?rate=0.5");
        })
    });
    let status = Command::new(&rollout)
        .arg("run")
        .arg(&plan)
        .arg("--state-dir")
        .arg(lab.dir().join("state"))
        .status()
        .expect("run rollout");
    if let Some(saboteur) = saboteur {
        let _ = saboteur.join();
    }

    let counts = traffic.counts();
    drop(traffic);
    // The previous nginx worker finishes its requests for a moment after a reload.
    lab::wait_until(Duration::from_secs(10), || {
        lab.nginx_worker_pids().len() == 1
    });
    let (stable, canary) = lab.send_requests(20);
    eprintln!(
        "\nduring the run nginx served {} requests from v1 and {} from v2 ({} errors);\n\
         now 20 requests reach v1 {stable} times and v2 {canary} times.\n\
         rollout exited with {} (0 promoted, 3 rolled back).",
        counts.stable,
        counts.canary,
        counts.server_errors,
        status
            .code()
            .map_or("a signal".to_string(), |c| c.to_string())
    );
    std::process::exit(status.code().unwrap_or(1));
}

fn plan_text(lab: &Lab) -> String {
    let quote = |argv: Vec<String>| {
        let items: Vec<String> = argv.iter().map(|a| format!("{a:?}")).collect();
        format!("[{}]", items.join(", "))
    };
    format!(
        r#"name = "demo"
description = "v2 of the demo service"

[defaults]
bake = "15s"
interval = "2s"
max_hold = "30s"

[backend]
type = "nginx"
upstream_file = "{upstream}"
upstream = "app"
stable = ["{stable}"]
canary = ["{canary}"]
test_command = {test}
reload_command = {reload}
pid_file = "{pid}"

[sources.prom]
type = "prometheus"
url = "{prometheus}"

[[metrics]]
name = "error-rate"
source = "prom"
query = 'sum(rate(http_requests_total{{track="canary",code="500"}}[10s])) / sum(rate(http_requests_total{{track="canary"}}[10s]))'
advance = "< 1%"
rollback = "> 5%"

[[metrics]]
name = "p99-latency"
source = "prom"
query = 'max(latency_seconds{{track="canary",quantile="0.99"}})'
rollback = "> 0.5"
mode = "warn"

[[stages]]
weight = 10

[[stages]]
weight = 50

[[stages]]
weight = 100
"#,
        upstream = lab.upstream_file().display(),
        stable = lab.stable_addr(),
        canary = lab.canary_addr(),
        test = quote(lab.nginx_test_command()),
        reload = quote(lab.nginx_reload_command()),
        pid = lab.dir().join("nginx.pid").display(),
        prometheus = lab.prometheus_url(),
    )
}
