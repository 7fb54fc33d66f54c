//! `type = "command"`: a metric's own command prints one number on stdout.

use std::time::Duration;

use async_trait::async_trait;

use super::{Probe, ProbeError, Which, finite};
use crate::backend::exec::{Cmd, run_command};
use crate::plan::Argv;

pub struct CommandProbe {
    pub run: Argv,
    pub baseline_run: Option<Argv>,
    pub timeout: Duration,
    pub metric: String,
}

impl CommandProbe {
    fn argv(&self, which: Which) -> &Argv {
        match which {
            Which::Value => &self.run,
            Which::Baseline => self.baseline_run.as_ref().unwrap_or(&self.run),
        }
    }
}

#[async_trait]
impl Probe for CommandProbe {
    fn describe(&self, which: Which) -> String {
        format!("run `{}`", self.argv(which))
    }

    async fn read(&self, which: Which) -> Result<Option<f64>, ProbeError> {
        let cmd = Cmd {
            argv: self.argv(which).as_slice().to_vec(),
            env: vec![("ROLLOUT_METRIC".into(), self.metric.clone())],
            timeout: self.timeout,
            purpose: format!("measure {}", self.metric),
        };
        let output = run_command(&cmd).await.map_err(|e| match e {
            crate::backend::ExecError::Timeout { after, .. } => ProbeError::Timeout(after),
            other => ProbeError::Command(other.to_string()),
        })?;
        if !output.success() {
            return Err(ProbeError::Command(format!(
                "`{}` failed ({}): {}",
                self.argv(which),
                output.status_text(),
                output.tail()
            )));
        }
        parse_output(&output.stdout)
    }
}

/// One number on stdout; nothing (or NaN) means no data.
pub fn parse_output(stdout: &str) -> Result<Option<f64>, ProbeError> {
    let text = stdout.trim();
    if text.is_empty() {
        return Ok(None);
    }
    text.parse::<f64>().map(finite).map_err(|_| {
        let shown: String = text.chars().take(80).collect();
        ProbeError::Malformed(format!("expected one number on stdout, got {shown:?}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_one_number() {
        assert_eq!(parse_output("0.25\n"), Ok(Some(0.25)));
        assert_eq!(parse_output("  \n"), Ok(None));
        assert_eq!(parse_output("NaN"), Ok(None));
        assert!(parse_output("0.1 0.2").is_err());
        assert!(parse_output("error: boom").is_err());
    }
}
