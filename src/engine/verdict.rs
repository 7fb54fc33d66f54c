//! The verdict rules of the plan contract, as pure functions over measurements.
//!
//! Nothing here does I/O or reads a clock, so every rule is pinned down by table tests.

use crate::event::{Comparison, Verdict};
use crate::metrics::Reading;
use crate::plan::{Metric, MetricMode, OnNoData};

/// Judges one reading: against the metric's conditions, or for a judged metric by comparing
/// its samples with the baseline's (see `assess`).
pub fn judge(metric: &Metric, reading: &Reading) -> Verdict {
    assess(metric, reading).0
}

/// The verdict of one reading, with a judged metric's comparison as evidence.
pub fn assess(metric: &Metric, reading: &Reading) -> (Verdict, Option<Comparison>) {
    let Reading::Samples { canary, baseline } = reading else {
        return (against_conditions(metric, reading), None);
    };
    let Some(judge) = &metric.judge else {
        return (Verdict::Error, None);
    };
    let comparison = super::judge::compare(judge, canary, baseline);
    let verdict = match super::judge::verdict(&comparison) {
        Verdict::NoData => no_data(metric),
        v => v,
    };
    (verdict, Some(comparison))
}

/// What no data counts as, by the metric's `on_no_data`.
fn no_data(metric: &Metric) -> Verdict {
    match metric.on_no_data {
        OnNoData::Inconclusive => Verdict::NoData,
        OnNoData::Fail => Verdict::Breach,
        OnNoData::Pass => Verdict::Pass,
    }
}

/// Judges one reading against the metric's conditions. A breach wins over a pass: when both
/// hold, the release is in trouble.
fn against_conditions(metric: &Metric, reading: &Reading) -> Verdict {
    match reading {
        Reading::Error(_) => Verdict::Error,
        Reading::NoData(_) => no_data(metric),
        // Samples go to `assess`; a plain metric never asks for them.
        Reading::Samples { .. } => Verdict::Error,
        Reading::Value { value, baseline } => {
            // A condition that cannot be computed (it needs a baseline that is missing, or it
            // divides by zero) neither holds nor fails. A computable rollback that holds is a
            // breach even when the advance cannot be judged: at 100% the stable side has no
            // traffic and no baseline, and an absolute ceiling must still protect it.
            let breach = metric
                .rollback
                .as_ref()
                .and_then(|c| c.holds(*value, *baseline));
            if breach == Some(true) {
                return Verdict::Breach;
            }
            let pass = match &metric.advance {
                None => Some(true),
                Some(c) => c.holds(*value, *baseline),
            };
            let missing_baseline = baseline.is_none()
                && [&metric.advance, &metric.rollback]
                    .into_iter()
                    .flatten()
                    .any(|c| c.uses_baseline());
            match pass {
                // A pass counts only when the rollback side was judged too.
                Some(true) if breach.is_some() || metric.rollback.is_none() => Verdict::Pass,
                Some(false) => Verdict::Gray,
                _ if missing_baseline => judge(metric, &Reading::NoData(None)),
                _ => Verdict::Gray,
            }
        }
    }
}

/// A metric's measurements within the current stage.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct History {
    verdicts: Vec<Verdict>,
    breach_streak: u32,
    breaches: u32,
}

impl History {
    /// A breach streak counts consecutive valid measurements: a pass or gray ends it; no data
    /// and errors neither extend nor end it.
    pub fn record(&mut self, verdict: Verdict) {
        self.verdicts.push(verdict);
        match verdict {
            Verdict::Breach => {
                self.breach_streak += 1;
                self.breaches += 1;
            }
            Verdict::Pass | Verdict::Gray => self.breach_streak = 0,
            Verdict::NoData | Verdict::Error => {}
        }
    }

    pub fn breach_streak(&self) -> u32 {
        self.breach_streak
    }

    /// Breaches in this stage, in a row or not.
    pub fn breaches(&self) -> u32 {
        self.breaches
    }

    pub fn total(&self) -> usize {
        self.verdicts.len()
    }

    pub fn valid(&self) -> usize {
        self.verdicts.iter().filter(|v| v.is_valid()).count()
    }

    pub fn last(&self) -> Option<Verdict> {
        self.verdicts.last().copied()
    }
}

/// Where one enforced metric stands in its stage.
#[derive(Debug, Clone, PartialEq)]
pub enum Standing {
    /// `rollback_after` consecutive breaches: roll back now.
    Breached,
    /// Enough valid, passing evidence to advance.
    Ready,
    /// Not yet: why, in words a person understands.
    Holding(String),
}

/// Which rollback rule a metric's breaches set off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreachRule {
    /// `rollback_after` breaches in a row.
    Streak,
    /// `max_breaches` breaches in the stage, in a row or not.
    Budget,
}

/// The rollback rules over a stage's breaches: `rollback_after` in a row, or `max_breaches` in
/// all (0: no budget). The streak is named first when both fire at once.
pub fn breach_rule(
    rollback_after: u32,
    max_breaches: u32,
    streak: u32,
    breaches: u32,
) -> Option<BreachRule> {
    if streak >= rollback_after {
        Some(BreachRule::Streak)
    } else if max_breaches > 0 && breaches >= max_breaches {
        Some(BreachRule::Budget)
    } else {
        None
    }
}

/// The rule a metric's history in this stage sets off, if any.
pub fn fired(metric: &Metric, history: &History) -> Option<BreachRule> {
    breach_rule(
        metric.rollback_after,
        metric.max_breaches,
        history.breach_streak(),
        history.breaches(),
    )
}

/// Applies the advancement and rollback rules to one metric's history in the current stage.
pub fn standing(metric: &Metric, history: &History) -> Standing {
    if metric.mode == MetricMode::Warn {
        return Standing::Ready;
    }
    if fired(metric, history).is_some() {
        return Standing::Breached;
    }
    let min = metric.min_samples as usize;
    let valid: Vec<Verdict> = history
        .verdicts
        .iter()
        .copied()
        .filter(|v| v.is_valid())
        .collect();
    if valid.len() < min {
        return Standing::Holding(format!(
            "{} valid measurement{} of {min} needed",
            valid.len(),
            if valid.len() == 1 { "" } else { "s" }
        ));
    }
    if let Some(not_pass) = valid[valid.len() - min..]
        .iter()
        .find(|v| **v != Verdict::Pass)
    {
        return Standing::Holding(if min == 1 {
            format!("the latest measurement is {}", not_pass.as_str())
        } else {
            format!("not all of the latest {min} measurements pass")
        });
    }
    let coverage = valid.len() as f64 / history.total() as f64;
    if coverage < metric.min_coverage {
        return Standing::Holding(format!(
            "only {:.0}% of measurements were valid, {:.0}% needed",
            coverage * 100.0,
            metric.min_coverage * 100.0
        ));
    }
    Standing::Ready
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::condition::parse;
    use crate::plan::{Name, Query};
    use Verdict::*;

    fn metric(advance: Option<&str>, rollback: Option<&str>) -> Metric {
        Metric {
            name: Name::parse("m").unwrap(),
            source: 0,
            query: Query::Prometheus {
                endpoint: crate::plan::Endpoint {
                    url: crate::plan::template::Template::parse("http://127.0.0.1:9090").unwrap(),
                    headers: Vec::new(),
                },
                query: "q".into(),
                baseline: Some("b".into()),
                reduce: None,
            },
            advance: advance.map(|a| parse(a).unwrap()),
            rollback: rollback.map(|r| parse(r).unwrap()),
            rollback_after: 1,
            min_samples: 1,
            min_coverage: 0.5,
            on_no_data: OnNoData::Inconclusive,
            mode: MetricMode::Enforce,
            judge: None,
            max_breaches: 3,
        }
    }

    fn value(v: f64) -> Reading {
        Reading::Value {
            value: v,
            baseline: None,
        }
    }

    #[test]
    fn judges_readings() {
        let both = metric(Some("< 0.01"), Some("> 0.05"));
        let vs_baseline = metric(Some("<= baseline * 1.1"), Some("> baseline * 2"));
        let rollback_only = metric(None, Some("> 0.05"));
        let advance_only = metric(Some("< 0.01"), None);
        let overlapping = metric(Some("< 10"), Some("> 5"));
        let advance_vs_baseline_absolute_rollback = metric(Some("<= baseline * 1.1"), Some("> 5"));
        let absolute_advance_rollback_vs_baseline = metric(Some("< 1"), Some("> baseline * 2"));
        let with_baseline = |v, b| Reading::Value {
            value: v,
            baseline: Some(b),
        };
        let cases: Vec<(&Metric, Reading, Verdict)> = vec![
            (&both, value(0.005), Pass),
            (&both, value(0.01), Gray),
            (&both, value(0.05), Gray),
            (&both, value(0.051), Breach),
            (&both, Reading::NoData(None), NoData),
            (&both, Reading::Error("down".into()), Error),
            (&rollback_only, value(0.04), Pass),
            (&rollback_only, value(0.06), Breach),
            (&advance_only, value(0.5), Gray),
            (&advance_only, value(0.001), Pass),
            (&overlapping, value(7.0), Breach),
            (&vs_baseline, with_baseline(1.0, 1.0), Pass),
            (&vs_baseline, with_baseline(1.5, 1.0), Gray),
            (&vs_baseline, with_baseline(2.5, 1.0), Breach),
            // A condition on the baseline cannot be judged without one.
            (&vs_baseline, value(1.0), NoData),
            // ...but an absolute ceiling still can: at 100% there is no stable baseline.
            (&advance_vs_baseline_absolute_rollback, value(9.0), Breach),
            (&advance_vs_baseline_absolute_rollback, value(0.5), NoData),
            (
                &advance_vs_baseline_absolute_rollback,
                with_baseline(0.5, 1.0),
                Pass,
            ),
            (&absolute_advance_rollback_vs_baseline, value(0.5), NoData),
            (
                &absolute_advance_rollback_vs_baseline,
                with_baseline(0.5, 1.0),
                Pass,
            ),
            (
                &absolute_advance_rollback_vs_baseline,
                with_baseline(0.5, 0.1),
                Breach,
            ),
            (&both, value(f64::NAN), Gray),
        ];
        for (i, (m, reading, expected)) in cases.into_iter().enumerate() {
            assert_eq!(judge(m, &reading), expected, "case {i}: {reading:?}");
        }
    }

    #[test]
    fn no_data_counts_as_on_no_data_says() {
        let mut m = metric(Some("< 1"), Some("> 2"));
        for (policy, expected) in [
            (OnNoData::Inconclusive, NoData),
            (OnNoData::Fail, Breach),
            (OnNoData::Pass, Pass),
        ] {
            m.on_no_data = policy;
            assert_eq!(judge(&m, &Reading::NoData(None)), expected, "{policy:?}");
            // Errors are never a breach, whatever the policy.
            assert_eq!(judge(&m, &Reading::Error("x".into())), Error);
        }
    }

    fn history(verdicts: &[Verdict]) -> History {
        let mut h = History::default();
        for v in verdicts {
            h.record(*v);
        }
        h
    }

    #[test]
    fn breach_streaks_skip_missing_evidence() {
        let cases: &[(&[Verdict], u32)] = &[
            (&[Breach, Breach], 2),
            (&[Breach, NoData, Breach], 2),
            (&[Breach, Error, Error, Breach], 2),
            (&[Breach, Gray, Breach], 1),
            (&[Breach, Pass], 0),
            (&[NoData, Error], 0),
        ];
        for (verdicts, streak) in cases {
            assert_eq!(history(verdicts).breach_streak(), *streak, "{verdicts:?}");
        }
    }

    #[test]
    fn standing_follows_the_contract() {
        let holding = |s: &str| Standing::Holding(s.to_string());
        // (rollback_after, min_samples, min_coverage, history, expected)
        let cases: Vec<(u32, u32, f64, Vec<Verdict>, Standing)> = vec![
            (
                1,
                1,
                0.5,
                vec![],
                holding("0 valid measurements of 1 needed"),
            ),
            (1, 1, 0.5, vec![Pass], Standing::Ready),
            (1, 1, 0.5, vec![Breach], Standing::Breached),
            (
                2,
                1,
                0.5,
                vec![Breach],
                holding("the latest measurement is breach"),
            ),
            (2, 1, 0.5, vec![Breach, Error, Breach], Standing::Breached),
            (
                2,
                1,
                0.5,
                vec![Breach, Pass, Breach],
                holding("the latest measurement is breach"),
            ),
            (
                1,
                1,
                0.5,
                vec![Gray],
                holding("the latest measurement is gray"),
            ),
            (
                1,
                3,
                0.5,
                vec![Pass, Pass],
                holding("2 valid measurements of 3 needed"),
            ),
            (1, 3, 0.5, vec![Pass, Pass, Pass], Standing::Ready),
            (1, 2, 0.5, vec![Gray, Pass, Pass], Standing::Ready),
            (
                1,
                2,
                0.5,
                vec![Pass, Gray, Pass],
                holding("not all of the latest 2 measurements pass"),
            ),
            // Missing evidence between passes is skipped, but counts against coverage.
            (1, 2, 0.5, vec![Pass, NoData, Pass], Standing::Ready),
            (
                1,
                1,
                0.5,
                vec![Error, Error, Pass],
                holding("only 33% of measurements were valid, 50% needed"),
            ),
            (1, 1, 0.5, vec![Error, Pass], Standing::Ready),
            (1, 1, 0.0, vec![Error, Error, Error, Pass], Standing::Ready),
            (
                1,
                1,
                0.5,
                vec![NoData],
                holding("0 valid measurements of 1 needed"),
            ),
        ];
        for (i, (rollback_after, min_samples, min_coverage, verdicts, expected)) in
            cases.into_iter().enumerate()
        {
            let mut m = metric(Some("< 1"), Some("> 2"));
            m.rollback_after = rollback_after;
            m.min_samples = min_samples;
            m.min_coverage = min_coverage;
            assert_eq!(
                standing(&m, &history(&verdicts)),
                expected,
                "case {i}: {verdicts:?}"
            );
        }
    }

    #[test]
    fn breach_rules_streak_and_budget() {
        use BreachRule::*;
        // (rollback_after, max_breaches, streak, breaches in the stage, expected)
        let cases = [
            (1, 3, 0, 0, None),
            (1, 3, 1, 1, Some(Streak)),
            (2, 3, 1, 1, None),
            (2, 3, 1, 2, None),
            // One breach in three never builds a streak; the third breach is the budget.
            (2, 3, 1, 3, Some(Budget)),
            (2, 3, 2, 3, Some(Streak)),
            (3, 4, 2, 3, None),
            (3, 4, 1, 4, Some(Budget)),
            // 0 turns the budget off.
            (2, 0, 1, 50, None),
            (2, 0, 2, 50, Some(Streak)),
            // A budget below the streak fires first.
            (5, 2, 2, 2, Some(Budget)),
        ];
        for (after, max, streak, breaches, expected) in cases {
            assert_eq!(
                breach_rule(after, max, streak, breaches),
                expected,
                "rollback_after {after}, max_breaches {max}, streak {streak}, breaches {breaches}"
            );
        }
    }

    #[test]
    fn a_breach_budget_counts_breaches_apart() {
        let mut m = metric(Some("< 1"), Some("> 2"));
        m.rollback_after = 2;
        m.max_breaches = 3;
        let spread = [Breach, Pass, Breach, Gray, NoData, Breach];
        assert_eq!(
            standing(&m, &history(&spread[..5])),
            Standing::Holding("the latest measurement is gray".into())
        );
        assert_eq!(standing(&m, &history(&spread)), Standing::Breached);
        m.max_breaches = 0;
        assert_eq!(
            standing(&m, &history(&spread)),
            Standing::Holding("the latest measurement is breach".into())
        );
        m.mode = MetricMode::Warn;
        m.max_breaches = 1;
        assert_eq!(standing(&m, &history(&spread)), Standing::Ready);
    }

    #[test]
    fn warn_mode_never_gates() {
        let mut m = metric(Some("< 1"), Some("> 2"));
        m.mode = MetricMode::Warn;
        assert_eq!(standing(&m, &history(&[Breach, Breach])), Standing::Ready);
        assert_eq!(standing(&m, &history(&[])), Standing::Ready);
    }
}
