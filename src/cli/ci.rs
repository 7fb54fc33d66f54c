//! `--ci`: GitHub Actions annotations and step summary, GitLab collapsible sections. Without
//! a CI, output stays as it is.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use rollout::event::Reporter;
use rollout::plan::Plan;
use rollout::report::commands::Commands;
use rollout::report::github::GithubReporter;
use rollout::report::gitlab::GitlabReporter;
use rollout::report::plain::PlainReporter;

use super::args::{Ci, DriveArgs, OutputFormat};

/// The plain log, in GitLab sections when it runs there.
pub fn plain(drive: &DriveArgs, plain: PlainReporter) -> Arc<dyn Reporter> {
    match drive.ci() {
        Ci::Gitlab => Arc::new(GitlabReporter::new(Box::new(std::io::stderr()), plain)),
        _ => Arc::new(plain),
    }
}

/// On GitHub Actions: annotations as the run goes (on stdout, where the runner reads them,
/// unless stdout carries JSON events), and a summary at the end.
pub fn github(plan: &Plan, plan_path: &Path, drive: &DriveArgs) -> Option<Arc<GithubReporter>> {
    if drive.ci() != Ci::Github {
        return None;
    }
    let commands = Commands::new(
        plan,
        &plan_path.display().to_string(),
        drive.state_location().as_deref(),
    );
    let annotations: rollout::report::Sink = match drive.output {
        OutputFormat::Human => Box::new(std::io::stdout()),
        OutputFormat::Json => Box::new(std::io::stderr()),
    };
    Some(Arc::new(GithubReporter::new(plan, commands, annotations)))
}

/// Appends the run's summary to `$GITHUB_STEP_SUMMARY`; a summary that cannot be written is
/// said, and changes no exit code.
pub fn write_summary(github: &GithubReporter) {
    let Some(path) = std::env::var_os("GITHUB_STEP_SUMMARY").filter(|p| !p.is_empty()) else {
        eprintln!(
            "warning: --ci github, but GITHUB_STEP_SUMMARY is not set: no step summary was written"
        );
        return;
    };
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut file| file.write_all(github.summary().as_bytes()));
    if let Err(e) = written {
        eprintln!(
            "warning: the step summary was not written to {}: {e}",
            Path::new(&path).display()
        );
    }
}
