//! `judge = "mann-whitney"`: a measurement compares the canary's samples with the baseline's.
//! A breach when the canary is worse in the metric's direction with the confidence asked, and
//! by more than the tolerance; a pass when it is not worse by more than the tolerance; gray
//! otherwise (worse, but not surely so); no data with too few samples on either side.

use super::mann_whitney::{self, Alternative, Method};
use crate::event::{Comparison, Verdict};
use crate::plan::{Direction, Judge};

/// Compares the two samples by the judge's rules. Pure: the same samples give the same answer.
pub fn compare(judge: &Judge, canary: &[f64], baseline: &[f64]) -> Comparison {
    let canary_median = mann_whitney::median(canary);
    let baseline_median = mann_whitney::median(baseline);
    let enough =
        canary.len() >= judge.min_points as usize && baseline.len() >= judge.min_points as usize;
    let test = enough
        .then(|| mann_whitney::test(canary, baseline, alternative(judge.direction)))
        .flatten();
    let worse_by = match (canary_median, baseline_median) {
        (Some(c), Some(b)) => Some(worse_by(judge.direction, c, b)),
        _ => None,
    };
    let p_value = test.map(|t| t.p_value).filter(|p| !p.is_nan());
    Comparison {
        test: "mann-whitney".to_string(),
        direction: judge.direction,
        canary_points: canary.len(),
        baseline_points: baseline.len(),
        canary_median,
        baseline_median,
        relative_difference: worse_by.filter(|d| d.is_finite()),
        statistic: test.map(|t| t.u),
        p_value,
        method: test.map(|t| {
            match t.method {
                Method::Exact => "exact",
                Method::Asymptotic => "asymptotic",
            }
            .to_string()
        }),
        worse: enough && worse_by.is_some_and(|d| d > judge.tolerance),
        significant: p_value.is_some_and(|p| p < 1.0 - judge.confidence),
        confidence: judge.confidence,
        tolerance: judge.tolerance,
        min_points: judge.min_points,
    }
}

/// The verdict a comparison gives, before the metric's `on_no_data`.
pub fn verdict(c: &Comparison) -> Verdict {
    let min = c.min_points as usize;
    if c.canary_points < min || c.baseline_points < min {
        Verdict::NoData
    } else if c.worse && c.significant {
        Verdict::Breach
    } else if !c.worse {
        Verdict::Pass
    } else {
        Verdict::Gray
    }
}

/// Why a comparison is no data, for the measurement's detail.
pub fn too_few(c: &Comparison) -> Option<String> {
    let min = c.min_points as usize;
    (c.canary_points < min || c.baseline_points < min).then(|| {
        format!(
            "{} canary and {} baseline samples in the window; min_points is {min}",
            c.canary_points, c.baseline_points
        )
    })
}

fn alternative(direction: Direction) -> Alternative {
    match direction {
        Direction::Increase => Alternative::Greater,
        Direction::Decrease => Alternative::Less,
        Direction::Either => Alternative::TwoSided,
    }
}

/// How much worse the canary's median is than the baseline's, relative to the baseline's, in
/// `direction`. Against a median of 0 any worse difference is infinitely worse.
fn worse_by(direction: Direction, canary: f64, baseline: f64) -> f64 {
    let diff = match direction {
        Direction::Increase => canary - baseline,
        Direction::Decrease => baseline - canary,
        Direction::Either => (canary - baseline).abs(),
    };
    if baseline == 0.0 {
        return if diff > 0.0 {
            f64::INFINITY
        } else if diff < 0.0 {
            f64::NEG_INFINITY
        } else {
            0.0
        };
    }
    diff / baseline.abs()
}

/// The rule, for people: "worse when higher by more than 25% at 98% confidence".
pub fn rule(judge: &Judge) -> String {
    let way = match judge.direction {
        Direction::Increase => "higher",
        Direction::Decrease => "lower",
        Direction::Either => "different",
    };
    format!(
        "mann-whitney: a breach when {way} by more than {}% at {}% confidence",
        crate::plan::show_number(judge.tolerance * 100.0),
        crate::plan::show_number(judge.confidence * 100.0)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use Verdict::*;

    fn judge(direction: Direction) -> Judge {
        Judge {
            window: std::time::Duration::from_secs(300),
            step: std::time::Duration::from_secs(15),
            direction,
            confidence: 0.98,
            tolerance: 0.25,
            min_points: 10,
        }
    }

    /// 20 values spread around `center`, the same spread each time.
    fn around(center: f64) -> Vec<f64> {
        (0..20)
            .map(|i| center * (0.95 + 0.005 * f64::from(i)))
            .collect()
    }

    #[test]
    fn verdicts_follow_the_contract() {
        let up = judge(Direction::Increase);
        let down = judge(Direction::Decrease);
        let either = judge(Direction::Either);
        let few: Vec<f64> = around(100.0)[..9].to_vec();
        // A small but sure difference: a few values higher, well within the tolerance.
        let slightly: Vec<f64> = around(105.0);
        // Worse by far more than the tolerance, but with only 10 noisy values a side.
        let noisy_base: Vec<f64> = (1..=10).map(|i| f64::from(i) * 10.0).collect();
        let noisy_canary = vec![15.0, 25.0, 35.0, 45.0, 75.0, 80.0, 85.0, 95.0, 105.0, 110.0];
        let cases: Vec<(&Judge, Vec<f64>, Vec<f64>, Verdict)> = vec![
            (&up, around(140.0), around(100.0), Breach),
            (&up, around(100.0), around(100.0), Pass),
            (&up, slightly.clone(), around(100.0), Pass),
            (&up, around(60.0), around(100.0), Pass),
            (&down, around(60.0), around(100.0), Breach),
            (&down, around(140.0), around(100.0), Pass),
            (&either, around(60.0), around(100.0), Breach),
            (&either, around(140.0), around(100.0), Breach),
            (&up, noisy_canary, noisy_base, Gray),
            (&up, few.clone(), around(100.0), NoData),
            (&up, around(100.0), few, NoData),
            (&up, around(140.0), Vec::new(), NoData),
        ];
        for (i, (j, canary, baseline, expected)) in cases.into_iter().enumerate() {
            let c = compare(j, &canary, &baseline);
            assert_eq!(verdict(&c), expected, "case {i}: {c:?}");
        }
    }

    #[test]
    fn a_zero_baseline_median_is_infinitely_worse_or_equal() {
        let up = judge(Direction::Increase);
        let zeros = vec![0.0; 12];
        let c = compare(&up, &zeros, &zeros);
        assert_eq!((c.relative_difference, verdict(&c)), (Some(0.0), Pass));
        let some: Vec<f64> = (1..=12).map(f64::from).collect();
        let c = compare(&up, &some, &zeros);
        assert_eq!(c.relative_difference, None);
        assert!(c.worse && c.significant);
        assert_eq!(verdict(&c), Breach);
    }

    #[test]
    fn a_comparison_reads_well() {
        let up = judge(Direction::Increase);
        let c = compare(&up, &around(140.0), &around(100.0));
        let text = c.describe(crate::plan::show_number);
        assert!(
            text.starts_with("median 139.7 against the baseline's 99.75 (40% higher, p = "),
            "{text}"
        );
        assert!(text.ends_with("; 20 and 20 samples)"), "{text}");
        assert_eq!(
            rule(&up),
            "mann-whitney: a breach when higher by more than 25% at 98% confidence"
        );
    }
}
