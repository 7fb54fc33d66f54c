use std::time::{Duration, UNIX_EPOCH};

use super::*;
use crate::event::Verdict;
use crate::plan::{SourceFile, check};
use crate::report::SharedBuffer;

fn at(secs: u64, event: Event) -> Stamped {
    Stamped {
        time: UNIX_EPOCH + Duration::from_secs(1_790_000_000 + secs),
        event,
    }
}

fn measured(stage: usize, metric: &str, value: f64, verdict: Verdict, percent: bool) -> Event {
    Event::Measured(Measurement {
        stage,
        metric: metric.into(),
        value: Some(value),
        baseline: None,
        verdict,
        detail: None,
        breach_streak: u32::from(verdict == Verdict::Breach),
        warn_only: false,
        shown_as_percent: percent,
        source: "prom".into(),
        query: "GET /api/v1/query?query=q".into(),
        baseline_query: None,
        evaluated_at: std::time::UNIX_EPOCH,
        breaches: 0,
        comparison: None,
    })
}

fn reporter(buffer: &SharedBuffer) -> GithubReporter {
    let plan = check(SourceFile::new(
        "p.toml",
        "name = \"shop\"\n[backend]\ntype = \"command\"\nset_weight = [\"x\"]\n[[stages]]\nweight = 10\n[[stages]]\nweight = 50\n[[stages]]\nweight = 100\n",
    ))
    .plan
    .unwrap();
    let commands = Commands::new(
        &plan,
        "deploy/shop plan.toml",
        Some("s3://deploys/rollouts"),
    );
    GithubReporter::new(&plan, commands, Box::new(buffer.clone()))
}

fn stage_started(stage: usize, weight: f64, previous: f64) -> Event {
    Event::StageStarted {
        stage,
        stages: 3,
        weight,
        previous_weight: previous,
    }
}

fn passed(stage: usize, weight: f64) -> Event {
    Event::StagePassed {
        stage,
        weight,
        elapsed: Duration::from_secs(60),
    }
}

#[test]
fn escaping_follows_the_workflow_command_rules() {
    assert_eq!(escape_data("50%\r\nnext: a, b"), "50%25%0D%0Anext: a, b");
    assert_eq!(escape_property("a: b, 5%\n"), "a%3A b%2C 5%25%0A");
    assert_eq!(
        annotation(
            "error",
            "rollout shop: rolled back",
            "errors > 5%\nat stage 2"
        ),
        "::error title=rollout shop%3A rolled back::errors > 5%25%0Aat stage 2"
    );
}

#[test]
fn a_rolled_back_run_is_an_error_annotation_and_a_summary() {
    let buffer = SharedBuffer::default();
    let github = reporter(&buffer);
    let events = [
        at(0, stage_started(1, 10.0, 0.0)),
        at(30, measured(1, "errors", 0.001, Verdict::Pass, true)),
        at(30, measured(1, "p99", 120.0, Verdict::Pass, false)),
        at(60, passed(1, 10.0)),
        at(60, stage_started(2, 50.0, 10.0)),
        at(70, Event::Warning { message: "the `started` notification to notify[0] (slack) was not delivered: the receiver answered 500 Internal Server Error (after 3 attempts)".into() }),
        at(90, measured(2, "errors", 0.2, Verdict::Breach, true)),
        at(91, Event::Finished(Outcome::new(OutcomeKind::RolledBack, "Rolled back to the stable version because metric errors was 20% (rollback when > 5%) in stage 2 at 50%.".into(), Some(0.0)))),
    ];
    for event in &events {
        github.report(event);
    }
    assert_eq!(
        buffer.contents(),
        "\
::warning title=rollout shop::the `started` notification to notify[0] (slack) was not delivered: the receiver answered 500 Internal Server Error (after 3 attempts)
::error title=rollout shop%3A rolled back::Rolled back to the stable version because metric errors was 20%25 (rollback when > 5%25) in stage 2 at 50%25.
"
    );
    assert_eq!(
        github.summary(),
        "\
## rollout shop: rolled back

| Stage | Weight | Time | Result |
|---|---|---|---|
| 1 | 10% | 1m | passed |
| 2 | 50% | 31s | rolled back |
| 3 | 100% | - | not reached |

**Decision:** Rolled back to the stable version because metric errors was 20% (rollback when > 5%) in stage 2 at 50%.

### Metrics (last measurement in each stage)

| Stage | Metric | Value | Baseline | Verdict |
|---|---|---|---|---|
| 1 | errors | 0.1% | - | pass |
| 1 | p99 | 120 | - | pass |
| 2 | errors | 20% | - | breach (1 in a row) |
"
    );
}

#[test]
fn a_paused_run_is_a_warning_and_its_summary_says_how_to_go_on() {
    let buffer = SharedBuffer::default();
    let github = reporter(&buffer);
    for event in [
        at(0, stage_started(1, 10.0, 0.0)),
        at(60, passed(1, 10.0)),
        at(60, stage_started(2, 50.0, 10.0)),
        at(
            900,
            Event::Finished(Outcome::new(
                OutcomeKind::Paused,
                "Paused at 50% in stage 2: max_hold ran out | twice.".into(),
                Some(50.0),
            )),
        ),
    ] {
        github.report(&event);
    }
    assert_eq!(
        buffer.contents(),
        "::warning title=rollout shop%3A paused::Paused at 50%25 in stage 2: max_hold ran out | twice.\n"
    );
    let summary = github.summary();
    assert!(
        summary.ends_with(
            "\
**Decision:** Paused at 50% in stage 2: max_hold ran out \\| twice.

### Held at 50%

To return everyone to the stable version:

```sh
rollout rollback 'deploy/shop plan.toml' --state s3://deploys/rollouts
```

To go on from where it stopped:

```sh
rollout resume 'deploy/shop plan.toml' --state s3://deploys/rollouts
```
"
        ),
        "{summary}"
    );
    assert!(!summary.contains("http"), "link-free: {summary}");
}

#[test]
fn a_promotion_is_a_notice() {
    let buffer = SharedBuffer::default();
    let github = reporter(&buffer);
    github.report(&at(
        0,
        Event::Finished(Outcome::new(
            OutcomeKind::Promoted,
            "Every stage passed its gates and 100% of traffic is on the new version.".into(),
            Some(100.0),
        )),
    ));
    assert_eq!(
        buffer.contents(),
        "::notice title=rollout shop%3A promoted::Every stage passed its gates and 100%25 of traffic is on the new version.\n"
    );
}

#[test]
fn the_summary_names_each_stages_segments_and_mirror() {
    let plan = check(SourceFile::new(
        "p.toml",
        "name = \"shop\"\n[backend]\ntype = \"nginx\"\nupstream_file = \"/u.conf\"\nlocation_file = \"/l.inc\"\n\
         upstream = \"app\"\nstable = [\"127.0.0.1:1\"]\ncanary = [\"127.0.0.1:2\"]\npid_file = \"/p\"\n\
         [backend.segments.staff]\nheader = \"X-Staff\"\n\
         [[stages]]\nweight = 0\nmirror = 10\n[[stages]]\nweight = 0\nsegments = [\"staff\"]\n[[stages]]\nweight = 100\n",
    ))
    .plan
    .unwrap();
    let commands = Commands::new(&plan, "plan.toml", None);
    let github = GithubReporter::new(&plan, commands, Box::new(SharedBuffer::default()));
    let summary = github.summary();
    for row in [
        "| 1 | 0% + mirror 10% | - | not reached |",
        "| 2 | 0% + staff | - | not reached |",
        "| 3 | 100% | - | not reached |",
    ] {
        assert!(summary.contains(row), "{row}\n{summary}");
    }
}
