//! The flagd backend on a real file: only our flag changes, others' edits survive, a file
//! changed under our feet is never overwritten, and every write is read back.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use serde_json::{Value, json};

use super::*;
use crate::exec::{Cmd, ExecError, Output, RealExecutor};
use crate::plan::{AttributeTest, Name, SegmentRule, SegmentSet, Weight};

const FILE: &str = r##"{
  "flags": {
    "new-checkout": {
      "state": "ENABLED",
      "variants": { "on": true, "off": false },
      "defaultVariant": "off"
    },
    "banner": {
      "state": "ENABLED",
      "variants": { "red": "#f00", "blue": "#00f" },
      "defaultVariant": "red"
    }
  }
}
"##;

fn spec(path: &Path) -> Spec {
    Spec {
        flags_file: path.to_path_buf(),
        flag: "new-checkout".into(),
        on_variant: "on".into(),
        off_variant: "off".into(),
        cleanup_after: std::time::Duration::from_secs(60),
    }
}

fn real() -> Arc<dyn Executor> {
    Arc::new(RealExecutor {
        observer: Arc::new(|_| {}),
        redactor: Default::default(),
    })
}

fn staff() -> Vec<Segment> {
    vec![Segment {
        name: Name::parse("staff").unwrap(),
        rule: SegmentRule::Attribute {
            attribute: "email".into(),
            test: AttributeTest::EndsWith("@example.com".into()),
        },
    }]
}

fn change(stage: usize, weight: f64, segments: SegmentSet) -> WeightChange {
    WeightChange {
        stage,
        weight: Weight::new(weight).unwrap(),
        previous: Weight::ZERO,
        segments,
        mirror: None,
    }
}

fn read(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[tokio::test]
async fn stages_rewrite_only_our_flag_and_keep_edits_of_other_flags() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flags.json");
    std::fs::write(&path, FILE).unwrap();
    let mut flagd = Flagd::with_segments(spec(&path), staff(), real());
    flagd.preflight().await.unwrap();
    flagd
        .set_weight(change(1, 10.0, SegmentSet::EMPTY.with(0)))
        .await
        .unwrap();
    let doc = read(&path);
    assert_eq!(doc["flags"]["new-checkout"]["defaultVariant"], "off");
    assert_eq!(
        doc["flags"]["new-checkout"]["targeting"],
        json!({"if": [{"ends_with": [{"var": "email"}, "@example.com"]}, "on",
                      {"fractional": [["on", 10000], ["off", 90000]]}]})
    );
    // Someone edits another flag between two stages: the next write keeps it.
    let edited = std::fs::read_to_string(&path).unwrap().replace(
        "\"defaultVariant\": \"red\"",
        "\"defaultVariant\": \"blue\"",
    );
    std::fs::write(&path, edited).unwrap();
    flagd
        .set_weight(change(2, 100.0, SegmentSet::EMPTY.with(0)))
        .await
        .unwrap();
    let doc = read(&path);
    assert_eq!(doc["flags"]["banner"]["defaultVariant"], "blue");
    assert_eq!(doc["flags"]["new-checkout"]["defaultVariant"], "on");
    assert!(doc["flags"]["new-checkout"].get("targeting").is_none());
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.starts_with("{\n  \"flags\": {\n    \"new-checkout\""),
        "{text}"
    );
    flagd.rollback().await.unwrap();
    let doc = read(&path);
    assert_eq!(doc["flags"]["new-checkout"]["defaultVariant"], "off");
    assert!(doc["flags"]["new-checkout"].get("targeting").is_none());
    assert_eq!(doc["flags"]["banner"]["defaultVariant"], "blue");
}

#[tokio::test]
async fn an_edit_of_our_flag_by_someone_else_stops_the_run_but_not_the_kill_switch() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flags.json");
    std::fs::write(&path, FILE).unwrap();
    let mut flagd = Flagd::with_segments(spec(&path), Vec::new(), real());
    flagd.preflight().await.unwrap();
    flagd
        .set_weight(change(1, 5.0, SegmentSet::EMPTY))
        .await
        .unwrap();
    let mut doc = read(&path);
    doc["flags"]["new-checkout"]["defaultVariant"] = json!("on");
    let theirs = serde_json::to_string_pretty(&doc).unwrap();
    std::fs::write(&path, &theirs).unwrap();
    let err = flagd
        .set_weight(change(2, 50.0, SegmentSet::EMPTY))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(
            "was edited by someone else: flag `new-checkout` is no longer as rollout left it"
        ),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        theirs,
        "nothing was written"
    );
    flagd.rollback().await.unwrap();
    assert_eq!(
        read(&path)["flags"]["new-checkout"]["defaultVariant"],
        "off"
    );
}

/// Writes `replacement` into the file when it is read for the `at`-th time: someone else's
/// write landing between rollout's read and its replace.
struct Racing {
    inner: Arc<dyn Executor>,
    reads: AtomicUsize,
    at: usize,
    replacement: String,
}

#[async_trait]
impl Executor for Racing {
    fn is_dry_run(&self) -> bool {
        false
    }
    async fn run(&self, cmd: &Cmd) -> Result<Output, ExecError> {
        self.inner.run(cmd).await
    }
    async fn write_file(&self, path: &Path, contents: &str) -> Result<(), ExecError> {
        self.inner.write_file(path, contents).await
    }
    async fn read_file(&self, path: &Path) -> Result<Option<String>, ExecError> {
        if self.reads.fetch_add(1, Ordering::SeqCst) + 1 == self.at {
            std::fs::write(path, &self.replacement).unwrap();
        }
        self.inner.read_file(path).await
    }
    fn call(&self, service: &str, operation: &str, params: Value) {
        self.inner.call(service, operation, params)
    }
    fn note(&self, what: &str) {
        self.inner.note(what)
    }
}

#[tokio::test]
async fn a_file_changed_between_the_read_and_the_replace_is_not_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flags.json");
    std::fs::write(&path, FILE).unwrap();
    let theirs = FILE.replace("\"red\"\n", "\"blue\"\n");
    // Read 1: preflight. Read 2: the change's first read. Read 3: the look before the replace.
    let exec = Arc::new(Racing {
        inner: real(),
        reads: AtomicUsize::new(0),
        at: 3,
        replacement: theirs.clone(),
    });
    let mut flagd = Flagd::with_segments(spec(&path), Vec::new(), exec);
    flagd.preflight().await.unwrap();
    let err = flagd
        .set_weight(change(1, 5.0, SegmentSet::EMPTY))
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        format!(
            "the flags file {} changed while rollout was changing flag `new-checkout`; it was not replaced, so that edit is kept",
            path.display()
        )
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), theirs);
}

#[tokio::test]
async fn preflight_names_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flags.json");
    let mut flagd = Flagd::with_segments(spec(&path), Vec::new(), real());
    let err = flagd.preflight().await.unwrap_err().to_string();
    assert_eq!(
        err,
        format!("the flags file {} does not exist", path.display())
    );
    std::fs::write(
        &path,
        FILE.replace(
            "ENABLED\",\n      \"variants\": { \"on\"",
            "DISABLED\",\n      \"variants\": { \"on\"",
        ),
    )
    .unwrap();
    let err = flagd.preflight().await.unwrap_err().to_string();
    assert!(err.contains("flag `new-checkout` is not ENABLED"), "{err}");
    std::fs::write(&path, FILE.replace("new-checkout", "old-checkout")).unwrap();
    let err = flagd.preflight().await.unwrap_err().to_string();
    assert_eq!(
        err,
        format!(
            "the flags file {} has no flag `new-checkout` (its flags: `old-checkout`, `banner`)",
            path.display()
        )
    );
}

#[tokio::test]
async fn a_write_that_does_not_read_back_is_not_confirmed() {
    /// Writes go nowhere: the read-back sees the old file.
    struct Lost(Arc<dyn Executor>);
    #[async_trait]
    impl Executor for Lost {
        fn is_dry_run(&self) -> bool {
            false
        }
        async fn run(&self, cmd: &Cmd) -> Result<Output, ExecError> {
            self.0.run(cmd).await
        }
        async fn write_file(&self, _: &Path, _: &str) -> Result<(), ExecError> {
            Ok(())
        }
        async fn read_file(&self, path: &Path) -> Result<Option<String>, ExecError> {
            self.0.read_file(path).await
        }
        fn call(&self, _: &str, _: &str, _: Value) {}
        fn note(&self, _: &str) {}
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flags.json");
    std::fs::write(&path, FILE).unwrap();
    let mut flagd = Flagd::with_segments(spec(&path), Vec::new(), Arc::new(Lost(real())));
    flagd.preflight().await.unwrap();
    let err = flagd
        .set_weight(change(1, 5.0, SegmentSet::EMPTY))
        .await
        .unwrap_err();
    assert!(matches!(err, BackendError::NotConfirmed(_)), "{err}");
}
