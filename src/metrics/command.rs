//! `type = "command"`: a metric's own command prints one number on stdout.

use std::time::{Duration, SystemTime};

use async_trait::async_trait;

use super::{Found, Probe, ProbeError, Redactor, Which, number};
use crate::exec::{Cmd, KEEP, human_bytes, run_command};
use crate::plan::Argv;

pub struct CommandProbe {
    /// A judged metric: the command prints several numbers, its samples.
    pub samples: bool,
    pub run: Argv,
    pub baseline_run: Option<Argv>,
    pub timeout: Duration,
    pub metric: String,
    pub redactor: Redactor,
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

    fn sent(&self, which: Which, _at: SystemTime) -> String {
        self.redactor.redact(&self.describe(which))
    }

    async fn read(&self, which: Which, _at: SystemTime) -> Result<Found, ProbeError> {
        self.run(which)
            .await
            .map_err(|e| e.redacted(&self.redactor))
    }
}

impl CommandProbe {
    async fn run(&self, which: Which) -> Result<Found, ProbeError> {
        let cmd = Cmd {
            argv: self.argv(which).as_slice().to_vec(),
            env: vec![("ROLLOUT_METRIC".into(), self.metric.clone())],
            timeout: self.timeout,
            purpose: format!("measure {}", self.metric),
            stdout_keep: KEEP,
        };
        let output = run_command(&cmd).await.map_err(|e| match e {
            crate::exec::ExecError::Timeout { after, .. } => ProbeError::Timeout(after),
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
        if output.stdout_dropped > 0 {
            // Far more than one number: unusable, whatever its first and last bytes say.
            return Err(ProbeError::Malformed(format!(
                "expected one number on stdout, got {} of output",
                human_bytes(output.stdout_dropped + 2 * KEEP as u64)
            )));
        }
        if self.samples {
            parse_samples(&output.stdout)
        } else {
            parse_output(&output.stdout)
        }
    }
}

/// Several numbers, separated by white space: a judged metric's samples. NaN and infinities
/// are no samples.
pub fn parse_samples(stdout: &str) -> Result<Found, ProbeError> {
    let mut values = Vec::new();
    for word in stdout.split_whitespace() {
        let v: f64 = word.parse().map_err(|_| {
            let shown: String = word.chars().take(80).collect();
            ProbeError::Malformed(format!("expected numbers on stdout, got {shown:?}"))
        })?;
        if v.is_finite() {
            values.push(v);
        }
    }
    Ok(Found::Samples(values))
}

/// One number on stdout. Nothing is no data, and so are NaN, infinities and numbers too large
/// to hold (see `number`).
pub fn parse_output(stdout: &str) -> Result<Found, ProbeError> {
    let text = stdout.trim();
    if text.is_empty() {
        return Ok(Found::NoData("the command printed nothing".into()));
    }
    text.parse::<f64>().map(|v| number(v, text)).map_err(|_| {
        let shown: String = text.chars().take(80).collect();
        ProbeError::Malformed(format!("expected one number on stdout, got {shown:?}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_one_number() {
        let no_data = |what: &str| Ok(Found::NoData(what.to_string()));
        let cases = [
            ("0.25\n", Ok(Found::Value(0.25))),
            ("  \n", no_data("the command printed nothing")),
            ("NaN\n", no_data("the source returned NaN")),
            ("inf", no_data("the source returned +Inf")),
            ("-inf", no_data("the source returned -Inf")),
            (
                "1e309\n",
                no_data("the source returned 1e309, a number too large for a 64-bit float"),
            ),
        ];
        for (stdout, expected) in cases {
            assert_eq!(parse_output(stdout), expected, "{stdout:?}");
        }
        assert!(parse_output("0.1 0.2").is_err());
        assert!(parse_output("error: boom").is_err());
    }

    fn probe(script: &str) -> CommandProbe {
        CommandProbe {
            samples: false,
            run: Argv::new(["sh", "-c", script].map(String::from).to_vec()).unwrap(),
            baseline_run: None,
            timeout: Duration::from_secs(60),
            metric: "m".into(),
            redactor: Redactor::default(),
        }
    }

    #[tokio::test]
    async fn a_flood_on_stdout_is_an_unusable_answer() {
        let err = probe("head -c 50000000 /dev/zero")
            .read(Which::Value, SystemTime::now())
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "unusable answer: expected one number on stdout, got 50.0 MB of output"
        );
    }

    #[tokio::test]
    async fn a_huge_stderr_line_is_bounded_in_the_error() {
        let err = probe("head -c 20000000 /dev/zero | tr '\\0' x >&2; exit 2")
            .read(Which::Value, SystemTime::now())
            .await
            .unwrap_err()
            .to_string();
        assert!(err.len() < 1_000, "{} bytes", err.len());
        assert!(
            err.ends_with(&format!("…{} (19.9 MB of stderr dropped)", "x".repeat(500))),
            "{err}"
        );
    }
}
