//! The journal: where a rollout stands, on disk, so that whatever happens to the process the
//! next `rollout` command knows where traffic is.
//!
//! It is built from the engine's events. The engine emits an intent (`stage-started`,
//! `rolling-back`) before it acts and a result (`weight-applied`, `finished`) after, and a
//! reporter handles each event before the engine goes on; the journal file is replaced
//! atomically (and durably) at every such step. After `kill -9` at any moment it therefore
//! holds either the state before a step or after it, and `pending` says which step may be
//! half done.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::RolloutDir;
use crate::event::Verdict;
use crate::event::{Event, OutcomeKind, Stamped};
use crate::exec::children::ChildGroup;
use crate::exec::write_atomically_with;
use crate::plan::Audience;

/// Where a rollout stands, as recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    Running,
    WaitingForApproval,
    RollingBack,
    Paused,
    Promoted,
    RolledBack,
    /// Could not proceed; traffic was returned to stable.
    Failed,
    /// The rollback itself failed: traffic is in an unknown state.
    RollbackFailed,
}

impl Status {
    /// Whether a process should be driving the rollout right now.
    pub fn is_active(self) -> bool {
        matches!(
            self,
            Status::Running | Status::WaitingForApproval | Status::RollingBack
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Running => "running",
            Status::WaitingForApproval => "waiting for approval",
            Status::RollingBack => "rolling back",
            Status::Paused => "paused",
            Status::Promoted => "promoted",
            Status::RolledBack => "rolled back",
            Status::Failed => "failed",
            Status::RollbackFailed => "rollback failed",
        }
    }
}

/// A step begun but not known to be finished.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum Pending {
    /// Moving traffic from `from` to `weight` for `stage`.
    SetWeight {
        stage: usize,
        weight: f64,
        from: f64,
    },
    Rollback {
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LastMeasurement {
    pub stage: usize,
    pub value: Option<f64>,
    pub baseline: Option<f64>,
    pub verdict: Verdict,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub detail: Option<String>,
    pub at: String,
    /// Shown to people in percent (see `Measurement::shown_as_percent`).
    #[serde(default)]
    pub shown_as_percent: bool,
    /// The latest few measurements in this stage, oldest first, this one last.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recent: Vec<Recent>,
    /// Breaches in this stage so far (the `max_breaches` budget).
    #[serde(default)]
    pub breaches: u32,
}

/// One of a metric's recent measurements, as `rollout status` lists them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recent {
    pub value: Option<f64>,
    pub verdict: Verdict,
    pub at: String,
}

/// How many of a metric's latest measurements the journal keeps.
const RECENT: usize = 5;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Journal {
    pub version: u32,
    pub name: String,
    pub plan_path: PathBuf,
    pub plan_sha256: String,
    pub status: Status,
    /// The process driving the rollout, while one is.
    pub pid: Option<u32>,
    /// The machine of the process that last drove it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    pub started_at: String,
    pub updated_at: String,
    /// Since when the rollout has been in its current status.
    pub since: String,
    pub stages: usize,
    /// The last stage whose weight the backend confirmed (0: none yet).
    pub stage: usize,
    /// The last weight the backend confirmed, in percent; `None` when unknown.
    pub weight: Option<f64>,
    /// The last stage that passed all its gates (0: none yet).
    pub passed_stage: usize,
    pub pending: Option<Pending>,
    /// The latest reading of every metric measured so far.
    pub metrics: BTreeMap<String, LastMeasurement>,
    /// The last decision and why, in one sentence.
    pub reason: Option<String>,
    /// What the backend needs to undo the run from another process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_state: Option<serde_json::Value>,
    /// Held at its weight because the change window is closed: when it opens, as people in the
    /// window's zone read it. Cleared once the rollout moves again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_opens: Option<String>,
    /// The segments on the new version whatever the weight, as the backend last applied them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub segments: Vec<String>,
    /// What the weight is a share of: requests, or a feature flag's users. `None` before the
    /// first weight is applied (and in journals older than this field): traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<Audience>,
    /// The percent of requests copied to the new version in the current stage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<f64>,
    /// The process groups of commands running right now (a backend command, a hook): a process
    /// that takes the rollout over from a dead one stops them before it acts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<ChildGroup>,
}

#[derive(Debug, Error)]
pub enum JournalError {
    #[error("cannot read the journal {}: {source}", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the journal {} is damaged: {source}", .path.display())]
    Damaged {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error(transparent)]
    Write(#[from] crate::exec::ExecError),
}

pub fn now() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

impl Journal {
    pub fn new(name: &str, plan_path: &Path, plan_sha256: &str, stages: usize) -> Journal {
        let now = now();
        Journal {
            version: 1,
            name: name.to_string(),
            plan_path: plan_path.to_path_buf(),
            plan_sha256: plan_sha256.to_string(),
            status: Status::Running,
            pid: Some(std::process::id()),
            host: Some(super::holder::host_name()),
            started_at: now.clone(),
            updated_at: now.clone(),
            since: now,
            stages,
            stage: 0,
            weight: Some(0.0),
            passed_stage: 0,
            pending: None,
            metrics: BTreeMap::new(),
            reason: None,
            backend_state: None,
            children: Vec::new(),
            window_opens: None,
            segments: Vec::new(),
            mirror: None,
            audience: None,
        }
    }

    /// `Ok(None)` when this rollout has never run with this state directory.
    pub fn load(path: &Path) -> Result<Option<Journal>, JournalError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(JournalError::Read {
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|source| JournalError::Damaged {
                path: path.to_path_buf(),
                source,
            })
    }

    /// Moves an unreadable journal out of the way, keeping it for a person to look at, and
    /// returns where it went.
    pub fn set_aside(dir: &RolloutDir) -> Result<PathBuf, JournalError> {
        let stamp = humantime::format_rfc3339_seconds(SystemTime::now())
            .to_string()
            .replace(':', "");
        let aside = dir.damaged_journal(&stamp);
        std::fs::rename(dir.journal(), &aside).map_err(|source| JournalError::Read {
            path: dir.journal(),
            source,
        })?;
        Ok(aside)
    }

    pub fn save(&self, path: &Path, durable: bool) -> Result<(), JournalError> {
        let text = serde_json::to_string_pretty(self).expect("the journal serializes");
        write_atomically_with(path, text.as_bytes(), durable)?;
        Ok(())
    }

    fn set_status(&mut self, status: Status, at: &str) {
        if self.status != status {
            self.status = status;
            self.since = at.to_string();
        }
    }

    /// Whether an event is a step of the rollout, which the engine records (durably, before
    /// acting on it) through the ledger, rather than a measurement or a message.
    pub fn is_step(event: &Event) -> bool {
        matches!(
            event,
            Event::Started { .. }
                | Event::BackendState { .. }
                | Event::StageStarted { .. }
                | Event::WeightApplied { .. }
                | Event::AwaitingApproval { .. }
                | Event::Approved { .. }
                | Event::StagePassed { .. }
                | Event::RollingBack { .. }
                | Event::Finished(_)
        )
    }

    /// Applies one event. Returns whether it changed what the journal says (a step or a
    /// measurement).
    pub fn apply(&mut self, stamped: &Stamped) -> bool {
        let at = humantime::format_rfc3339_seconds(stamped.time).to_string();
        self.updated_at = at.clone();
        match &stamped.event {
            Event::Started { .. } => {
                self.pid = Some(std::process::id());
                self.set_status(Status::Running, &at);
            }
            Event::BackendState { state } => self.backend_state = Some(state.clone()),
            Event::StageStarted {
                stage,
                weight,
                previous_weight,
                ..
            } => {
                self.window_opens = None;
                self.pending = Some(Pending::SetWeight {
                    stage: *stage,
                    weight: *weight,
                    from: *previous_weight,
                });
                self.set_status(Status::Running, &at);
            }
            Event::WeightApplied {
                stage,
                weight,
                audience,
            } => {
                self.audience = Some(*audience);
                self.stage = *stage;
                self.weight = Some(*weight);
                self.pending = None;
                // The stage's own segments and mirror, if any, follow at once.
                self.segments.clear();
                self.mirror = None;
            }
            Event::SegmentsApplied { segments, .. } => self.segments = segments.clone(),
            Event::MirrorApplied { percent, .. } => self.mirror = Some(*percent),
            Event::Measured(m) => {
                let mut recent = match self.metrics.remove(&m.metric) {
                    Some(last) if last.stage == m.stage => last.recent,
                    _ => Vec::new(),
                };
                recent.push(Recent {
                    value: m.value,
                    verdict: m.verdict,
                    at: at.clone(),
                });
                let excess = recent.len().saturating_sub(RECENT);
                recent.drain(..excess);
                self.metrics.insert(
                    m.metric.clone(),
                    LastMeasurement {
                        stage: m.stage,
                        value: m.value,
                        baseline: m.baseline,
                        verdict: m.verdict,
                        detail: m.detail.clone(),
                        at,
                        shown_as_percent: m.shown_as_percent,
                        recent,
                        breaches: m.breaches,
                    },
                );
            }
            Event::WindowClosed { opens, .. } => self.window_opens = Some(opens.clone()),
            Event::ChildStarted { group } => self.children.push(group.clone()),
            Event::ChildEnded { pgid } => self.children.retain(|c| c.pgid != *pgid),
            Event::AwaitingApproval { .. } => self.set_status(Status::WaitingForApproval, &at),
            Event::Approved { .. } => self.set_status(Status::Running, &at),
            Event::StagePassed { stage, .. } => self.passed_stage = *stage,
            Event::RollingBack { reason } => {
                self.window_opens = None;
                self.pending = Some(Pending::Rollback {
                    reason: reason.clone(),
                });
                self.reason = Some(reason.clone());
                self.set_status(Status::RollingBack, &at);
            }
            Event::Finished(outcome) => {
                self.window_opens = None;
                // Promoted, everyone is on the new version; after a rollback, nobody is. A pause
                // (or a failure that held traffic) leaves segments and mirror where they were.
                let rolled_back = matches!(self.pending, Some(Pending::Rollback { .. }))
                    && outcome.kind != OutcomeKind::RollbackFailed;
                if rolled_back || outcome.kind == OutcomeKind::Promoted {
                    self.segments.clear();
                    self.mirror = None;
                }
                self.pending = None;
                self.pid = None;
                self.weight = outcome.weight;
                self.reason = Some(outcome.reason.clone());
                let status = match outcome.kind {
                    OutcomeKind::Promoted => Status::Promoted,
                    OutcomeKind::Failed => Status::Failed,
                    OutcomeKind::RolledBack => Status::RolledBack,
                    OutcomeKind::Paused | OutcomeKind::Undecided => Status::Paused,
                    OutcomeKind::RollbackFailed => Status::RollbackFailed,
                };
                self.set_status(status, &at);
            }
            _ => return false,
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Measurement, Outcome};

    fn at(secs: u64, event: Event) -> Stamped {
        Stamped {
            time: SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(secs),
            event,
        }
    }

    fn journal() -> Journal {
        Journal::new("shop", Path::new("/plans/shop.toml"), "abc", 3)
    }

    fn stage_started(stage: usize, weight: f64, from: f64) -> Event {
        Event::StageStarted {
            stage,
            stages: 3,
            weight,
            previous_weight: from,
        }
    }

    #[test]
    fn a_weight_change_is_pending_until_it_is_confirmed() {
        let mut j = journal();
        assert!(j.apply(&at(10, stage_started(1, 10.0, 0.0))));
        assert_eq!(
            j.pending,
            Some(Pending::SetWeight {
                stage: 1,
                weight: 10.0,
                from: 0.0
            })
        );
        assert_eq!((j.stage, j.weight), (0, Some(0.0)), "not confirmed yet");
        j.apply(&at(
            11,
            Event::WeightApplied {
                stage: 1,
                weight: 10.0,
                audience: crate::plan::Audience::Traffic,
            },
        ));
        assert_eq!(
            (j.stage, j.weight, j.pending.clone()),
            (1, Some(10.0), None)
        );
        assert_eq!(j.updated_at, "1970-01-01T00:00:11Z");
    }

    #[test]
    fn a_rollback_is_pending_until_the_outcome_and_the_outcome_clears_the_process() {
        let mut j = journal();
        j.apply(&at(1, stage_started(1, 10.0, 0.0)));
        j.apply(&at(
            2,
            Event::WeightApplied {
                stage: 1,
                weight: 10.0,
                audience: crate::plan::Audience::Traffic,
            },
        ));
        j.apply(&at(
            5,
            Event::RollingBack {
                reason: "errors breached".into(),
            },
        ));
        assert_eq!(j.status, Status::RollingBack);
        assert_eq!(j.since, "1970-01-01T00:00:05Z");
        assert_eq!(
            j.pending,
            Some(Pending::Rollback {
                reason: "errors breached".into()
            })
        );
        j.apply(&at(
            7,
            Event::Finished(Outcome::new(
                OutcomeKind::RolledBack,
                "Rolled back because errors breached.".into(),
                Some(0.0),
            )),
        ));
        assert_eq!(j.status, Status::RolledBack);
        assert_eq!(
            (j.weight, j.pending.clone(), j.pid),
            (Some(0.0), None, None)
        );
        assert_eq!(
            j.reason.as_deref(),
            Some("Rolled back because errors breached.")
        );
    }

    #[test]
    fn approvals_change_the_status_and_back() {
        let mut j = journal();
        j.apply(&at(
            1,
            Event::AwaitingApproval {
                stage: 1,
                how: "rollout approve shop".into(),
            },
        ));
        assert_eq!(j.status, Status::WaitingForApproval);
        j.apply(&at(
            2,
            Event::Approved {
                stage: 1,
                by: "alice".into(),
            },
        ));
        assert_eq!(
            (j.status, j.since.as_str()),
            (Status::Running, "1970-01-01T00:00:02Z")
        );
    }

    #[test]
    fn measurements_are_kept_per_metric_and_change_no_status() {
        let mut j = journal();
        let measured = |value| {
            Event::Measured(Measurement {
                stage: 2,
                metric: "errors".into(),
                value: Some(value),
                baseline: None,
                verdict: Verdict::Pass,
                detail: None,
                breach_streak: 0,
                warn_only: false,
                shown_as_percent: true,
                source: "prom".into(),
                query: "GET /api/v1/query?query=q".into(),
                baseline_query: None,
                evaluated_at: std::time::UNIX_EPOCH,
                breaches: 0,
                comparison: None,
            })
        };
        assert!(j.apply(&at(3, measured(0.01))));
        assert!(j.apply(&at(4, measured(0.02))));
        assert_eq!(j.metrics.len(), 1);
        let verdicts: Vec<Option<f64>> =
            j.metrics["errors"].recent.iter().map(|r| r.value).collect();
        assert!(!verdicts.is_empty() && verdicts.len() <= 5, "{verdicts:?}");
        assert_eq!(j.metrics["errors"].value, Some(0.02));
        assert!(j.metrics["errors"].shown_as_percent);
        assert_eq!(j.status, Status::Running);
        assert!(!Journal::is_step(&measured(0.0)));
    }

    #[test]
    fn a_hold_for_the_change_window_is_on_record_until_the_rollout_moves() {
        let mut j = journal();
        j.apply(&at(
            1,
            Event::WindowClosed {
                stage: 1,
                weight: 10.0,
                window: "mon 09:00-16:00 Europe/Berlin".into(),
                opens_at: Some("2026-12-07T08:00:00Z".into()),
                opens: "Mon 2026-12-07 09:00 CET".into(),
            },
        ));
        assert_eq!(j.window_opens.as_deref(), Some("Mon 2026-12-07 09:00 CET"));
        j.apply(&at(2, stage_started(2, 50.0, 10.0)));
        assert_eq!(j.window_opens, None);
    }

    #[test]
    fn segments_and_a_mirror_are_on_record_for_their_stage() {
        let mut j = journal();
        let applied = |stage, weight| Event::WeightApplied {
            stage,
            weight,
            audience: crate::plan::Audience::Traffic,
        };
        j.apply(&at(1, applied(1, 0.0)));
        j.apply(&at(
            1,
            Event::SegmentsApplied {
                stage: 1,
                segments: vec!["staff".into()],
            },
        ));
        j.apply(&at(
            1,
            Event::MirrorApplied {
                stage: 1,
                percent: 10.0,
            },
        ));
        assert_eq!(
            (j.segments.clone(), j.mirror),
            (vec!["staff".to_string()], Some(10.0))
        );
        // The next stage keeps the segment (the engine says so again) but not the mirror.
        j.apply(&at(2, applied(2, 5.0)));
        j.apply(&at(
            2,
            Event::SegmentsApplied {
                stage: 2,
                segments: vec!["staff".into()],
            },
        ));
        assert_eq!(
            (j.segments.clone(), j.mirror),
            (vec!["staff".to_string()], None)
        );
        let back: Journal = serde_json::from_str(&serde_json::to_string(&j).unwrap()).unwrap();
        assert_eq!(back, j);
        let finished = |kind| Event::Finished(Outcome::new(kind, "r".into(), Some(5.0)));
        let mut paused = j.clone();
        paused.apply(&at(3, finished(OutcomeKind::Paused)));
        assert_eq!(
            paused.segments,
            ["staff"],
            "a pause leaves traffic where it is"
        );
        j.apply(&at(3, Event::RollingBack { reason: "r".into() }));
        assert_eq!(j.segments, ["staff"], "until the rollback is done");
        j.apply(&at(4, finished(OutcomeKind::RolledBack)));
        assert!(j.segments.is_empty());
    }

    #[test]
    fn running_commands_are_listed_until_they_end() {
        let mut j = journal();
        let group = |pgid| ChildGroup {
            pgid,
            started: 7,
            purpose: "set_weight".into(),
        };
        j.apply(&at(1, Event::ChildStarted { group: group(41) }));
        j.apply(&at(1, Event::ChildStarted { group: group(42) }));
        j.apply(&at(2, Event::ChildEnded { pgid: 41 }));
        assert_eq!(j.children, [group(42)]);
    }

    #[test]
    fn a_journal_round_trips_through_its_file() {
        let root = tempfile::tempdir().unwrap();
        let dir = RolloutDir::new(root.path(), "shop");
        let path = dir.journal();
        std::fs::create_dir_all(dir.path()).unwrap();
        let mut j = journal();
        j.apply(&at(1, stage_started(1, 10.0, 0.0)));
        j.save(&path, true).unwrap();
        assert_eq!(Journal::load(&path).unwrap(), Some(j));
        assert_eq!(Journal::load(&root.path().join("none.json")).unwrap(), None);
        std::fs::write(&path, "{").unwrap();
        assert!(matches!(
            Journal::load(&path),
            Err(JournalError::Damaged { .. })
        ));
        let aside = Journal::set_aside(&dir).unwrap();
        assert!(
            aside
                .file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("journal.damaged-")
        );
        assert!(!path.exists() && aside.exists());
    }
}
