//! The change window and the stuck alarm, as the engine meets them: a stage ready to advance
//! outside the window holds at its weight (still measuring) until the window opens, and that
//! wait uses up neither `max_hold` nor `stuck_after`.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use tokio::time::Instant;

use super::{Engine, Halt};
use crate::event::Event;
use crate::plan::{Stage, Window};

/// The wall clock, for the change window. Tests hand in one that follows the paused clock.
pub type Clock = Arc<dyn Fn() -> Timestamp + Send + Sync>;

/// The real wall clock.
pub fn system_clock() -> Clock {
    Arc::new(Timestamp::now)
}

/// Re-read the wall clock at least this often while waiting: it may jump (NTP, a suspended
/// machine), and the timer would not know.
const LONGEST_NAP: Duration = Duration::from_secs(60);

/// A stage's time spent waiting for the window, which its deadlines do not count.
#[derive(Default)]
pub(super) struct WindowWait {
    since: Option<Instant>,
    /// When to look at the window again.
    wake: Option<Instant>,
    before: Duration,
}

impl WindowWait {
    pub fn waiting(&self) -> bool {
        self.since.is_some()
    }

    /// How far the stage's deadlines move: every wait so far, and the current one.
    pub fn paused(&self) -> Duration {
        self.before + self.since.map_or(Duration::ZERO, |s| s.elapsed())
    }

    /// The stage is not (or no longer) ready: a wait, if any, is over.
    pub fn end(&mut self) {
        if let Some(since) = self.since.take() {
            self.before += since.elapsed();
        }
        self.wake = None;
    }

    /// Resolves when the window should be looked at again.
    pub async fn nap(&self) {
        match self.wake {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
    }
}

impl Engine {
    /// `None` when the plan has no window or it is open now; otherwise the window and when it
    /// next opens (`None`: not within the look-ahead).
    fn window_closed(&self) -> Option<(&Window, Option<Timestamp>)> {
        let window = self.plan.window.as_ref()?;
        let now = (self.clock)();
        (!window.is_open(now)).then(|| (window, window.next_open(now)))
    }

    /// How long to sleep before looking at the window again.
    fn nap_until(&self, opens: Option<Timestamp>) -> Instant {
        let now = (self.clock)();
        let until = opens
            .and_then(|at| Duration::try_from(at.duration_since(now)).ok())
            .unwrap_or(LONGEST_NAP);
        Instant::now() + until.min(LONGEST_NAP).max(Duration::from_millis(1))
    }

    fn window_closed_event(
        &self,
        stage: usize,
        weight: f64,
        window: &Window,
        opens: Option<Timestamp>,
    ) {
        self.events.emit(Event::WindowClosed {
            stage,
            weight,
            window: window.to_string(),
            opens_at: opens.map(|t| t.to_string()),
            opens: opens.map_or_else(
                || "not within the next year".to_string(),
                |t| window.show(t),
            ),
        });
    }

    /// A stage that is ready to advance may, unless the window is closed: then it holds, and
    /// says so once per wait.
    pub(super) fn may_advance(&self, stage: &Stage, wait: &mut WindowWait) -> bool {
        let Some((window, opens)) = self.window_closed() else {
            wait.end();
            return true;
        };
        if !wait.waiting() {
            wait.since = Some(Instant::now());
            self.window_closed_event(stage.number, stage.weight.percent(), window, opens);
        }
        wait.wake = Some(self.nap_until(opens));
        false
    }

    /// Before a fresh run's first stage: nothing starts outside the window. Nothing is
    /// measured yet, so this only waits, for the window, an interrupt or a lost hold.
    pub(super) async fn wait_for_window(&mut self) -> Result<(), Halt> {
        let mut told = false;
        while let Some((window, opens)) = self.window_closed() {
            if !told {
                self.window_closed_event(0, 0.0, window, opens);
                told = true;
            }
            let wake = self.nap_until(opens);
            tokio::select! {
                _ = tokio::time::sleep_until(wake) => {}
                Some(signal) = self.interrupts.recv() => return Err(self.interrupted(&signal)),
                why = self.ledger.lost() => return Err(Halt::Lost(why)),
            }
        }
        Ok(())
    }

    /// `stuck`: the stage has not advanced `stuck_after` into its bake.
    pub(super) fn stuck(&self, stage: &Stage, reasons: Vec<String>) {
        let Some(after) = self.plan.stuck_after else {
            return;
        };
        self.events.emit(Event::Stuck {
            stage: stage.number,
            weight: stage.weight.percent(),
            after,
            reasons,
        });
    }
}
