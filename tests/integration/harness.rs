//! A small fluent harness: write files into a fresh directory, run the built `rollout` there,
//! and assert its exit status and exact output.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use pretty_assertions::assert_eq;

pub struct Test {
    dir: tempfile::TempDir,
    args: Vec<String>,
    env: Vec<(String, String)>,
    status: i32,
    stdout: Option<String>,
    stderr: Option<String>,
}

pub fn rollout_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_rollout"))
}

impl Test {
    pub fn new() -> Self {
        Test {
            dir: tempfile::tempdir().expect("a temporary directory"),
            args: Vec::new(),
            env: Vec::new(),
            status: 0,
            stdout: None,
            stderr: None,
        }
    }

    pub fn file(self, name: &str, contents: &str) -> Self {
        let path = self.dir.path().join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create the file's directory");
        }
        std::fs::write(path, unindent(contents)).expect("write the test file");
        self
    }

    /// Writes `plan.toml`.
    pub fn plan(self, contents: &str) -> Self {
        self.file("plan.toml", contents)
    }

    pub fn args(mut self, args: &[&str]) -> Self {
        self.args.extend(args.iter().map(|a| a.to_string()));
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    pub fn status(mut self, status: i32) -> Self {
        self.status = status;
        self
    }

    pub fn stdout(mut self, expected: &str) -> Self {
        self.stdout = Some(unindent(expected));
        self
    }

    pub fn stderr(mut self, expected: &str) -> Self {
        self.stderr = Some(unindent(expected));
        self
    }

    /// Runs `rollout` in the test directory and checks everything that was asked. The
    /// directory lives as long as the returned `Ran`.
    pub fn run(self) -> Ran {
        let output = Command::new(rollout_bin())
            .args(&self.args)
            .current_dir(self.dir.path())
            .env_remove("NO_COLOR")
            .env_remove("ROLLOUT_STATE_DIR")
            // Outputs are asserted as they are outside CI, wherever the tests run.
            .env_remove("GITHUB_ACTIONS")
            .env_remove("GITLAB_CI")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .output()
            .expect("run rollout");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        if let Some(expected) = &self.stdout {
            assert_eq!(stdout, *expected, "stdout of rollout {:?}", self.args);
        }
        if let Some(expected) = &self.stderr {
            assert_eq!(stderr, *expected, "stderr of rollout {:?}", self.args);
        }
        assert_eq!(
            output.status.code(),
            Some(self.status),
            "exit status of rollout {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
            self.args
        );
        Ran {
            output,
            dir: self.dir,
        }
    }
}

pub struct Ran {
    pub output: Output,
    pub dir: tempfile::TempDir,
}

impl Ran {
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }
}

/// Lets expected output be written indented in the test source: the common leading
/// whitespace of all non-blank lines is removed, and a leading newline is dropped.
pub fn unindent(text: &str) -> String {
    let text = text.strip_prefix('\n').unwrap_or(text);
    // The closing quote's indentation is not part of the text.
    let text = match text.rfind('\n') {
        Some(i) if text[i + 1..].trim().is_empty() => &text[..=i],
        _ => text,
    };
    let indent = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0);
    text.split_inclusive('\n')
        .map(|l| {
            if l.len() >= indent {
                &l[indent..]
            } else {
                l.trim_start_matches(' ')
            }
        })
        .collect()
}

/// The commands run and files written by a run, in order, from its JSON events (`--output
/// json`): what a dry run must show exactly as a real run does it.
pub fn effects(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|event| event["event"] == "action" && event["kind"] != "wait")
        .map(|event| match event["kind"].as_str().unwrap_or_default() {
            "run" => format!("run {}", event["argv"]),
            "write" => format!("write {}", event["path"]),
            other => format!("{other} {event}"),
        })
        .collect()
}
