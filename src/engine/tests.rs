//! Engine behaviour on a paused clock: every timing claim (a breach acts at once, a slow source
//! delays nobody, max_hold, approvals, interrupts) is checked in virtual time, without sleeps.
//! The backend, executor and probes here are in-memory doubles: the engine is what is tested;
//! the real backends and sources have their own tests against real nginx and Prometheus.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{Engine, Outcome};
use crate::approval::{Answer, ApproveAll, Approver};
use crate::backend::{Backend, BackendError, Cmd, ExecError, Executor, Output, WeightChange};
use crate::event::{Emitter, Event, Ledger, LedgerError, NoLedger, OutcomeKind, Reporter, Stamped};
use crate::metrics::{Found, Probe, ProbeError, Which};
use crate::plan::{Plan, SourceFile, check};

/// What a scripted probe answers, as a function of virtual time since the test started.
type Script = Box<dyn Fn(Duration) -> Result<Option<f64>, ProbeError> + Send + Sync>;

struct ScriptedProbe {
    start: Instant,
    delay: Duration,
    script: Script,
}

#[async_trait]
impl Probe for ScriptedProbe {
    fn describe(&self, _: Which) -> String {
        "scripted".into()
    }

    fn sent(&self, _: Which, _: std::time::SystemTime) -> String {
        "scripted".into()
    }

    async fn read(&self, _: Which, _: std::time::SystemTime) -> Result<Found, ProbeError> {
        tokio::time::sleep(self.delay).await;
        (self.script)(self.start.elapsed())
            .map(|v| v.map_or_else(|| Found::NoData("scripted".into()), Found::Value))
    }
}

type Samples = Box<dyn Fn(Duration) -> Vec<f64> + Send + Sync>;

struct SamplesProbe {
    start: Instant,
    canary: Samples,
    baseline: Vec<f64>,
}

#[async_trait]
impl Probe for SamplesProbe {
    fn describe(&self, _: Which) -> String {
        "samples".into()
    }

    fn sent(&self, which: Which, _: std::time::SystemTime) -> String {
        format!("samples of {which:?}")
    }

    async fn read(&self, which: Which, _: std::time::SystemTime) -> Result<Found, ProbeError> {
        Ok(Found::Samples(match which {
            Which::Value => (self.canary)(self.start.elapsed()),
            Which::Baseline => self.baseline.clone(),
        }))
    }
}

/// Records what the engine asked of the backend, with the virtual time of each call.
#[derive(Default)]
struct Log {
    calls: Mutex<Vec<(Duration, String)>>,
}

struct FakeBackend {
    start: Instant,
    log: Arc<Log>,
    fail_weight: Option<f64>,
    rollback_fails: bool,
}

impl FakeBackend {
    fn record(&self, call: String) {
        self.log
            .calls
            .lock()
            .unwrap()
            .push((self.start.elapsed(), call));
    }
}

#[async_trait]
impl Backend for FakeBackend {
    fn describe(&self) -> String {
        "fake backend".into()
    }

    async fn preflight(&mut self) -> Result<(), BackendError> {
        Ok(())
    }

    async fn set_weight(&mut self, change: WeightChange) -> Result<(), BackendError> {
        self.record(format!("weight {}", change.weight.percent()));
        if self.fail_weight == Some(change.weight.percent()) {
            return Err(BackendError::NotConfirmed("the router said no".into()));
        }
        Ok(())
    }

    async fn promote(&mut self) -> Result<(), BackendError> {
        self.record("promote".into());
        Ok(())
    }

    async fn rollback(&mut self) -> Result<(), BackendError> {
        self.record("rollback".into());
        if self.rollback_fails {
            return Err(BackendError::NotConfirmed("rollback refused".into()));
        }
        Ok(())
    }
}

/// Hooks "run" here: each argv's first word decides the exit code (`fail` exits 1).
struct FakeExec {
    log: Arc<Log>,
    start: Instant,
}

#[async_trait]
impl Executor for FakeExec {
    fn is_dry_run(&self) -> bool {
        false
    }

    async fn run(&self, cmd: &Cmd) -> Result<Output, ExecError> {
        let env: HashMap<_, _> = cmd.env.iter().cloned().collect();
        self.log.calls.lock().unwrap().push((
            self.start.elapsed(),
            format!(
                "run {} stage={}",
                cmd.argv.join(" "),
                env.get("ROLLOUT_STAGE").cloned().unwrap_or_default()
            ),
        ));
        let code = if cmd.argv[0] == "fail" { 1 } else { 0 };
        Ok(Output {
            code: Some(code),
            ..Output::default()
        })
    }

    async fn write_file(&self, _: &Path, _: &str) -> Result<(), ExecError> {
        Ok(())
    }

    async fn read_file(&self, _: &Path) -> Result<Option<String>, ExecError> {
        Ok(None)
    }

    fn call(&self, _: &str, _: &str, _: serde_json::Value) {}

    fn note(&self, _: &str) {}
}

#[derive(Default)]
struct Collect(Mutex<Vec<(Duration, Event)>>, Mutex<Option<Instant>>);

impl Reporter for Collect {
    fn report(&self, event: &Stamped) {
        let start = self.1.lock().unwrap().expect("start set");
        self.0
            .lock()
            .unwrap()
            .push((start.elapsed(), event.event.clone()));
    }
}

/// An approver whose answer comes from the test, after a delay.
struct Scripted(Duration, Answer);

#[async_trait]
impl Approver for Scripted {
    fn how(&self, _: &str, _: usize) -> String {
        "scripted".into()
    }

    async fn wait(&self, _: usize) -> Answer {
        tokio::time::sleep(self.0).await;
        self.1.clone()
    }
}

struct Run {
    outcome: Outcome,
    calls: Vec<(Duration, String)>,
    events: Vec<(Duration, Event)>,
}

impl Run {
    fn backend_calls(&self) -> Vec<String> {
        self.calls
            .iter()
            .filter(|(_, c)| !c.starts_with("run "))
            .map(|(_, c)| c.clone())
            .collect()
    }

    fn when(&self, call: &str) -> Duration {
        self.calls
            .iter()
            .find(|(_, c)| c == call)
            .map(|(t, _)| *t)
            .unwrap_or_else(|| panic!("no call {call:?} in {:?}", self.calls))
    }

    fn measurements(&self, metric: &str) -> Vec<(Duration, crate::event::Verdict)> {
        self.events
            .iter()
            .filter_map(|(t, e)| match e {
                Event::Measured(m) if m.metric == metric => Some((*t, m.verdict)),
                _ => None,
            })
            .collect()
    }
}

/// Makes one metric's probe, given the test's start.
type MakeProbe = Box<dyn FnOnce(Instant) -> Arc<dyn Probe>>;

struct Setup {
    plan: Plan,
    scripts: Vec<MakeProbe>,
    approver: Arc<dyn Approver>,
    interrupt_at: Option<Duration>,
    fail_weight: Option<f64>,
    rollback_fails: bool,
    ledger: Arc<dyn Ledger>,
    /// The wall-clock time when the test starts.
    wall_start: jiff::Timestamp,
}

/// A wall clock that moves with the paused tokio clock.
fn paused_wall_clock(wall_start: jiff::Timestamp, start: Instant) -> super::Clock {
    Arc::new(move || wall_start + start.elapsed())
}

/// A journal whose writes fail from the step `fails_from` matches on, as on a full disk.
struct FailingLedger {
    fails_from: Box<dyn Fn(&Event) -> bool + Send + Sync>,
    failing: std::sync::atomic::AtomicBool,
    /// Only the matching step fails, not the ones after it.
    once: bool,
}

#[async_trait]
impl Ledger for FailingLedger {
    async fn record(&self, stamped: &Stamped) -> Result<(), LedgerError> {
        use std::sync::atomic::Ordering;
        let matches = (self.fails_from)(&stamped.event);
        let fails = if self.once {
            matches
        } else {
            matches || self.failing.load(Ordering::SeqCst)
        };
        if fails {
            self.failing.store(true, Ordering::SeqCst);
            return Err(LedgerError::Unwritable("No space left on device".into()));
        }
        Ok(())
    }
}

fn failing_ledger(
    once: bool,
    from: impl Fn(&Event) -> bool + Send + Sync + 'static,
) -> Arc<dyn Ledger> {
    Arc::new(FailingLedger {
        fails_from: Box::new(from),
        failing: Default::default(),
        once,
    })
}

fn plan(text: &str) -> Plan {
    let checked = check(SourceFile::new("test.toml", text));
    assert!(
        checked.plan.is_some(),
        "{}",
        checked.file.render(&checked.diagnostics, false)
    );
    checked.plan.unwrap()
}

/// A command-backend plan with the given metrics and stages; sources are commands, whose
/// probes the test scripts.
fn plan_with(metrics: &str, stages: &str, defaults: &str) -> Plan {
    plan(&format!(
        "name = \"t\"\n[defaults]\n{defaults}\n[backend]\ntype = \"command\"\nset_weight = [\"x\"]\n\
         [sources.cmd]\ntype = \"command\"\ntimeout = \"20s\"\n{metrics}\n{stages}\n[[hooks]]\non = \"rolled-back\"\nrun = [\"notify\"]\n\
         [[hooks]]\non = \"rollback-failed\"\nrun = [\"page\"]\n"
    ))
}

fn metric(name: &str, extra: &str) -> String {
    format!(
        "[[metrics]]\nname = \"{name}\"\nsource = \"cmd\"\nrun = [\"m\"]\nadvance = \"< 1\"\nrollback = \"> 5\"\n{extra}\n"
    )
}

const THREE_STAGES: &str =
    "[[stages]]\nweight = 10\n[[stages]]\nweight = 50\n[[stages]]\nweight = 100\n";

fn constant(v: f64) -> Script {
    Box::new(move |_| Ok(Some(v)))
}

impl Setup {
    fn new(plan: Plan) -> Self {
        Setup {
            plan,
            scripts: Vec::new(),
            approver: Arc::new(ApproveAll),
            interrupt_at: None,
            fail_weight: None,
            rollback_fails: false,
            ledger: Arc::new(NoLedger),
            wall_start: "2026-03-25T10:00:00Z".parse().expect("a timestamp"),
        }
    }

    fn probe(self, script: Script) -> Self {
        self.slow_probe(Duration::ZERO, script)
    }

    fn slow_probe(mut self, delay: Duration, script: Script) -> Self {
        self.scripts.push(Box::new(move |start| {
            Arc::new(ScriptedProbe {
                start,
                delay,
                script,
            })
        }));
        self
    }

    /// A judged metric's probe: the canary's samples by virtual time, the baseline's fixed.
    fn samples(mut self, canary: Samples, baseline: Vec<f64>) -> Self {
        self.scripts.push(Box::new(move |start| {
            Arc::new(SamplesProbe {
                start,
                canary,
                baseline,
            })
        }));
        self
    }

    async fn run(self) -> Run {
        let start = Instant::now();
        let log = Arc::new(Log::default());
        let collect = Arc::new(Collect::default());
        *collect.1.lock().unwrap() = Some(start);
        let events = Emitter::new(vec![collect.clone()]);
        let probes: Vec<Arc<dyn Probe>> =
            self.scripts.into_iter().map(|make| make(start)).collect();
        assert_eq!(
            probes.len(),
            self.plan.metrics.len(),
            "one script per metric"
        );
        let (tx, rx) = mpsc::unbounded_channel();
        if let Some(at) = self.interrupt_at {
            tokio::spawn(async move {
                tokio::time::sleep(at).await;
                let _ = tx.send("SIGTERM".to_string());
            });
        } else {
            std::mem::forget(tx);
        }
        let engine = Engine {
            plan: Arc::new(self.plan),
            backend: Box::new(FakeBackend {
                start,
                log: log.clone(),
                fail_weight: self.fail_weight,
                rollback_fails: self.rollback_fails,
            }),
            probes,
            exec: Arc::new(FakeExec {
                log: log.clone(),
                start,
            }),
            events,
            ledger: self.ledger,
            approver: self.approver,
            interrupts: rx,
            dry_run: false,
            start: super::Start::Fresh,
            requested_rollback: false,
            clock: paused_wall_clock(self.wall_start, start),
        };
        let outcome = engine.run().await;
        let calls = log.calls.lock().unwrap().clone();
        let events = collect.0.lock().unwrap().clone();
        Run {
            outcome,
            calls,
            events,
        }
    }
}

const SEC: Duration = Duration::from_secs(1);

#[tokio::test(start_paused = true)]
async fn a_healthy_canary_is_promoted_after_every_bake() {
    let p = plan_with(
        &metric("errors", ""),
        THREE_STAGES,
        "bake = \"60s\"\ninterval = \"10s\"",
    );
    let run = Setup::new(p).probe(constant(0.5)).run().await;
    assert_eq!(run.outcome.kind, OutcomeKind::Promoted);
    assert_eq!(
        run.backend_calls(),
        ["weight 10", "weight 50", "weight 100", "promote"]
    );
    assert_eq!(run.when("weight 50"), 60 * SEC);
    assert_eq!(run.when("promote"), 180 * SEC);
    // The first reading comes one interval after the weight is applied.
    let first = run.measurements("errors")[0];
    assert_eq!(first.0, 10 * SEC);
}

#[tokio::test(start_paused = true)]
async fn a_breach_rolls_back_at_once_not_at_the_end_of_the_bake() {
    let p = plan_with(
        &metric("errors", ""),
        THREE_STAGES,
        "bake = \"10m\"\ninterval = \"10s\"",
    );
    // Healthy in stage 1; in stage 2 (from 600s) the error rate jumps.
    let run = Setup::new(p)
        .probe(Box::new(|t| {
            Ok(Some(if t > 600 * SEC { 9.0 } else { 0.1 }))
        }))
        .run()
        .await;
    assert_eq!(run.outcome.kind, OutcomeKind::RolledBack);
    assert_eq!(run.when("rollback"), 610 * SEC);
    assert_eq!(run.outcome.weight, Some(0.0));
    assert!(
        run.outcome
            .reason
            .contains("metric errors was 9 (rollback when > 5)"),
        "{}",
        run.outcome.reason
    );
    assert!(
        run.calls.iter().any(|(_, c)| c == "run notify stage=2"),
        "rolled-back hook ran: {:?}",
        run.calls
    );
}

#[tokio::test(start_paused = true)]
async fn a_slow_source_never_delays_another_metrics_breach() {
    let metrics = format!("{}{}", metric("slow", ""), metric("fast", ""));
    let p = plan_with(&metrics, THREE_STAGES, "bake = \"10m\"\ninterval = \"10s\"");
    let run = Setup::new(p)
        .slow_probe(15 * SEC, constant(0.1))
        .probe(Box::new(|t| {
            Ok(Some(if t >= 30 * SEC { 9.0 } else { 0.1 }))
        }))
        .run()
        .await;
    assert_eq!(run.outcome.kind, OutcomeKind::RolledBack);
    assert_eq!(run.when("rollback"), 30 * SEC);
}

#[tokio::test(start_paused = true)]
async fn an_unreachable_source_holds_until_max_hold_then_rolls_back() {
    let p = plan_with(
        &metric("errors", ""),
        THREE_STAGES,
        "bake = \"1m\"\ninterval = \"10s\"\nmax_hold = \"5m\"",
    );
    let run = Setup::new(p)
        .probe(Box::new(|_| {
            Err(ProbeError::Unreachable("connection refused".into()))
        }))
        .run()
        .await;
    assert_eq!(run.outcome.kind, OutcomeKind::RolledBack);
    // Never advanced, never rolled back before bake + max_hold.
    assert_eq!(run.backend_calls(), ["weight 10", "rollback"]);
    assert_eq!(run.when("rollback"), 360 * SEC);
    assert!(
        run.outcome.reason.contains("max_hold"),
        "{}",
        run.outcome.reason
    );
}

#[tokio::test(start_paused = true)]
async fn on_timeout_pause_leaves_the_weight() {
    let p = plan_with(
        &metric("errors", ""),
        THREE_STAGES,
        "bake = \"1m\"\ninterval = \"10s\"\nmax_hold = \"2m\"\non_timeout = \"pause\"",
    );
    let run = Setup::new(p).probe(Box::new(|_| Ok(None))).run().await;
    assert_eq!(run.outcome.kind, OutcomeKind::Paused);
    assert_eq!(run.outcome.weight, Some(10.0));
    assert_eq!(run.backend_calls(), ["weight 10"]);
    assert!(
        run.outcome.reason.contains("rollout resume"),
        "{}",
        run.outcome.reason
    );
}

#[tokio::test(start_paused = true)]
async fn rollback_after_counts_breaches_across_missing_evidence() {
    let p = plan_with(
        &metric("errors", "rollback_after = 2"),
        THREE_STAGES,
        "bake = \"10m\"\ninterval = \"10s\"",
    );
    // t=10 breach, t=20 error, t=30 no data, t=40 breach: the second breach in a row.
    let run = Setup::new(p)
        .probe(Box::new(|t| match t.as_secs() {
            10 | 40 => Ok(Some(9.0)),
            20 => Err(ProbeError::Timeout(SEC)),
            30 => Ok(None),
            _ => Ok(Some(0.1)),
        }))
        .run()
        .await;
    assert_eq!(run.outcome.kind, OutcomeKind::RolledBack);
    assert_eq!(run.when("rollback"), 40 * SEC);
}

#[tokio::test(start_paused = true)]
async fn a_stage_waits_for_min_samples_after_its_bake() {
    let p = plan_with(
        &metric("errors", "min_samples = 3"),
        THREE_STAGES,
        "bake = \"10s\"\ninterval = \"10s\"",
    );
    let run = Setup::new(p).probe(constant(0.1)).run().await;
    assert_eq!(run.outcome.kind, OutcomeKind::Promoted);
    // Three passing readings at 10, 20, 30s: the bake alone (10s) is not enough.
    assert_eq!(run.when("weight 50"), 30 * SEC);
    assert!(
        run.events
            .iter()
            .any(|(_, e)| matches!(e, Event::Holding { .. }))
    );
}

#[tokio::test(start_paused = true)]
async fn gray_readings_hold_the_stage() {
    let p = plan_with(
        &metric("errors", ""),
        THREE_STAGES,
        "bake = \"30s\"\ninterval = \"10s\"\nmax_hold = \"1m\"",
    );
    // Between advance (< 1) and rollback (> 5): neither passes nor breaches.
    let run = Setup::new(p).probe(constant(3.0)).run().await;
    assert_eq!(run.outcome.kind, OutcomeKind::RolledBack);
    assert_eq!(run.when("rollback"), 90 * SEC);
}

#[tokio::test(start_paused = true)]
async fn sigterm_mid_bake_follows_on_interrupt() {
    for (policy, kind, weight) in [
        ("rollback", OutcomeKind::RolledBack, Some(0.0)),
        ("pause", OutcomeKind::Paused, Some(10.0)),
    ] {
        let p = plan_with(
            &metric("errors", ""),
            THREE_STAGES,
            &format!("bake = \"10m\"\ninterval = \"10s\"\non_interrupt = \"{policy}\""),
        );
        let mut setup = Setup::new(p).probe(constant(0.1));
        setup.interrupt_at = Some(95 * SEC);
        let run = setup.run().await;
        assert_eq!(run.outcome.kind, kind, "{policy}");
        assert_eq!(run.outcome.weight, weight, "{policy}");
        assert!(
            run.outcome.reason.contains("SIGTERM"),
            "{}",
            run.outcome.reason
        );
        if policy == "rollback" {
            assert_eq!(run.when("rollback"), 95 * SEC);
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_refused_approval_rolls_back() {
    let stages = "[[stages]]\nweight = 10\napproval = true\n[[stages]]\nweight = 100\n";
    let p = plan_with(
        &metric("errors", ""),
        stages,
        "bake = \"30s\"\ninterval = \"10s\"",
    );
    let mut setup = Setup::new(p).probe(constant(0.1));
    setup.approver = Arc::new(Scripted(45 * SEC, Answer::Rejected { by: "alice".into() }));
    let run = setup.run().await;
    assert_eq!(run.outcome.kind, OutcomeKind::RolledBack);
    // Asked when the gates passed at 30s, refused 45s later.
    assert_eq!(run.when("rollback"), 75 * SEC);
    assert!(
        run.outcome
            .reason
            .contains("alice refused to approve stage 1"),
        "{}",
        run.outcome.reason
    );
}

#[tokio::test(start_paused = true)]
async fn a_breach_while_waiting_for_approval_still_rolls_back() {
    let stages = "[[stages]]\nweight = 10\napproval = true\n[[stages]]\nweight = 100\n";
    let p = plan_with(
        &metric("errors", ""),
        stages,
        "bake = \"30s\"\ninterval = \"10s\"",
    );
    let mut setup = Setup::new(p).probe(Box::new(|t| {
        Ok(Some(if t >= 50 * SEC { 9.0 } else { 0.1 }))
    }));
    setup.approver = Arc::new(Scripted(3600 * SEC, Answer::Approved { by: "bob".into() }));
    let run = setup.run().await;
    assert_eq!(run.outcome.kind, OutcomeKind::RolledBack);
    assert_eq!(run.when("rollback"), 50 * SEC);
}

#[tokio::test(start_paused = true)]
async fn an_approval_that_never_comes_ends_with_on_timeout() {
    let stages = "[[stages]]\nweight = 10\napproval = true\n[[stages]]\nweight = 100\n";
    let p = plan_with(
        &metric("errors", ""),
        stages,
        "bake = \"30s\"\ninterval = \"10s\"\nmax_hold = \"5m\"",
    );
    let mut setup = Setup::new(p).probe(constant(0.1));
    setup.approver = Arc::new(Scripted(3600 * SEC, Answer::Approved { by: "bob".into() }));
    let run = setup.run().await;
    assert_eq!(run.outcome.kind, OutcomeKind::RolledBack);
    assert_eq!(run.when("rollback"), 330 * SEC);
    assert!(
        run.outcome.reason.contains("no approval arrived"),
        "{}",
        run.outcome.reason
    );
}

#[tokio::test(start_paused = true)]
async fn a_failing_stage_hook_rolls_back() {
    let stages = "[[stages]]\nweight = 0\n[[stages.hooks]]\nrun = [\"fail\", \"migrate\"]\n[[stages]]\nweight = 100\n";
    let p = plan_with(
        &metric("errors", ""),
        stages,
        "bake = \"30s\"\ninterval = \"10s\"",
    );
    let run = Setup::new(p).probe(constant(0.1)).run().await;
    assert_eq!(run.outcome.kind, OutcomeKind::RolledBack);
    assert_eq!(run.backend_calls(), ["weight 0", "rollback"]);
    assert!(
        run.outcome.reason.contains("hook `fail migrate` failed"),
        "{}",
        run.outcome.reason
    );
}

#[tokio::test(start_paused = true)]
async fn a_backend_failure_returns_traffic_to_stable_and_exits_1() {
    let p = plan_with(
        &metric("errors", ""),
        THREE_STAGES,
        "bake = \"30s\"\ninterval = \"10s\"",
    );
    let mut setup = Setup::new(p).probe(constant(0.1));
    setup.fail_weight = Some(50.0);
    let run = setup.run().await;
    assert_eq!(run.outcome.kind, OutcomeKind::Failed);
    assert_eq!(run.outcome.exit.code(), 1);
    assert_eq!(run.backend_calls(), ["weight 10", "weight 50", "rollback"]);
    assert!(
        run.outcome.reason.contains("the router said no"),
        "{}",
        run.outcome.reason
    );
}

#[tokio::test(start_paused = true)]
async fn a_rollback_that_keeps_failing_is_reported_as_unknown_traffic() {
    let p = plan_with(
        &metric("errors", ""),
        THREE_STAGES,
        "bake = \"30s\"\ninterval = \"10s\"",
    );
    let mut setup = Setup::new(p).probe(constant(9.0));
    setup.rollback_fails = true;
    let run = setup.run().await;
    assert_eq!(run.outcome.kind, OutcomeKind::RollbackFailed);
    assert_eq!(run.outcome.exit.code(), 5);
    assert_eq!(run.outcome.weight, None);
    assert_eq!(
        run.backend_calls(),
        ["weight 10", "rollback", "rollback", "rollback"]
    );
}

#[tokio::test(start_paused = true)]
async fn warn_mode_metrics_never_gate() {
    let metrics = format!(
        "{}{}",
        metric("errors", ""),
        metric("latency", "mode = \"warn\"")
    );
    let p = plan_with(&metrics, THREE_STAGES, "bake = \"30s\"\ninterval = \"10s\"");
    let run = Setup::new(p)
        .probe(constant(0.1))
        .probe(constant(99.0))
        .run()
        .await;
    assert_eq!(run.outcome.kind, OutcomeKind::Promoted);
    assert!(
        run.measurements("latency")
            .iter()
            .all(|(_, v)| *v == crate::event::Verdict::Breach)
    );
}

/// Three one-minute stages gated by a metric that always passes.
fn three_healthy_stages() -> Setup {
    Setup::new(plan_with(
        &metric("errors", ""),
        THREE_STAGES,
        "bake = \"1m\"",
    ))
    .probe(constant(0.5))
}

fn warnings(run: &Run) -> Vec<String> {
    run.events
        .iter()
        .filter_map(|(_, e)| match e {
            Event::Warning { message } => Some(message.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_stage_whose_start_cannot_be_recorded_is_not_started_and_traffic_returns_to_stable() {
    let mut setup = three_healthy_stages();
    setup.ledger = failing_ledger(true, |e| matches!(e, Event::StageStarted { stage: 2, .. }));
    let run = setup.run().await;
    assert_eq!(run.backend_calls(), ["weight 10", "rollback"]);
    assert_eq!(run.outcome.kind, OutcomeKind::Failed);
    assert_eq!(run.outcome.weight, Some(0.0));
    assert_eq!(
        run.outcome.reason,
        "Could not proceed: stage 2 was not started because the journal cannot be written: \
         No space left on device. Traffic was returned to the stable version."
    );
}

#[tokio::test(start_paused = true)]
async fn a_rollback_that_cannot_be_recorded_is_not_started_and_says_where_traffic_is() {
    let mut setup = three_healthy_stages();
    // The disk fills up during stage 1's bake: nothing after its weight can be recorded.
    setup.ledger = failing_ledger(false, |e| matches!(e, Event::StagePassed { .. }));
    let run = setup.run().await;
    assert_eq!(
        run.backend_calls(),
        ["weight 10"],
        "no step was taken unrecorded"
    );
    assert_eq!(run.outcome.kind, OutcomeKind::Failed);
    assert_eq!(run.outcome.weight, Some(10.0));
    assert_eq!(
        run.outcome.reason,
        "Could not proceed: stage 2 was not started because the journal cannot be written: \
         No space left on device, but rolling back was not started because the journal cannot be \
         written: No space left on device. Traffic was left where it was: 10% on the new version \
         (stage 1). Make the state folder writable again, then run `rollout rollback` (or \
         `rollout resume`)"
    );
    let finished = run
        .events
        .iter()
        .filter(|(_, e)| matches!(e, Event::Finished(_)))
        .count();
    assert_eq!(finished, 1, "the outcome is still told");
}

#[tokio::test(start_paused = true)]
async fn a_breach_whose_rollback_cannot_be_recorded_leaves_traffic_and_says_so() {
    let mut setup = Setup::new(plan_with(
        &metric("errors", ""),
        THREE_STAGES,
        "bake = \"1m\"",
    ))
    .probe(Box::new(|t| {
        Ok(Some(if t > Duration::from_secs(75) {
            9.0
        } else {
            0.5
        }))
    }));
    setup.ledger = failing_ledger(false, |e| matches!(e, Event::RollingBack { .. }));
    let run = setup.run().await;
    assert_eq!(run.backend_calls(), ["weight 10", "weight 50"]);
    assert_eq!(run.outcome.kind, OutcomeKind::Failed);
    assert_eq!(run.outcome.weight, Some(50.0));
    assert!(
        run.outcome
            .reason
            .starts_with("Could not proceed: metric errors was 9")
            && run
                .outcome
                .reason
                .contains("Traffic was left where it was: 50% on the new version (stage 2)"),
        "{}",
        run.outcome.reason
    );
}

#[tokio::test(start_paused = true)]
async fn an_outcome_that_cannot_be_recorded_keeps_its_exit_code_and_warns() {
    let mut setup = three_healthy_stages();
    setup.ledger = failing_ledger(true, |e| matches!(e, Event::Finished(_)));
    let run = setup.run().await;
    assert_eq!(run.outcome.kind, OutcomeKind::Promoted);
    assert_eq!(
        warnings(&run),
        [
            "the journal cannot be written: No space left on device; trying again before going on",
            "the journal cannot be written: No space left on device: the outcome below is not on \
          record, and `rollout status` will show an earlier step"
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_passing_journal_fault_is_retried_and_the_run_goes_on() {
    let mut setup = three_healthy_stages();
    let failures = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let counted = failures.clone();
    // Two failed writes of stage 2's start, then the disk has room again.
    setup.ledger = failing_ledger(true, move |e| {
        matches!(e, Event::StageStarted { stage: 2, .. })
            && counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < 2
    });
    let run = setup.run().await;
    assert_eq!(run.outcome.kind, OutcomeKind::Promoted);
    assert_eq!(failures.load(std::sync::atomic::Ordering::SeqCst), 3);
}

mod window;
/// Breaches one reading in three: never two in a row.
fn one_in_three(t: Duration) -> Result<Option<f64>, ProbeError> {
    Ok(Some(if t.as_secs() % 30 == 10 { 9.0 } else { 0.1 }))
}

#[tokio::test(start_paused = true)]
async fn a_breach_budget_catches_breaches_that_never_make_a_streak() {
    let p = plan_with(
        &metric("errors", "rollback_after = 2"),
        THREE_STAGES,
        "bake = \"10m\"\ninterval = \"10s\"",
    );
    let run = Setup::new(p).probe(Box::new(one_in_three)).run().await;
    assert_eq!(run.outcome.kind, OutcomeKind::RolledBack);
    // Breaches at 10, 40 and 70 s: the third one in the stage is the budget (3 by default).
    assert_eq!(run.when("rollback"), 70 * SEC);
    assert_eq!(
        run.outcome.reason,
        "Rolled back to the stable version because metric errors was 9 (rollback when > 5), \
         its breach number 3 in this stage (max_breaches = 3) in stage 1 at 10%."
    );
    // Without a budget the same readings hold no streak: the stage passes.
    let p = plan_with(
        &metric(
            "errors",
            "rollback_after = 2\nmax_breaches = 0\nmin_samples = 1",
        ),
        THREE_STAGES,
        "bake = \"60s\"\ninterval = \"10s\"",
    );
    let run = Setup::new(p)
        .probe(Box::new(|t| {
            Ok(Some(if t.as_secs() % 20 == 10 { 9.0 } else { 0.1 }))
        }))
        .run()
        .await;
    assert_eq!(run.outcome.kind, OutcomeKind::Promoted);
}

#[tokio::test(start_paused = true)]
async fn a_breach_budget_is_per_stage() {
    let plan = || {
        plan_with(
            &metric("errors", "rollback_after = 2"),
            THREE_STAGES,
            "bake = \"60s\"\ninterval = \"10s\"",
        )
    };
    // Two breaches in stage 1 (30, 50 s) and one in stage 2 (80 s): three in all, never three
    // in one stage.
    let run = Setup::new(plan())
        .probe(Box::new(|t| {
            Ok(Some(if [30, 50, 80].contains(&t.as_secs()) {
                9.0
            } else {
                0.1
            }))
        }))
        .run()
        .await;
    assert_eq!(
        run.outcome.kind,
        OutcomeKind::Promoted,
        "{}",
        run.outcome.reason
    );
    assert_eq!(run.when("weight 50"), 60 * SEC);
    // Stage 2 (60 to 120 s) with three scattered breaches of its own: its third rolls back.
    let run = Setup::new(plan())
        .probe(Box::new(|t| {
            let breach = [30, 50, 70, 90, 110].contains(&t.as_secs());
            Ok(Some(if breach { 9.0 } else { 0.1 }))
        }))
        .run()
        .await;
    assert_eq!(run.outcome.kind, OutcomeKind::RolledBack);
    assert_eq!(run.when("rollback"), 110 * SEC);
    assert!(
        run.outcome
            .reason
            .contains("breach number 3 in this stage (max_breaches = 3) in stage 2"),
        "{}",
        run.outcome.reason
    );
}

#[tokio::test(start_paused = true)]
async fn a_streak_and_a_budget_together_the_first_to_fire_decides() {
    let p = plan_with(
        &metric("errors", "rollback_after = 2\nmax_breaches = 3"),
        THREE_STAGES,
        "bake = \"10m\"\ninterval = \"10s\"",
    );
    // 10 breach, 20 pass, 30 breach, 40 breach: the streak of two fires at 40 s, before a third.
    let run = Setup::new(p)
        .probe(Box::new(|t| {
            Ok(Some(if [10, 30, 40].contains(&t.as_secs()) {
                9.0
            } else {
                0.1
            }))
        }))
        .run()
        .await;
    assert_eq!(run.when("rollback"), 40 * SEC);
    assert!(
        run.outcome
            .reason
            .contains("2 breaches in a row in stage 1"),
        "{}",
        run.outcome.reason
    );
    let breaches: Vec<u32> = run
        .events
        .iter()
        .filter_map(|(_, e)| match e {
            Event::Measured(m) => Some(m.breaches),
            _ => None,
        })
        .collect();
    assert_eq!(breaches, [1, 1, 2, 3]);
}

/// 20 latencies around `center` seconds, the same spread each time.
fn latencies(center: f64) -> Vec<f64> {
    (0..20)
        .map(|i| center * (0.95 + 0.005 * f64::from(i)))
        .collect()
}

fn judged(extra: &str) -> String {
    format!(
        "[[metrics]]\nname = \"latency\"\nsource = \"cmd\"\nrun = [\"canary\"]\nbaseline_run = [\"stable\"]\n\
         judge = \"mann-whitney\"\n{extra}\n"
    )
}

#[tokio::test(start_paused = true)]
async fn a_judged_canary_forty_percent_slower_is_rolled_back_with_the_evidence() {
    let stages = "[[stages]]\nweight = 10\n[[stages]]\nweight = 50\nmetrics = []\n[[stages]]\nweight = 100\nmetrics = []\n";
    let p = plan_with(&judged(""), stages, "bake = \"10m\"\ninterval = \"30s\"");
    // Healthy for two minutes, then 40% slower: still only 0.14 s, under any fixed ceiling.
    let run = Setup::new(p)
        .samples(
            Box::new(|t| latencies(if t > 120 * SEC { 0.14 } else { 0.1 })),
            latencies(0.1),
        )
        .run()
        .await;
    assert_eq!(run.outcome.kind, OutcomeKind::RolledBack);
    assert_eq!(run.when("rollback"), 150 * SEC);
    let reason = &run.outcome.reason;
    assert!(
        reason.starts_with(
            "Rolled back to the stable version because metric latency had a median 0.1396 against \
             the baseline's 0.09975 (40% higher, p = 3.4e-8"
        ) && reason.ends_with(
            "; 20 and 20 samples) (mann-whitney: a breach when higher by more than 25% at 98% \
             confidence) in stage 1 at 10%."
        ),
        "{reason}"
    );
    let last = run
        .events
        .iter()
        .rev()
        .find_map(|(_, e)| match e {
            Event::Measured(m) => Some(m.clone()),
            _ => None,
        })
        .unwrap();
    let c = last
        .comparison
        .expect("a judged measurement carries its comparison");
    assert_eq!((c.canary_points, c.baseline_points), (20, 20));
    assert!(
        c.worse && c.significant && c.p_value.unwrap() < 0.02,
        "{c:?}"
    );
    assert_eq!(last.value, c.canary_median);
    assert_eq!(last.query, "samples of Value");
    assert_eq!(last.baseline_query.as_deref(), Some("samples of Baseline"));
    let verdicts: Vec<_> = run
        .measurements("latency")
        .iter()
        .map(|(_, v)| *v)
        .collect();
    use crate::event::Verdict::{Breach, Pass};
    assert_eq!(verdicts, [Pass, Pass, Pass, Pass, Breach]);
}

#[tokio::test(start_paused = true)]
async fn a_judged_metric_with_too_few_samples_holds() {
    let p = plan_with(
        &judged("min_points = 30"),
        "[[stages]]\nweight = 10\n[[stages]]\nweight = 100\nmetrics = []\n",
        "bake = \"1m\"\ninterval = \"30s\"\nmax_hold = \"1m\"\non_timeout = \"pause\"",
    );
    let run = Setup::new(p)
        .samples(Box::new(|_| latencies(0.1)), latencies(0.1))
        .run()
        .await;
    assert_eq!(run.outcome.kind, OutcomeKind::Paused);
    let detail = run.events.iter().find_map(|(_, e)| match e {
        Event::Measured(m) => m.detail.clone(),
        _ => None,
    });
    assert_eq!(
        detail.as_deref(),
        Some("20 canary and 20 baseline samples in the window; min_points is 30")
    );
}
