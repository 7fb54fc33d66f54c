//! Live progress in a terminal: the stage, the weight, a bake countdown, and every gating
//! metric's latest value colored by verdict. Other events scroll above the bars.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use console::Style;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

use super::text::{self, Verbosity, line};
use crate::event::Verdict;
use crate::event::{Event, Measurement, Reporter, Stamped};

pub struct ProgressReporter {
    verbosity: Verbosity,
    color: bool,
    inner: Mutex<Bars>,
}

struct Bars {
    multi: MultiProgress,
    header: ProgressBar,
    metrics: BTreeMap<String, ProgressBar>,
    stage: String,
}

impl ProgressReporter {
    pub fn new(verbosity: Verbosity, color: bool) -> Self {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let header = multi.add(ProgressBar::new_spinner());
        header.set_style(style(None));
        header.enable_steady_tick(Duration::from_millis(200));
        ProgressReporter {
            verbosity,
            color,
            inner: Mutex::new(Bars {
                multi,
                header,
                metrics: BTreeMap::new(),
                stage: String::new(),
            }),
        }
    }

    fn paint(&self, verdict: Verdict, text: String) -> String {
        if !self.color {
            return text;
        }
        let style = match verdict {
            Verdict::Pass => Style::new().green(),
            Verdict::Breach => Style::new().red().bold(),
            Verdict::Gray => Style::new().yellow(),
            Verdict::NoData | Verdict::Error => Style::new().magenta(),
        };
        style.force_styling(true).apply_to(text).to_string()
    }

    fn metric_line(&self, m: &Measurement) -> String {
        self.paint(m.verdict, text::measurement(m))
    }
}

/// The header's style; with a deadline it shows a countdown, recomputed at every tick.
fn style(deadline: Option<Instant>) -> ProgressStyle {
    let template = if deadline.is_some() {
        "{spinner} {msg} ({countdown})"
    } else {
        "{spinner} {msg}"
    };
    ProgressStyle::with_template(template)
        .expect("the template is valid")
        .with_key(
            "countdown",
            move |_: &ProgressState, w: &mut dyn std::fmt::Write| {
                if let Some(deadline) = deadline {
                    let left = deadline.saturating_duration_since(Instant::now());
                    let _ = if left.is_zero() {
                        write!(w, "bake over")
                    } else {
                        write!(
                            w,
                            "{} left",
                            text::duration(left + Duration::from_millis(999))
                        )
                    };
                }
            },
        )
}

impl Reporter for ProgressReporter {
    fn report(&self, stamped: &Stamped) {
        let mut bars = self.inner.lock().expect("progress lock");
        let event = &stamped.event;
        match event {
            Event::StageStarted {
                stage,
                stages,
                weight,
                ..
            } => {
                for (_, bar) in std::mem::take(&mut bars.metrics) {
                    bar.finish_and_clear();
                }
                bars.stage = format!("stage {stage}/{stages} at {}", text::percent(*weight));
                bars.header.set_style(style(None));
                bars.header
                    .set_message(format!("{}: applying the weight", bars.stage));
            }
            Event::BakeStarted { bake, metrics, .. } => {
                bars.header.set_style(style(Some(Instant::now() + *bake)));
                bars.header.set_message(format!("{}: baking", bars.stage));
                for name in metrics {
                    let bar = bars.multi.add(ProgressBar::new_spinner());
                    bar.set_style(
                        ProgressStyle::with_template("    {msg}").expect("the template is valid"),
                    );
                    bar.set_message(format!("{name}: waiting for the first measurement"));
                    bars.metrics.insert(name.clone(), bar);
                }
            }
            Event::Measured(m) => {
                let message = self.metric_line(m);
                if let Some(bar) = bars.metrics.get(&m.metric) {
                    bar.set_message(message);
                }
            }
            Event::Holding { reasons, .. } => {
                let message = format!("{}: holding ({})", bars.stage, reasons.join("; "));
                bars.header.set_message(message);
            }
            Event::AwaitingApproval { .. } => {
                let message = format!("{}: waiting for approval", bars.stage);
                bars.header.set_message(message);
            }
            Event::WindowClosed { opens, .. } => {
                let message = format!("{}: waiting for the change window ({opens})", bars.stage);
                bars.header.set_message(message);
            }
            Event::Finished(_) => {
                for (_, bar) in std::mem::take(&mut bars.metrics) {
                    bar.finish_and_clear();
                }
                bars.header.finish_and_clear();
            }
            _ => {}
        }
        // Measurements live in their bars; everything else scrolls above them.
        let scrolls = !matches!(event, Event::Measured(_)) || self.verbosity == Verbosity::Verbose;
        if scrolls && let Some(text) = line(event, self.verbosity) {
            let _ = bars.multi.println(text);
        }
    }
}
