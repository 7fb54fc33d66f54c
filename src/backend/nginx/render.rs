//! The upstream file rollout writes: its header, which marks each write, and the server
//! weights; the marker of the location file's writes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use super::location::{Routing, definitions};
use crate::backend::{BackendError, WeightChange};
use crate::plan::{NGINX_STEPS_PER_PERCENT, NginxBackend as Spec, Segment, Weight};

/// The header line that identifies one write: its stage, its weight and a token no other write
/// has. Finding it in nginx's configuration dump proves nginx loads this very file.
pub fn marker(change: WeightChange, token: &str) -> String {
    format!(
        "# Stage {}: {} of traffic to the new version. Write {token}.",
        change.stage, change.weight
    )
}

/// The location file's header line for one write: its stage, what it routes and the token
/// of the write (the same as the upstream file's, with which it is written and loaded).
pub fn location_marker(change: WeightChange, routing: &Routing<'_>, token: &str) -> String {
    format!(
        "# Stage {} location: {}. Write {token}.",
        change.stage,
        routing.summary()
    )
}

/// A token for one write, unique across writes and processes: the pid, the time and a counter,
/// hashed to 16 hex digits.
pub fn write_token() -> String {
    static WRITES: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let count = WRITES.fetch_add(1, Ordering::Relaxed);
    let digest = Sha256::digest(format!("{}:{nanos}:{count}", std::process::id()).as_bytes());
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// The upstream block for a weight, under its header (`marker` is its second line): each
/// group's servers share its part of the traffic. With a location file, what it uses follows
/// (`location::definitions`).
pub fn render(
    spec: &Spec,
    plan_name: &str,
    change: WeightChange,
    marker: &str,
    segments: &[Segment],
) -> Result<String, BackendError> {
    let mut out = format!(
        "# Written by rollout for plan `{plan_name}`; it is rewritten at every stage, do not edit.\n\
         {marker}\n\
         upstream {} {{\n",
        spec.upstream
    );
    let (stable, canary) = server_weights(change.weight, spec.stable.len(), spec.canary.len())?;
    for (servers, weight) in [(&spec.stable, stable), (&spec.canary, canary)] {
        if weight == 0 {
            continue;
        }
        for server in servers {
            out.push_str(&format!("    server {server} weight={weight};\n"));
        }
    }
    for line in &spec.extra {
        out.push_str(&format!("    {line}\n"));
    }
    out.push_str("}\n");
    if spec.location_file.is_some() {
        out.push_str(&definitions(spec, &Routing::of(change, segments)));
    }
    Ok(out)
}

/// Integer nginx weights per stable and per canary server such that the canary group's share
/// of the total is exactly `weight` percent. 0 means the group is left out. A weight finer
/// than nginx's step here is refused rather than rounded: rounding 0.0004% would leave the
/// canary out while every report said 0.0004% (validation refuses such plans first).
pub fn server_weights(
    weight: Weight,
    stable_servers: usize,
    canary_servers: usize,
) -> Result<(u64, u64), BackendError> {
    let total = 100 * NGINX_STEPS_PER_PERCENT;
    let canary_share = weight
        .in_steps(NGINX_STEPS_PER_PERCENT)
        .filter(|share| *share <= total)
        .ok_or_else(|| {
            BackendError::Precondition(format!(
                "nginx weights cannot send exactly {weight} of traffic: it is not a multiple of {}%",
                1.0 / NGINX_STEPS_PER_PERCENT as f64
            ))
        })?;
    let stable_share = total - canary_share;
    // Each group's share split evenly across its servers, as whole numbers:
    // stable server = stable_share * C, canary server = canary_share * S (over S*C*total).
    let stable = stable_share * canary_servers as u64;
    let canary = canary_share * stable_servers as u64;
    let divisor = gcd(stable, canary).max(1);
    Ok((stable / divisor, canary / divisor))
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::plan::Argv;
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    pub fn spec(stable: &[&str], canary: &[&str]) -> Spec {
        Spec {
            upstream_file: PathBuf::from("/tmp/up.conf"),
            upstream: "app".into(),
            stable: stable.iter().map(|s| s.to_string()).collect(),
            canary: canary.iter().map(|s| s.to_string()).collect(),
            test_command: Argv::new(vec!["nginx".into(), "-t".into()]).unwrap(),
            reload_command: Argv::new(vec!["nginx".into(), "-s".into(), "reload".into()]).unwrap(),
            verify_command: None,
            pid_file: None,
            extra: vec!["keepalive 32;".into()],
            command_timeout: Duration::from_secs(5),
            location_file: None,
            mirror_methods: vec!["GET".into(), "HEAD".into()],
            mirror_timeout: Duration::from_secs(1),
        }
    }

    fn weight(p: f64) -> Weight {
        Weight::new(p).unwrap()
    }

    fn change(stage: usize, w: f64) -> WeightChange {
        WeightChange {
            stage,
            weight: weight(w),
            previous: weight(0.0),
            segments: crate::plan::SegmentSet::EMPTY,
            mirror: None,
        }
    }

    /// The canary group's share of the total, in percent.
    fn share(w: f64, s: usize, c: usize) -> f64 {
        let (sw, cw) = server_weights(weight(w), s, c).unwrap();
        let total = sw * s as u64 + cw * c as u64;
        100.0 * (cw * c as u64) as f64 / total as f64
    }

    #[test]
    fn group_shares_match_the_stage_weight() {
        for (w, s, c) in [
            (1.0, 3, 2),
            (5.0, 1, 1),
            (25.0, 4, 1),
            (50.0, 2, 3),
            (0.1, 1, 1),
            (33.3, 3, 7),
            (99.0, 5, 2),
            (0.001, 7, 3),
            (99.999, 7, 3),
            (33.333, 1, 1),
        ] {
            let got = share(w, s, c);
            assert!(
                (got - w).abs() < 1e-9,
                "{w}% with {s} stable, {c} canary: got {got}%"
            );
        }
    }

    #[test]
    fn weights_are_reduced_to_small_numbers() {
        let at = |w, s, c| server_weights(weight(w), s, c).unwrap();
        assert_eq!(at(1.0, 3, 2), (66, 1));
        assert_eq!(at(50.0, 1, 1), (1, 1));
        assert_eq!(at(25.0, 1, 1), (3, 1));
        assert_eq!(at(0.0, 2, 2), (1, 0));
        assert_eq!(at(100.0, 2, 2), (0, 1));
    }

    #[test]
    fn renders_the_upstream_block() {
        let spec = spec(
            &["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"],
            &["10.0.1.1:80", "10.0.1.2:80"],
        );
        let text = render(
            &spec,
            "shop",
            change(2, 1.0),
            &marker(change(2, 1.0), "t0k3n"),
            &[],
        )
        .unwrap();
        assert_eq!(
            text,
            "# Written by rollout for plan `shop`; it is rewritten at every stage, do not edit.\n\
             # Stage 2: 1% of traffic to the new version. Write t0k3n.\n\
             upstream app {\n    server 10.0.0.1:80 weight=66;\n    server 10.0.0.2:80 weight=66;\n    server 10.0.0.3:80 weight=66;\n    server 10.0.1.1:80 weight=1;\n    server 10.0.1.2:80 weight=1;\n    keepalive 32;\n}\n"
        );
    }

    #[test]
    fn every_write_gets_its_own_token() {
        let tokens: std::collections::BTreeSet<String> = (0..1000).map(|_| write_token()).collect();
        assert_eq!(tokens.len(), 1000);
        assert!(tokens.iter().all(|t| t.len() == 16));
    }

    #[test]
    fn the_extremes_leave_a_group_out() {
        let s = spec(&["a:1"], &["b:1"]);
        let at = |w| render(&s, "p", change(1, w), "# header", &[]).unwrap();
        assert!(!at(0.0).contains("b:1"));
        assert!(!at(100.0).contains("a:1"));
    }

    #[test]
    fn the_smallest_steps_keep_both_groups_and_finer_weights_are_refused() {
        assert_eq!(server_weights(weight(0.001), 7, 3).unwrap(), (299_997, 7));
        assert_eq!(server_weights(weight(99.999), 7, 3).unwrap(), (1, 233_331));
        for w in [0.0004, 99.9996, 33.3333] {
            let err = server_weights(weight(w), 1, 1).unwrap_err().to_string();
            assert_eq!(
                err,
                format!(
                    "nginx weights cannot send exactly {w}% of traffic: it is not a multiple of 0.001%"
                )
            );
        }
    }

    /// nginx parses `weight=` as a whole number with no upper bound short of overflow; the
    /// large weights of the smallest steps must pass the real `nginx -t`.
    #[test]
    fn nginx_accepts_the_weights_of_the_smallest_steps() {
        let nginx = nginx_binary();
        let dir = tempfile::tempdir().unwrap();
        let stable: Vec<String> = (1..=7).map(|i| format!("127.0.0.1:{}", 9000 + i)).collect();
        let canary: Vec<String> = (1..=3).map(|i| format!("127.0.0.1:{}", 9100 + i)).collect();
        let stable: Vec<&str> = stable.iter().map(String::as_str).collect();
        let canary: Vec<&str> = canary.iter().map(String::as_str).collect();
        for (w, largest) in [(0.001, "weight=299997;"), (99.999, "weight=233331;")] {
            let at = change(1, w);
            let upstream = render(&spec(&stable, &canary), "p", at, &marker(at, "x"), &[]).unwrap();
            assert!(upstream.contains(largest), "{upstream}");
            std::fs::write(dir.path().join("upstream.conf"), &upstream).unwrap();
            let d = dir.path().display();
            std::fs::write(
                dir.path().join("nginx.conf"),
                format!(
                    "pid {d}/nginx.pid;\nerror_log {d}/error.log;\nevents {{}}\n\
                     http {{\n    include {d}/upstream.conf;\n}}\n"
                ),
            )
            .unwrap();
            let output = nginx_test(&nginx, dir.path());
            assert!(
                output.status.success(),
                "nginx -t refused\n{upstream}\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }

    /// `nginx -t` of `DIR/nginx.conf`, with `DIR` as nginx's prefix.
    pub fn nginx_test(nginx: &Path, dir: &Path) -> std::process::Output {
        std::process::Command::new(nginx)
            .arg("-p")
            .arg(format!("{}/", dir.display()))
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .arg("-t")
            .output()
            .unwrap()
    }

    /// nginx, or a failure naming how to install it: a machine without it must not pass by
    /// testing nothing.
    pub fn nginx_binary() -> PathBuf {
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path)
            .chain([PathBuf::from("/usr/sbin")])
            .map(|dir| dir.join("nginx"))
            .find(|candidate| candidate.is_file())
            .expect("this test needs `nginx` (on Debian: apt-get install -y nginx-light)")
    }
}
