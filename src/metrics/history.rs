//! A backtest's probe: a Prometheus metric's history, fetched with range queries before the
//! replay starts, answering each measurement as of its (virtual) moment. A range query is a
//! series of instant evaluations, one per step, so the value at a step is exactly what an
//! instant query with `time=` that moment answers; the replay only ever asks at steps.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;

use super::prometheus::{Prometheus, instant_vector};
use super::range::RangeQuery;
use super::{Found, Probe, ProbeError, SampleWindow, Which, rfc3339};
use crate::plan::{PROMETHEUS_MAX_POINTS, Reduce};

/// A metric's history, for both of its queries.
pub struct Replay {
    window: Option<SampleWindow>,
    reduce: Option<Reduce>,
    value: Recorded,
    baseline: Option<Recorded>,
    described: [String; 2],
}

/// One query's history: every series' points, and the requests that fetched them.
pub struct Recorded {
    series: Vec<Series>,
    /// (first point, last point, the request as sent), in milliseconds since the epoch.
    requests: Vec<(i64, i64, String)>,
}

struct Series {
    /// Milliseconds since the epoch, ascending.
    times: Vec<i64>,
    values: Vec<String>,
}

impl Replay {
    /// Fetches the history of `probe`'s query (and baseline) from `from` to `to`, one point
    /// every `step`, in as many range queries as Prometheus's point limit needs.
    pub async fn fetch(
        probe: &Prometheus,
        from: SystemTime,
        to: SystemTime,
        step: Duration,
    ) -> Result<Replay, ProbeError> {
        let value = Recorded::fetch(probe, Which::Value, from, to, step).await?;
        let baseline = match probe.has_baseline() {
            true => Some(Recorded::fetch(probe, Which::Baseline, from, to, step).await?),
            false => None,
        };
        Ok(Replay {
            window: probe.window,
            reduce: probe.reduce(),
            value,
            baseline,
            described: [
                format!("history of {}", probe.describe(Which::Value)),
                format!("history of {}", probe.describe(Which::Baseline)),
            ],
        })
    }

    fn recorded(&self, which: Which) -> &Recorded {
        match which {
            Which::Value => &self.value,
            Which::Baseline => self.baseline.as_ref().unwrap_or(&self.value),
        }
    }

    /// How many points were fetched, over every series of both queries.
    pub fn points(&self) -> usize {
        [Some(&self.value), self.baseline.as_ref()]
            .into_iter()
            .flatten()
            .flat_map(|r| &r.series)
            .map(|s| s.times.len())
            .sum()
    }
}

impl Recorded {
    async fn fetch(
        probe: &Prometheus,
        which: Which,
        from: SystemTime,
        to: SystemTime,
        step: Duration,
    ) -> Result<Recorded, ProbeError> {
        let mut by_labels: BTreeMap<BTreeMap<String, String>, Series> = BTreeMap::new();
        let mut requests = Vec::new();
        let span = step * (PROMETHEUS_MAX_POINTS as u32 - 1);
        let mut start = from;
        while start <= to {
            let end = (start + span).min(to);
            let q = RangeQuery { start, end, step };
            for series in probe.range(which, &q).await? {
                let entry = by_labels.entry(series.metric).or_insert(Series {
                    times: Vec::new(),
                    values: Vec::new(),
                });
                for (t, v) in series.values {
                    entry.times.push((t * 1000.0).round() as i64);
                    entry.values.push(v);
                }
            }
            requests.push((millis(start), millis(end), probe.sent_range(which, &q)));
            start = end + step;
        }
        Ok(Recorded {
            series: by_labels.into_values().collect(),
            requests,
        })
    }

    /// The value of every series that has a point at `t`.
    fn at(&self, t: i64) -> Vec<&str> {
        self.series
            .iter()
            .filter_map(|s| s.times.binary_search(&t).ok().map(|i| s.values[i].as_str()))
            .collect()
    }

    /// Every finite value of every series from `end - window` to `end`, at the window's step.
    fn window(&self, end: i64, window: SampleWindow) -> Vec<f64> {
        let start = end - window.length.as_millis() as i64;
        let step = (window.step.as_millis() as i64).max(1);
        let mut out = Vec::new();
        for s in &self.series {
            let first = s.times.partition_point(|&t| t < start);
            let last = s.times.partition_point(|&t| t <= end);
            for i in first..last {
                if (s.times[i] - start) % step != 0 {
                    continue;
                }
                if let Some(v) = s.values[i].parse::<f64>().ok().filter(|v| v.is_finite()) {
                    out.push(v);
                }
            }
        }
        out
    }

    fn request(&self, t: i64) -> &str {
        self.requests
            .iter()
            .find(|(start, end, _)| (*start..=*end).contains(&t))
            .or(self.requests.last())
            .map_or("", |(_, _, sent)| sent.as_str())
    }
}

fn millis(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[async_trait]
impl Probe for Replay {
    fn describe(&self, which: Which) -> String {
        match which {
            Which::Value => self.described[0].clone(),
            Which::Baseline => self.described[1].clone(),
        }
    }

    fn sent(&self, which: Which, at: SystemTime) -> String {
        self.recorded(which).request(millis(at)).to_string()
    }

    async fn read(&self, which: Which, at: SystemTime) -> Result<Found, ProbeError> {
        let recorded = self.recorded(which);
        let t = millis(at);
        let covered = recorded
            .requests
            .iter()
            .any(|(start, end, _)| (*start..=*end).contains(&t));
        if !covered {
            return Err(ProbeError::Malformed(format!(
                "no history was fetched for {}",
                rfc3339(at)
            )));
        }
        match self.window {
            Some(window) => Ok(Found::Samples(recorded.window(t, window))),
            None => instant_vector(&recorded.at(t), self.reduce),
        }
    }
}
