//! The plan as read from TOML: each field typed where a field alone can be checked, with the
//! span it came from, and `None` where it was missing or invalid (the problem is already
//! recorded). `validate` turns this into the model once the whole file has been seen.

use std::time::Duration;

use super::condition::Condition;
use super::diagnostic::Span;
use super::model::{HaltAction, HookEvent, MetricMode, OnNoData, Reduce, Strategy};
use super::reader::At;
use super::template::Template;

#[derive(Debug, Default)]
pub struct RawPlan {
    pub name: Option<At<String>>,
    pub description: Option<String>,
    pub strategy: Option<At<Strategy>>,
    pub defaults: RawDefaults,
    pub backend: Option<RawBackend>,
    pub sources: Vec<RawSource>,
    pub metrics: Vec<RawMetric>,
    pub stages: Option<At<Vec<RawStage>>>,
    pub hooks: Vec<RawPlanHook>,
    pub state: super::model::StateConfig,
    pub notify: Vec<super::notify::Notify>,
    pub window: Option<super::window::Window>,
}

#[derive(Debug, Default)]
pub struct RawDefaults {
    pub interval: Option<At<Duration>>,
    pub bake: Option<At<Duration>>,
    pub max_hold: Option<At<Duration>>,
    pub on_timeout: Option<HaltAction>,
    pub on_interrupt: Option<HaltAction>,
    pub approval: Option<bool>,
    pub hook_timeout: Option<Duration>,
    pub stuck_after: Option<Duration>,
}

#[derive(Debug)]
pub struct RawHook {
    pub run: Option<Vec<String>>,
    pub timeout: Option<Duration>,
}

#[derive(Debug)]
pub struct RawPlanHook {
    pub on: Option<HookEvent>,
    pub hook: RawHook,
}

#[derive(Debug)]
pub struct RawStage {
    pub path: String,
    pub header: Span,
    pub weight: Option<At<f64>>,
    pub bake: Option<At<Duration>>,
    pub interval: Option<At<Duration>>,
    pub max_hold: Option<Duration>,
    pub on_timeout: Option<HaltAction>,
    pub approval: Option<bool>,
    pub metrics: Option<At<Vec<At<String>>>>,
    pub hooks: Vec<RawHook>,
    /// `segments = [...]`: the segments this stage switches on.
    pub segments: Option<At<Vec<At<String>>>>,
    /// `mirror = P`: the percent of requests copied to the new version.
    pub mirror: Option<At<f64>>,
}

#[derive(Debug)]
pub struct RawSource {
    pub name: At<String>,
    pub kind: Option<At<SourceType>>,
    pub url: Option<At<Template>>,
    pub headers: Vec<(String, Template)>,
    pub timeout: Option<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceType {
    Prometheus,
    HttpJson,
    Command,
}

impl SourceType {
    pub const ALL: [(&'static str, SourceType); 3] = [
        ("prometheus", SourceType::Prometheus),
        ("http-json", SourceType::HttpJson),
        ("command", SourceType::Command),
    ];

    pub fn name(self) -> &'static str {
        match self {
            SourceType::Prometheus => "prometheus",
            SourceType::HttpJson => "http-json",
            SourceType::Command => "command",
        }
    }
}

#[derive(Debug)]
pub struct RawMetric {
    pub path: String,
    pub header: Span,
    pub name: Option<At<String>>,
    pub source: Option<At<String>>,
    pub query: Option<At<String>>,
    pub baseline: Option<At<String>>,
    pub reduce: Option<At<Reduce>>,
    pub path_pointer: Option<At<String>>,
    pub baseline_path: Option<At<String>>,
    pub url: Option<At<Template>>,
    pub run: Option<At<Vec<String>>>,
    pub baseline_run: Option<At<Vec<String>>>,
    pub advance: Option<At<Condition>>,
    pub rollback: Option<At<Condition>>,
    pub rollback_after: Option<u32>,
    pub min_samples: Option<u32>,
    pub min_coverage: Option<f64>,
    pub on_no_data: Option<OnNoData>,
    pub mode: Option<MetricMode>,
    /// Conditions that failed to parse: the metric still counts as having them, so that
    /// "neither advance nor rollback" is not reported on top of the parse error.
    pub broken_conditions: bool,
    /// The source-specific fields written in the table, valid or not, so that an invalid
    /// `path` is not also reported as missing.
    pub written: Vec<&'static str>,
    /// `judge` and its fields, and `max_breaches` (plan 1.1).
    pub judge: super::judge::RawJudge,
}

/// The backend table, read according to its `type`.
#[derive(Debug)]
pub struct RawBackend {
    pub header: Span,
    pub spec: Option<crate::plan::model::Backend>,
    /// `[backend.segments]`, each located at its name.
    pub segments: Vec<At<super::segments::Segment>>,
}
