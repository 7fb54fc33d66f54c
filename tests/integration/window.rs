//! `[window]` from the command line: `run` outside the window is refused before anything is
//! touched and names when it opens; with --wait-for-window it waits, and an interrupt while it
//! waits changes nothing but what on_interrupt asks for. (The waiting itself, across a DST
//! change, is tested on the paused clock in the engine.)

use libc::SIGINT;

use crate::harness::Test;
use crate::running::Running;

/// A window frozen from yesterday for 300 days: closed now, opening at a known midnight.
fn frozen_plan(on_interrupt: &str) -> (String, String) {
    let today = jiff::Timestamp::now()
        .to_zoned_datetime(jiff::tz::TimeZone::UTC)
        .date();
    let day = |n: i64| today.checked_add(jiff::Span::new().days(n)).unwrap();
    let opens = day(300);
    let plan = format!(
        r#"
        name = "shop"
        [defaults]
        on_interrupt = "{on_interrupt}"
        [backend]
        type = "command"
        set_weight = ["touch", "weight-was-set"]
        rollback = ["touch", "rolled-back"]
        [window]
        freeze = ["{}/{}"]
        [[stages]]
        weight = 100
        bake = "1s"
        interval = "1s"
        "#,
        day(-1),
        day(299)
    );
    (plan, opens.strftime("%a %Y-%m-%d 00:00 UTC").to_string())
}

#[test]
fn run_outside_the_window_is_refused_naming_when_it_opens() {
    let (plan, opens) = frozen_plan("rollback");
    let ran = Test::new()
        .plan(&plan)
        .args(&["run", "plan.toml"])
        .status(2)
        .run();
    let stderr = String::from_utf8_lossy(&ran.output.stderr).into_owned();
    let refusal = stderr.lines().last().unwrap_or_default();
    assert!(
        refusal.starts_with(
            "error: rollout `shop` is outside its change window (every day, all day UTC; frozen "
        ) && refusal.contains(&format!("): it next opens {opens} (in "))
            && refusal.ends_with(
                "Nothing was changed; run it again then, or with --wait-for-window to wait for the window here"
            ),
        "{stderr}"
    );
    assert!(!ran.dir.path().join("weight-was-set").exists());
    assert!(
        !ran.dir.path().join(".rollout").exists(),
        "no state was written"
    );
}

#[test]
fn the_plan_table_shows_the_window() {
    let ran = Test::new()
        .plan(
            r#"
            name = "shop"
            [defaults]
            stuck_after = "20m"
            [backend]
            type = "command"
            set_weight = ["true"]
            [window]
            days = ["mon", "tue", "wed", "thu"]
            hours = "09:00-16:00"
            timezone = "Europe/Berlin"
            freeze = ["2026-12-20/2027-01-04"]
            [[notify]]
            type = "slack"
            url = "${SLACK_URL}"
            [[stages]]
            weight = 100
            "#,
        )
        .args(&["plan", "plan.toml"])
        .run();
    let stdout = ran.stdout();
    let tail: Vec<&str> = stdout.lines().rev().take(3).collect();
    assert_eq!(
        tail,
        [
            "Notifies:         notify[0] (slack) on started, approval-needed, stuck, promoted, rolled-back, paused, rollback-failed",
            "Stuck after:      20m in a stage",
            "Change window:    mon,tue,wed,thu, 09:00-16:00 Europe/Berlin; frozen 2026-12-20/2027-01-04 (outside it nothing starts or advances; rolling back is always allowed)",
        ],
        "{stdout}"
    );
}

#[test]
fn waiting_for_the_window_can_be_interrupted_and_changes_nothing_else() {
    let (plan, opens) = frozen_plan("pause");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("plan.toml"),
        crate::harness::unindent(&plan),
    )
    .unwrap();
    let running = Running::start_in(dir.path(), &["run", "plan.toml", "--wait-for-window"]);
    running.wait_for_line(&format!(
        "is closed: nothing starts until it opens, {opens}"
    ));
    running.signal(SIGINT);
    let (code, stderr, _) = running.finish();
    assert_eq!(code, 4, "{stderr}");
    assert!(
        stderr.contains("PAUSED: Paused at 0% in stage 0"),
        "{stderr}"
    );
    assert!(!dir.path().join("weight-was-set").exists());
    assert!(!dir.path().join("rolled-back").exists());
}
