//! `--ci`, detected from the environment, through the built binary: on GitHub Actions the
//! decision is a workflow annotation on stdout and the summary is appended to
//! `$GITHUB_STEP_SUMMARY`; on GitLab CI each stage is a collapsible section. A command-backend
//! plan needs no services.

use crate::harness::Test;

/// Gray readings hold stage 1 until max_hold, and on_timeout pauses it at 10%.
const PAUSING_PLAN: &str = r#"
    name = "shop"
    [defaults]
    bake = "1s"
    interval = "200ms"
    max_hold = "1s"
    on_timeout = "pause"
    [backend]
    type = "command"
    set_weight = ["true"]
    [sources.files]
    type = "command"
    [[metrics]]
    name = "errors"
    source = "files"
    run = ["echo", "3"]
    advance = "< 1"
    rollback = "> 5"
    [[stages]]
    weight = 10
    [[stages]]
    weight = 100
"#;

#[test]
fn on_github_actions_a_paused_run_is_annotated_and_summarized() {
    let ran = Test::new()
        .plan(PAUSING_PLAN)
        .file("summary.md", "earlier step\n")
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_STEP_SUMMARY", "summary.md")
        .args(&["run", "plan.toml"])
        .status(4)
        .run();
    let stdout = ran.stdout();
    assert_eq!(
        stdout,
        "::warning title=rollout shop%3A paused::Paused at 10%25 in stage 1: stage 1 at 10%25 could not pass within max_hold (1s after its bake): errors: the latest measurement is gray. Run `rollout resume` or `rollout rollback` to continue.\n"
    );
    let summary = std::fs::read_to_string(ran.dir.path().join("summary.md")).unwrap();
    assert!(
        summary.starts_with("earlier step\n## rollout shop: paused\n"),
        "appended: {summary}"
    );
    for expected in [
        "| 1 | 10% |",
        "| 2 | 100% | - | not reached |",
        "**Decision:** Paused at 10% in stage 1",
        "| 1 | errors | 3 | - | gray |",
        "### Held at 10%",
        "```sh\nrollout rollback plan.toml\n```",
        "```sh\nrollout resume plan.toml\n```",
    ] {
        assert!(
            summary.contains(expected),
            "{expected:?} not in:\n{summary}"
        );
    }
}

#[test]
fn ci_none_keeps_the_output_plain() {
    let ran = Test::new()
        .plan(PAUSING_PLAN)
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_STEP_SUMMARY", "summary.md")
        .args(&["run", "plan.toml", "--ci", "none"])
        .status(4)
        .run();
    assert_eq!(ran.stdout(), "");
    assert!(!ran.dir.path().join("summary.md").exists());
}

#[test]
fn on_gitlab_each_stage_is_a_collapsed_section() {
    let ran = Test::new()
        .plan(PAUSING_PLAN)
        .env("GITLAB_CI", "true")
        .args(&["run", "plan.toml"])
        .status(4)
        .run();
    let stderr = String::from_utf8_lossy(&ran.output.stderr).into_owned();
    let start = stderr
        .find("\x1b[0Ksection_start:")
        .expect("a section starts");
    let end = stderr.find("\x1b[0Ksection_end:").expect("and ends");
    assert!(
        stderr[start..].contains(":rollout_stage_1[collapsed=true]\r\x1b[0KStage 1/2: 0% -> 10%\n"),
        "{stderr:?}"
    );
    let paused = stderr.find("PAUSED: ").unwrap();
    assert!(
        start < end && end < paused,
        "the decision stands outside: {stderr:?}"
    );
    assert_eq!(stderr.matches("section_start").count(), 1);
}
