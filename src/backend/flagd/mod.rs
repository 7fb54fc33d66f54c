//! `type = "flagd"`: rolls one flag of a flagd flag-definition file out to a share of users.
//!
//! The file belongs to others too (other flags, `$evaluators`, metadata), so every change is
//! made to the file as it is now: read it, set our flag's `defaultVariant` and `targeting`,
//! and replace it atomically only if it still reads the same just before the write (an edit
//! made in between is never overwritten: the change is refused and the run stops). Edits of
//! other flags made between our changes are kept, since each change starts from a fresh read;
//! an edit of *our* flag by someone else stops the run, since the rollout no longer decides
//! who gets what. The kill switch (rollback) overrides our flag whatever it holds. Every
//! write is read back and checked before the bake starts.
//!
//! A dry run reads the real file (reading changes nothing) and prints the exact file each
//! stage would write.

mod document;
#[cfg(test)]
mod tests;

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;

use super::{Backend, BackendError, Executor, WeightChange};
use crate::plan::{FlagSpec, FlagdBackend as Spec, Plan, Segment};
use document::Split;

pub struct Flagd {
    spec: Spec,
    segments: Vec<Segment>,
    exec: Arc<dyn Executor>,
    /// Our flag as rollout last wrote it (or found it at preflight): anything else there
    /// means someone else changed it meanwhile.
    ours: Option<Value>,
    current: WeightChange,
}

impl Flagd {
    pub fn new(plan: &Plan, spec: Spec, exec: Arc<dyn Executor>) -> Self {
        Self::with_segments(spec, plan.segments.clone(), exec)
    }

    fn with_segments(spec: Spec, segments: Vec<Segment>, exec: Arc<dyn Executor>) -> Self {
        Flagd {
            spec,
            segments,
            exec,
            ours: None,
            current: WeightChange::BEFORE_START,
        }
    }

    fn path(&self) -> &Path {
        &self.spec.flags_file
    }

    /// The file's text. A dry run reads the real file: reading changes nothing, and it is what
    /// lets a dry run print the exact file a real run would write.
    async fn read(&self) -> Result<String, BackendError> {
        let text = if self.exec.is_dry_run() {
            match tokio::fs::read_to_string(self.path()).await {
                Ok(text) => Some(text),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(source) => {
                    return Err(BackendError::Exec(crate::exec::ExecError::Io {
                        op: "read",
                        path: self.path().to_path_buf(),
                        source,
                    }));
                }
            }
        } else {
            self.exec.read_file(self.path()).await?
        };
        text.ok_or_else(|| {
            BackendError::Precondition(format!(
                "the flags file {} does not exist",
                self.path().display()
            ))
        })
    }

    fn problem(&self, what: String) -> BackendError {
        BackendError::Precondition(format!("the flags file {} {what}", self.path().display()))
    }

    /// Sets our flag for `split` in the file as it is now. `overriding`: the kill switch,
    /// which wins even over someone else's edit of our flag.
    async fn apply(&mut self, split: Split, overriding: bool) -> Result<(), BackendError> {
        let before = self.read().await?;
        let mut doc = document::parse(&before).map_err(|e| self.problem(e))?;
        let found = document::flag(&doc, &self.spec.flag).map_err(|e| self.problem(e))?;
        let found = Value::Object(found.clone());
        if !overriding
            && !self.exec.is_dry_run()
            && let Some(ours) = self.ours.as_ref().filter(|ours| **ours != found)
        {
            return Err(self.problem(format!(
                "was edited by someone else: flag `{}` is no longer as rollout left it, so the rollout no longer decides who gets `{}`; nothing was written (rollout left it as {ours}, it is now {found})",
                self.spec.flag, self.spec.on_variant
            )));
        }
        let rule = document::rule(&self.spec, &self.segments, split);
        document::apply(&mut doc, &self.spec.flag, &rule).map_err(|e| self.problem(e))?;
        let text = document::render(&doc, &before);
        // The last look before the rename: an edit made since our read must not be lost.
        if self.read().await? != before {
            return Err(self.problem(format!(
                "changed while rollout was changing flag `{}`; it was not replaced, so that edit is kept",
                self.spec.flag
            )));
        }
        self.exec.write_file(self.path(), &text).await?;
        self.confirm(&rule).await?;
        self.ours = document::flag(&doc, &self.spec.flag)
            .ok()
            .map(|f| Value::Object(f.clone()));
        Ok(())
    }

    /// Reads the file back: it parses, and our flag says what was just written.
    async fn confirm(&self, rule: &(String, Option<Value>)) -> Result<(), BackendError> {
        if self.exec.is_dry_run() {
            self.exec.note(&format!(
                "read {} back and check that flag `{}` is as written",
                self.path().display(),
                self.spec.flag
            ));
            return Ok(());
        }
        let text = self.read().await?;
        let doc = document::parse(&text).map_err(|e| {
            BackendError::NotConfirmed(format!("{} now {e}", self.path().display()))
        })?;
        if document::holds(&doc, &self.spec.flag, rule) {
            return Ok(());
        }
        Err(BackendError::NotConfirmed(format!(
            "{} was replaced, but reading it back shows flag `{}` otherwise: someone else wrote it at the same moment",
            self.path().display(),
            self.spec.flag
        )))
    }

    /// The directory takes new files: the atomic replace writes a temporary file beside it.
    async fn check_directory(&self) -> Result<(), BackendError> {
        let target = crate::exec::resolve_symlinks(self.path())?;
        let dir = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => Path::new(".").to_path_buf(),
        };
        if self.exec.is_dry_run() {
            self.exec.note(&format!(
                "check that rollout can create files in {}",
                dir.display()
            ));
            return Ok(());
        }
        tempfile::Builder::new()
            .prefix(".rollout-check-")
            .tempfile_in(&dir)
            .map(drop)
            .map_err(|e| {
                BackendError::Precondition(format!(
                    "cannot create files in {}, where {} is replaced atomically: {e}",
                    dir.display(),
                    self.path().display()
                ))
            })
    }
}

#[async_trait]
impl Backend for Flagd {
    fn describe(&self) -> String {
        self.spec.flag_name()
    }

    /// The file parses, the flag exists, is enabled and has both variants, and the file can
    /// be replaced.
    async fn preflight(&mut self) -> Result<(), BackendError> {
        let text = self.read().await?;
        let doc = document::parse(&text).map_err(|e| self.problem(e))?;
        let flag = document::flag(&doc, &self.spec.flag).map_err(|e| self.problem(e))?;
        document::check_flag(flag, &self.spec).map_err(|e| self.problem(e))?;
        self.check_directory().await?;
        self.ours = Some(Value::Object(flag.clone()));
        Ok(())
    }

    async fn set_weight(&mut self, change: WeightChange) -> Result<(), BackendError> {
        let split = Split {
            weight: change.weight,
            segments: change.segments,
        };
        self.apply(split, false).await?;
        self.current = change;
        Ok(())
    }

    /// At 100% the flag already gives everyone the new variant, with no targeting left.
    async fn promote(&mut self) -> Result<(), BackendError> {
        Ok(())
    }

    /// The kill switch: everyone gets the off variant, whatever the flag held.
    async fn rollback(&mut self) -> Result<(), BackendError> {
        let stable = self.current.to_stable();
        let split = Split {
            weight: stable.weight,
            segments: stable.segments,
        };
        self.apply(split, true).await?;
        self.current = stable;
        Ok(())
    }

    async fn recover(&mut self, _recovery: &super::Recovery) -> Result<Vec<String>, BackendError> {
        Ok(vec![format!(
            "without the journal, rollback still needs nothing but the plan: flag `{}` gets defaultVariant \"{}\" and no targeting (the kill switch); the targeting it had before the rollout is not restored",
            self.spec.flag, self.spec.off_variant
        )])
    }
}
