//! `type = "nginx"`: owns one upstream file, rewrites it atomically with weighted servers, has
//! nginx check it (`test_command`) and reload it (`reload_command`), then confirms the reload
//! (`verify_command`).
//!
//! What is confirmed: nginx accepted the file (`nginx -t`), the reload command succeeded, and,
//! when `verify_command` is set, that it succeeds after the reload. `nginx -s reload` only
//! signals the master process; the master applies the new configuration asynchronously and
//! exits 0 even if it later fails to apply it. Without `verify_command` that last step is not
//! confirmed: set it (see docs/backends.md) for production.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::{Backend, BackendError, Cmd, Executor, WeightChange, context_env, run_checked};
use crate::plan::{Argv, NginxBackend as Spec, Plan, Weight};

/// How often, and how many times, `verify_command` is tried after a reload: nginx applies a
/// reload asynchronously, so the first try may come too early.
const VERIFY_ATTEMPTS: u32 = 10;
const VERIFY_PAUSE: Duration = Duration::from_millis(300);

pub struct Nginx {
    name: String,
    spec: Spec,
    exec: Arc<dyn Executor>,
    current: WeightChange,
}

impl Nginx {
    pub fn new(plan: &Plan, spec: Spec, exec: Arc<dyn Executor>) -> Self {
        Nginx {
            name: plan.name.to_string(),
            spec,
            exec,
            current: WeightChange {
                stage: 0,
                weight: Weight::ZERO,
                previous: Weight::ZERO,
            },
        }
    }

    fn cmd(&self, argv: &Argv, change: WeightChange, purpose: &str) -> Cmd {
        Cmd {
            argv: argv.as_slice().to_vec(),
            env: context_env(&self.name, change),
            timeout: self.spec.command_timeout,
            purpose: purpose.to_string(),
        }
    }

    async fn apply(&mut self, change: WeightChange) -> Result<(), BackendError> {
        let exec = self.exec.as_ref();
        let path = &self.spec.upstream_file;
        let previous = exec.read_file(path).await?;
        let contents = render(&self.spec, &self.name, change);
        exec.write_file(path, &contents).await?;
        let test = self.cmd(&self.spec.test_command, change, "nginx config test");
        if let Err(e) = run_checked(exec, &test).await {
            self.restore(previous).await?;
            return Err(e);
        }
        let reload = self.cmd(&self.spec.reload_command, change, "nginx reload");
        if let Err(e) = run_checked(exec, &reload).await {
            self.restore(previous).await?;
            return Err(e);
        }
        self.verify(change).await?;
        self.current = change;
        Ok(())
    }

    /// Puts back the file as it was before a change nginx refused. Where there was none, the
    /// stable-only upstream is the known state to leave.
    async fn restore(&self, previous: Option<String>) -> Result<(), BackendError> {
        let contents = previous.unwrap_or_else(|| {
            let stable = WeightChange {
                weight: Weight::ZERO,
                ..self.current
            };
            render(&self.spec, &self.name, stable)
        });
        self.exec
            .write_file(&self.spec.upstream_file, &contents)
            .await?;
        Ok(())
    }

    async fn verify(&self, change: WeightChange) -> Result<(), BackendError> {
        let Some(verify) = &self.spec.verify_command else {
            return Ok(());
        };
        let cmd = self.cmd(verify, change, "verify the reload");
        let mut last = None;
        for attempt in 0..VERIFY_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(VERIFY_PAUSE).await;
            }
            let output = self.exec.run(&cmd).await?;
            if output.success() {
                return Ok(());
            }
            last = Some(output);
        }
        let output = last.expect("at least one attempt ran");
        Err(BackendError::NotConfirmed(format!(
            "`{verify}` still fails after the reload ({}){}",
            output.status_text(),
            if output.tail().is_empty() {
                String::new()
            } else {
                format!(": {}", output.tail())
            }
        )))
    }
}

#[async_trait]
impl Backend for Nginx {
    fn describe(&self) -> String {
        format!(
            "nginx upstream `{}` in {}",
            self.spec.upstream,
            self.spec.upstream_file.display()
        )
    }

    /// nginx's current configuration must pass its own test before we touch it, so that a
    /// failure later is ours to explain.
    async fn preflight(&mut self) -> Result<(), BackendError> {
        let test = self.cmd(
            &self.spec.test_command,
            self.current,
            "nginx config test (preflight)",
        );
        run_checked(self.exec.as_ref(), &test).await.map(|_| ())
    }

    async fn set_weight(&mut self, change: WeightChange) -> Result<(), BackendError> {
        self.apply(change).await
    }

    /// At 100% the upstream already sends everything to the new servers: nothing to change.
    async fn promote(&mut self) -> Result<(), BackendError> {
        Ok(())
    }

    async fn rollback(&mut self) -> Result<(), BackendError> {
        let change = WeightChange {
            stage: self.current.stage,
            weight: Weight::ZERO,
            previous: self.current.weight,
        };
        self.apply(change).await
    }
}

/// The upstream block for a weight: each group's servers share its part of the traffic.
pub fn render(spec: &Spec, plan_name: &str, change: WeightChange) -> String {
    let mut out = format!(
        "# Written by rollout for plan `{plan_name}`; it is rewritten at every stage, do not edit.\n\
         # Stage {}: {} of traffic to the new version.\n\
         upstream {} {{\n",
        change.stage, change.weight, spec.upstream
    );
    let (stable, canary) = server_weights(change.weight, spec.stable.len(), spec.canary.len());
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
    out
}

/// Integer nginx weights per stable and per canary server such that the canary group's share
/// of the total is exactly `weight` percent (to a thousandth of a percent). 0 means the group
/// is left out.
pub fn server_weights(weight: Weight, stable_servers: usize, canary_servers: usize) -> (u64, u64) {
    const SCALE: u64 = 1000;
    let canary_share = (weight.percent() * SCALE as f64).round() as u64;
    let stable_share = 100 * SCALE - canary_share;
    // Each group's share split evenly across its servers, as whole numbers:
    // stable server = stable_share * C, canary server = canary_share * S (over S*C*total).
    let stable = stable_share * canary_servers as u64;
    let canary = canary_share * stable_servers as u64;
    let divisor = gcd(stable, canary).max(1);
    (stable / divisor, canary / divisor)
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn spec(stable: &[&str], canary: &[&str]) -> Spec {
        Spec {
            upstream_file: PathBuf::from("/tmp/up.conf"),
            upstream: "app".into(),
            stable: stable.iter().map(|s| s.to_string()).collect(),
            canary: canary.iter().map(|s| s.to_string()).collect(),
            test_command: Argv::new(vec!["nginx".into(), "-t".into()]).unwrap(),
            reload_command: Argv::new(vec!["nginx".into(), "-s".into(), "reload".into()]).unwrap(),
            verify_command: None,
            extra: vec!["keepalive 32;".into()],
            command_timeout: Duration::from_secs(5),
        }
    }

    fn weight(p: f64) -> Weight {
        Weight::new(p).unwrap()
    }

    /// The canary group's share of the total, in percent.
    fn share(w: f64, s: usize, c: usize) -> f64 {
        let (sw, cw) = server_weights(weight(w), s, c);
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
        assert_eq!(server_weights(weight(1.0), 3, 2), (66, 1));
        assert_eq!(server_weights(weight(50.0), 1, 1), (1, 1));
        assert_eq!(server_weights(weight(25.0), 1, 1), (3, 1));
        assert_eq!(server_weights(weight(0.0), 2, 2), (1, 0));
        assert_eq!(server_weights(weight(100.0), 2, 2), (0, 1));
    }

    #[test]
    fn renders_the_upstream_block() {
        let change = WeightChange {
            stage: 2,
            weight: weight(1.0),
            previous: weight(0.0),
        };
        let text = render(
            &spec(
                &["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"],
                &["10.0.1.1:80", "10.0.1.2:80"],
            ),
            "shop",
            change,
        );
        assert_eq!(
            text,
            "# Written by rollout for plan `shop`; it is rewritten at every stage, do not edit.\n\
             # Stage 2: 1% of traffic to the new version.\n\
             upstream app {\n    server 10.0.0.1:80 weight=66;\n    server 10.0.0.2:80 weight=66;\n    server 10.0.0.3:80 weight=66;\n    server 10.0.1.1:80 weight=1;\n    server 10.0.1.2:80 weight=1;\n    keepalive 32;\n}\n"
        );
    }

    #[test]
    fn the_extremes_leave_a_group_out() {
        let s = spec(&["a:1"], &["b:1"]);
        let at = |w| {
            render(
                &s,
                "p",
                WeightChange {
                    stage: 1,
                    weight: weight(w),
                    previous: weight(0.0),
                },
            )
        };
        assert!(!at(0.0).contains("b:1"));
        assert!(!at(100.0).contains("a:1"));
    }
}
