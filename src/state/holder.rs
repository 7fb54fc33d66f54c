//! Who drives a rollout: the process that holds its lock (local folder) or lease (shared store),
//! named so that whoever is refused, or takes over, can say who it was.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Holder {
    pub pid: u32,
    pub started_at: String,
    /// `run`, `resume` or `rollback`.
    pub command: String,
    #[serde(default)]
    pub host: String,
    /// The CI job's address, when the environment of a known CI names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ci_job: Option<String>,
}

impl Holder {
    /// This process, about to drive a rollout with `command`.
    pub fn this_process(command: &str) -> Holder {
        Holder {
            pid: std::process::id(),
            started_at: super::journal::now(),
            command: command.to_string(),
            host: host_name(),
            ci_job: ci_job(|key| std::env::var(key).ok()),
        }
    }

    /// Whether this holder ran on this machine (its processes can be seen and stopped here).
    pub fn is_on_this_host(&self) -> bool {
        self.host.is_empty() || self.host == host_name()
    }

    /// "`rollout run` (pid 4242 on ci-7, since 2026-11-30T10:00:00Z, job https://...)".
    pub fn describe(&self) -> String {
        let host = if self.host.is_empty() {
            String::new()
        } else {
            format!(" on {}", self.host)
        };
        let job = self
            .ci_job
            .as_deref()
            .map(|job| format!(", job {job}"))
            .unwrap_or_default();
        format!(
            "`rollout {}` (pid {}{host}, since {}{job})",
            self.command, self.pid, self.started_at
        )
    }
}

/// The kernel's name for this machine.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_string())
        .ok()
        .filter(|name| !name.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "an unknown host".to_string())
}

/// The address of the CI job this process runs in, from the variables the usual CI systems set.
pub fn ci_job(var: impl Fn(&str) -> Option<String>) -> Option<String> {
    if let (Some(server), Some(repo), Some(run)) = (
        var("GITHUB_SERVER_URL"),
        var("GITHUB_REPOSITORY"),
        var("GITHUB_RUN_ID"),
    ) {
        return Some(format!("{server}/{repo}/actions/runs/{run}"));
    }
    [
        "CI_JOB_URL",
        "BUILD_URL",
        "CIRCLE_BUILD_URL",
        "BUILDKITE_BUILD_URL",
    ]
    .iter()
    .find_map(|key| var(key).filter(|v| !v.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |key| pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
    }

    #[test]
    fn ci_jobs_are_named_by_their_address() {
        let github = env(&[
            ("GITHUB_SERVER_URL", "https://github.com"),
            ("GITHUB_REPOSITORY", "shop/checkout"),
            ("GITHUB_RUN_ID", "42"),
        ]);
        assert_eq!(
            ci_job(github).as_deref(),
            Some("https://github.com/shop/checkout/actions/runs/42")
        );
        let gitlab = env(&[("CI_JOB_URL", "https://gitlab.example/shop/-/jobs/7")]);
        assert_eq!(
            ci_job(gitlab).as_deref(),
            Some("https://gitlab.example/shop/-/jobs/7")
        );
        assert_eq!(ci_job(env(&[])), None);
    }

    #[test]
    fn a_holder_is_described_with_what_is_known() {
        let holder = Holder {
            pid: 7,
            started_at: "2026-11-30T10:00:00Z".into(),
            command: "run".into(),
            host: "ci-7".into(),
            ci_job: Some("https://ci.example/jobs/1".into()),
        };
        assert_eq!(
            holder.describe(),
            "`rollout run` (pid 7 on ci-7, since 2026-11-30T10:00:00Z, job https://ci.example/jobs/1)"
        );
    }
}
