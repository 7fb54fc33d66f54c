//! Prometheus range queries (`/api/v1/query_range`): a judged metric's window of samples, and
//! the history a backtest replays.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Deserialize;

use super::{Found, SampleWindow, rfc3339};

/// One series of a range query's answer.
#[derive(Debug, Clone, Deserialize)]
pub struct RangeSeries {
    #[serde(default)]
    pub metric: BTreeMap<String, String>,
    /// `[unix seconds, "value"]`, in time order.
    pub values: Vec<(f64, String)>,
}

/// The points of a range query: from `start` to `end`, every `step`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RangeQuery {
    pub start: SystemTime,
    pub end: SystemTime,
    pub step: Duration,
}

impl RangeQuery {
    /// The window that ends at `at`: what a judged measurement at `at` compares.
    pub fn ending(at: SystemTime, window: SampleWindow) -> RangeQuery {
        RangeQuery {
            start: at.checked_sub(window.length).unwrap_or(UNIX_EPOCH),
            end: at,
            step: window.step,
        }
    }

    pub fn params(&self) -> Vec<(&'static str, String)> {
        vec![
            ("start", rfc3339(self.start)),
            ("end", rfc3339(self.end)),
            ("step", seconds(self.step)),
        ]
    }
}

/// A duration as Prometheus reads a float number of seconds (`15`, `0.5`).
pub fn seconds(d: Duration) -> String {
    let text = format!("{:.3}", d.as_secs_f64());
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// Every finite value of every series: a judged metric's samples. NaN and infinities are no
/// samples (as they are no data for a plain metric).
pub fn samples(series: &[RangeSeries]) -> Found {
    Found::Samples(
        series
            .iter()
            .flat_map(|s| &s.values)
            .filter_map(|(_, v)| v.parse::<f64>().ok().filter(|v| v.is_finite()))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_ends_at_the_moment_asked() {
        let at = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let q = RangeQuery::ending(
            at,
            SampleWindow {
                length: Duration::from_secs(300),
                step: Duration::from_millis(15_500),
            },
        );
        assert_eq!(
            q.params(),
            vec![
                ("start", "2027-01-15T07:55:00.000Z".to_string()),
                ("end", "2027-01-15T08:00:00.000Z".to_string()),
                ("step", "15.5".to_string()),
            ]
        );
    }

    #[test]
    fn samples_keep_every_finite_value_of_every_series() {
        let series: Vec<RangeSeries> = serde_json::from_str(
            r#"[{"metric":{"pod":"a"},"values":[[1,"0.5"],[2,"NaN"]]},{"values":[[1,"+Inf"],[2,"2"]]}]"#,
        )
        .unwrap();
        assert_eq!(samples(&series), Found::Samples(vec![0.5, 2.0]));
    }
}
