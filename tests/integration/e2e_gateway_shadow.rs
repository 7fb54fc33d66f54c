//! End to end: segments and mirroring through an HTTPRoute, with the real `kubectl` against the
//! Kubernetes API emulator (tests/support/kube), which keeps every version of the route, checks
//! each write as the HTTPRoute CRD does, and with `--gateway-api v1.1` drops the RequestMirror
//! share as an API server with older CRDs does.

use std::process::Command;

use serde_json::{Value, json};

use crate::e2e_kubectl::{Cluster, gateway_objects, gateway_plan_with, run, stderr};

const BETA: &str = "[backend.segments.beta]\nheader = \"X-Beta\"\nvalue = \"yes\"";

const SEGMENT_MIRROR_TEN_FULL: [&str; 4] =
    ["0\nsegments = [\"beta\"]", "0\nmirror = 10", "10", "100"];

/// Each rule of a route in a line: `matches -> backends [mirror share]`.
fn outline(route: &Value) -> Vec<String> {
    let rules = route["spec"]["rules"].as_array().unwrap();
    rules.iter().map(rule_outline).collect()
}

fn rule_outline(rule: &Value) -> String {
    let matches: Vec<String> = rule["matches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let mut text = m["path"]["value"].as_str().unwrap().to_string();
            if let Some(method) = m["method"].as_str() {
                text.push_str(&format!(" {method}"));
            }
            for h in m["headers"].as_array().into_iter().flatten() {
                text.push_str(&format!(
                    " {}={}",
                    h["name"].as_str().unwrap(),
                    h["value"].as_str().unwrap()
                ));
            }
            text
        })
        .collect();
    let refs: Vec<String> = rule["backendRefs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| match r["weight"].as_u64() {
            Some(w) => format!("{}:{w}", r["name"].as_str().unwrap()),
            None => r["name"].as_str().unwrap().to_string(),
        })
        .collect();
    let mirrors: String = rule["filters"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|f| f["type"] == "RequestMirror")
        .map(|f| {
            let m = &f["requestMirror"];
            format!(
                " mirror {} {}",
                m["backendRef"]["name"].as_str().unwrap(),
                m["percent"]
            )
        })
        .collect();
    format!("{} -> {}{mirrors}", matches.join(" | "), refs.join(" "))
}

/// The route's distinct states, in order: one per write.
fn route_states(cluster: &Cluster) -> Vec<Vec<String>> {
    let mut states: Vec<Vec<String>> = Vec::new();
    for version in cluster.versions("httproutes", "search-api") {
        let state = outline(&version["object"]);
        if states.last() != Some(&state) {
            states.push(state);
        }
    }
    states
}

fn lines(rules: &[&str]) -> Vec<String> {
    rules.iter().map(|r| r.to_string()).collect()
}

const ADMIN: &str = "/admin -> search-admin:1";

#[test]
fn segment_then_mirror_then_ten_percent_then_full_on_the_route() {
    let cluster = Cluster::start(&gateway_objects(), &[]);
    let original = cluster.current("httproutes", "search-api");
    run(
        &cluster,
        &gateway_plan_with(&cluster, BETA, &SEGMENT_MIRROR_TEN_FULL),
        "0\n",
        0,
    );
    let segment = "/ X-Beta=yes -> search-api-canary";
    let segment_for_methods =
        "/ X-Beta=yes | / GET X-Beta=yes | / HEAD X-Beta=yes -> search-api-canary";
    assert_eq!(
        route_states(&cluster),
        [
            lines(&["/ -> search-api-stable:100 search-api-canary:0", ADMIN]),
            lines(&[
                segment,
                "/ -> search-api-stable:100 search-api-canary:0",
                ADMIN
            ]),
            lines(&[
                segment_for_methods,
                "/ GET | / HEAD -> search-api-stable:100 search-api-canary:0 mirror search-api-canary 10",
                "/ -> search-api-stable:100 search-api-canary:0",
                ADMIN,
            ]),
            lines(&[
                segment,
                "/ -> search-api-stable:90 search-api-canary:10",
                ADMIN
            ]),
            lines(&["/ -> search-api-stable:0 search-api-canary:100", ADMIN]),
        ]
    );
    // Promoted: the route is the one the run found, but for its weights.
    let mut end = cluster.current("httproutes", "search-api");
    end["spec"]["rules"][0]["backendRefs"][0]["weight"] = json!(100);
    end["spec"]["rules"][0]["backendRefs"][1]["weight"] = json!(0);
    assert_eq!(end["spec"], original["spec"]);
}

#[test]
fn a_canary_failing_in_the_mirror_stage_leaves_the_route_as_it_was() {
    let cluster = Cluster::start(&gateway_objects(), &[]);
    let original = cluster.current("httproutes", "search-api");
    let ran = run(
        &cluster,
        &gateway_plan_with(&cluster, BETA, &["0\nmirror = 50", "100"]),
        "0.5\n",
        3,
    );
    let states = route_states(&cluster);
    assert_eq!(states.len(), 3, "{states:#?}\n{}", stderr(&ran));
    assert!(
        states[1][0].ends_with("mirror search-api-canary 50"),
        "{states:#?}"
    );
    assert_eq!(
        cluster.current("httproutes", "search-api")["spec"],
        original["spec"]
    );
}

#[test]
fn a_cluster_whose_crds_drop_the_mirror_share_is_not_left_mirroring_everything() {
    let cluster = Cluster::start(&gateway_objects(), &["--gateway-api", "v1.1"]);
    let original = cluster.current("httproutes", "search-api");
    let ran = run(
        &cluster,
        &gateway_plan_with(&cluster, "", &["0\nmirror = 10", "100"]),
        "0\n",
        1,
    );
    let err = stderr(&ran);
    assert!(
        err.contains("stage 1 could not set the weight to 0%, with a mirror of 10%: "),
        "{err}"
    );
    assert!(err.contains("predate percentage mirroring"), "{err}");
    // The pruned mirror (every request) was there, and is gone.
    let states = route_states(&cluster);
    assert!(
        states
            .iter()
            .any(|s| s[0].ends_with("mirror search-api-canary null")),
        "{states:#?}"
    );
    assert_eq!(
        cluster.current("httproutes", "search-api")["spec"],
        original["spec"]
    );
}

/// The emulator refuses what the HTTPRoute CRD refuses, in the real server's words.
#[test]
fn the_emulator_refuses_a_mirror_with_both_a_percent_and_a_fraction() {
    let cluster = Cluster::start(&gateway_objects(), &[]);
    let patch = json!([{"op": "add", "path": "/spec/rules/0/filters", "value": [
        {"type": "RequestMirror", "requestMirror": {
            "backendRef": {"name": "search-api-canary", "port": 8080},
            "percent": 5, "fraction": {"numerator": 1, "denominator": 2}}},
        {"type": "RequestMirror", "requestMirror": {
            "backendRef": {"name": "search-api-canary"}, "fraction": {"numerator": 3, "denominator": 2}}},
    ]}]);
    let output = Command::new("kubectl")
        .env("KUBECACHEDIR", cluster.cache_dir())
        .arg("--kubeconfig")
        .arg(cluster.kubeconfig())
        .args([
            "--context",
            "emulator",
            "-n",
            "search",
            "patch",
            "httproute.gateway.networking.k8s.io/search-api",
            "--type=json",
            "-p",
        ])
        .arg(patch.to_string())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let err = String::from_utf8_lossy(&output.stderr);
    for expected in [
        "spec.rules[0].filters[0].requestMirror: Invalid value: \"object\": Only one of percent or fraction may be specified in HTTPRequestMirrorFilter",
        "spec.rules[0].filters[1].requestMirror.backendRef: Invalid value: \"object\": Must have port for Service reference",
        "spec.rules[0].filters[1].requestMirror.fraction: Invalid value: \"object\": numerator must be less than or equal to denominator",
    ] {
        assert!(err.contains(expected), "{expected}\nnot in\n{err}");
    }
    assert_eq!(
        cluster.versions("httproutes", "search-api").len(),
        1,
        "nothing was written"
    );
}
