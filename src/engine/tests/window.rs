//! The change window and `stuck_after`, on the paused clock: a wall clock that follows it
//! lets a weekend pass in virtual time.

use super::*;

fn windowed(defaults: &str, window: &str) -> Plan {
    plan_with(
        &metric("errors", ""),
        &format!("{THREE_STAGES}\n[window]\n{window}\n"),
        defaults,
    )
}

const OFFICE_HOURS: &str = "days = [\"mon\", \"tue\", \"wed\", \"thu\", \"fri\"]\nhours = \"09:00-16:00\"\ntimezone = \"Europe/Berlin\"";

fn window_events(run: &Run) -> Vec<(Duration, usize, String)> {
    run.events
        .iter()
        .filter_map(|(t, e)| match e {
            Event::WindowClosed { stage, opens, .. } => Some((*t, *stage, opens.clone())),
            _ => None,
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_ready_stage_holds_over_the_weekend_without_using_up_max_hold() {
    let p = windowed(
        "bake = \"5m\"\ninterval = \"1m\"\nmax_hold = \"10m\"",
        OFFICE_HOURS,
    );
    let mut setup = Setup::new(p).probe(constant(0.5));
    // Friday 2026-03-27, 15:50 in Berlin (CET): stage 2 is ready at 16:00, as the window closes.
    setup.wall_start = "2026-03-27T14:50:00Z".parse().unwrap();
    let run = setup.run().await;
    assert_eq!(
        run.outcome.kind,
        OutcomeKind::Promoted,
        "{}",
        run.outcome.reason
    );
    assert_eq!(run.when("weight 50"), 300 * SEC);
    // Monday 09:00 is CEST by then: 07:00 UTC, 64 hours after Friday 16:00 CET.
    let monday = 600 * SEC + 64 * 3600 * SEC;
    assert_eq!(run.when("weight 100"), monday);
    assert_eq!(
        window_events(&run),
        [(600 * SEC, 2, "Mon 2026-03-30 09:00 CEST".to_string())]
    );
    // Stage 2 kept measuring the whole weekend, every minute.
    let stage_2: Vec<Duration> = run
        .events
        .iter()
        .filter(|(_, e)| matches!(e, Event::Measured(m) if m.stage == 2))
        .map(|(t, _)| *t)
        .collect();
    assert_eq!(stage_2.first(), Some(&(360 * SEC)));
    assert!(monday - *stage_2.last().unwrap() <= 60 * SEC);
    assert!(stage_2.windows(2).all(|w| w[1] - w[0] == 60 * SEC));
}

#[tokio::test(start_paused = true)]
async fn a_breach_while_waiting_for_the_window_still_rolls_back() {
    let p = windowed(
        "bake = \"5m\"\ninterval = \"1m\"\nmax_hold = \"10m\"",
        OFFICE_HOURS,
    );
    // Saturday morning, three hours into the wait, the new version starts failing.
    let mut setup = Setup::new(p).probe(Box::new(|t| {
        Ok(Some(if t > 15 * 3600 * SEC { 9.0 } else { 0.5 }))
    }));
    setup.wall_start = "2026-03-27T14:50:00Z".parse().unwrap();
    let run = setup.run().await;
    assert_eq!(run.outcome.kind, OutcomeKind::RolledBack);
    assert_eq!(run.backend_calls(), ["weight 10", "weight 50", "rollback"]);
    assert_eq!(run.when("rollback"), 15 * 3600 * SEC + 60 * SEC);
}

#[tokio::test(start_paused = true)]
async fn a_fresh_run_outside_the_window_starts_nothing_until_it_opens() {
    let p = windowed("bake = \"5m\"\ninterval = \"1m\"", OFFICE_HOURS);
    let mut setup = Setup::new(p).probe(constant(0.5));
    // Sunday 2026-03-29, 12:00 UTC: the window opens Monday 09:00 CEST, 19 hours later.
    setup.wall_start = "2026-03-29T12:00:00Z".parse().unwrap();
    let run = setup.run().await;
    assert_eq!(run.outcome.kind, OutcomeKind::Promoted);
    assert_eq!(run.when("weight 10"), 19 * 3600 * SEC);
    assert_eq!(
        window_events(&run),
        [(Duration::ZERO, 0, "Mon 2026-03-30 09:00 CEST".to_string())]
    );
}

#[tokio::test(start_paused = true)]
async fn an_interrupt_while_waiting_to_start_changes_nothing_but_the_rollback_it_asks_for() {
    let p = windowed("bake = \"5m\"", OFFICE_HOURS);
    let mut setup = Setup::new(p).probe(constant(0.5));
    setup.wall_start = "2026-03-29T12:00:00Z".parse().unwrap();
    setup.interrupt_at = Some(3600 * SEC);
    let run = setup.run().await;
    assert_eq!(run.outcome.kind, OutcomeKind::RolledBack);
    assert_eq!(run.backend_calls(), ["rollback"]);
    assert_eq!(run.when("rollback"), 3600 * SEC);
}

fn stuck_events(run: &Run) -> Vec<(Duration, usize, Vec<String>)> {
    run.events
        .iter()
        .filter_map(|(t, e)| match e {
            Event::Stuck { stage, reasons, .. } => Some((*t, *stage, reasons.clone())),
            _ => None,
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_stage_that_does_not_advance_says_it_is_stuck_once() {
    let p = plan_with(
        &metric("errors", ""),
        "[[stages]]\nweight = 10\n[[stages]]\nweight = 100\n",
        "bake = \"1m\"\ninterval = \"10s\"\nmax_hold = \"30m\"\nstuck_after = \"2m\"",
    );
    // Gray (neither passing nor breaching) for the first 200 s: stage 1 holds.
    let run = Setup::new(p)
        .probe(Box::new(|t| {
            Ok(Some(if t < 200 * SEC { 3.0 } else { 0.5 }))
        }))
        .run()
        .await;
    assert_eq!(run.outcome.kind, OutcomeKind::Promoted);
    assert_eq!(
        stuck_events(&run),
        [(
            120 * SEC,
            1,
            vec!["errors: the latest measurement is gray".to_string()]
        )]
    );
    // Stage 2 passed within its bake: not stuck.
    assert_eq!(run.when("weight 100"), 200 * SEC);
}

#[tokio::test(start_paused = true)]
async fn stuck_waiting_for_an_approval_says_so() {
    let p = plan_with(
        &metric("errors", ""),
        "[[stages]]\nweight = 10\napproval = true\n[[stages]]\nweight = 100\n",
        "bake = \"1m\"\ninterval = \"10s\"\nstuck_after = \"5m\"",
    );
    let mut setup = Setup::new(p).probe(constant(0.5));
    setup.approver = Arc::new(Scripted(
        20 * 60 * SEC,
        Answer::Approved { by: "alice".into() },
    ));
    let run = setup.run().await;
    assert_eq!(run.outcome.kind, OutcomeKind::Promoted);
    assert_eq!(
        stuck_events(&run),
        [(300 * SEC, 1, vec!["waiting for approval".to_string()])]
    );
}
