//! Side effects on the host: running commands and writing files. Backends and hooks act only
//! through an `Executor`, so a dry run can show exactly what would be done by swapping it.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt};

pub mod children;
pub mod redact;

/// A command to run: argv (never a shell string), extra environment and a time limit.
#[derive(Debug, Clone)]
pub struct Cmd {
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub timeout: Duration,
    /// What the command is for, in a few words ("test the nginx config").
    pub purpose: String,
    /// How many bytes of stdout are kept at each end (`KEEP`, or `KEEP_DOCUMENT` for output
    /// that is parsed whole). stderr always keeps `KEEP`.
    pub stdout_keep: usize,
}

/// Bytes kept at the start and at the end of a command's stdout and stderr. The rest is read
/// and dropped: a command that prints gigabytes must not exhaust rollout's memory, nor block
/// on a full pipe.
pub const KEEP: usize = 64 * 1024;

/// For stdout that is a document parsed whole (kubectl's JSON lists), which may legitimately
/// run to megabytes.
pub const KEEP_DOCUMENT: usize = 32 * 1024 * 1024;

/// `tail()` shows at most this many lines, and at most this many characters of them.
const TAIL_LINES: usize = 5;
const TAIL_CHARS: usize = 500;

#[derive(Debug, Clone, Default)]
pub struct Output {
    /// The exit code; `None` when the process was killed by a signal.
    pub code: Option<i32>,
    /// What the command printed; when it printed more than twice its keep, the first and last
    /// keep bytes with a line between them saying how much was dropped.
    pub stdout: String,
    pub stderr: String,
    /// Bytes dropped from the middle of stdout and stderr (0 when all was kept).
    pub stdout_dropped: u64,
    pub stderr_dropped: u64,
}

impl Output {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// The last lines of stderr (or stdout), enough to say why a command failed; at most
    /// `TAIL_LINES` lines and `TAIL_CHARS` characters, so that it fits in a message.
    pub fn tail(&self) -> String {
        let (stream, text, dropped) = if self.stderr.trim().is_empty() {
            ("stdout", &self.stdout, self.stdout_dropped)
        } else {
            ("stderr", &self.stderr, self.stderr_dropped)
        };
        // After a drop only the kept end is near the tail; the note below replaces the rest.
        let text = match dropped {
            0 => text.as_str(),
            n => text
                .rsplit_once(&dropped_line(n))
                .map_or(text.as_str(), |(_, end)| end),
        };
        let lines: Vec<&str> = text.trim().lines().collect();
        let last = lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n");
        // One line may be megabytes long: its end is where an error message usually is.
        let count = last.chars().count();
        let mut shown = if count > TAIL_CHARS {
            let end: String = last.chars().skip(count - TAIL_CHARS).collect();
            format!("…{end}")
        } else {
            last
        };
        if dropped > 0 {
            shown = format!("{shown} ({} of {stream} dropped)", human_bytes(dropped))
                .trim_start()
                .to_string();
        }
        shown
    }

    pub fn status_text(&self) -> String {
        match self.code {
            Some(code) => format!("exit status {code}"),
            None => "killed by a signal".to_string(),
        }
    }
}

#[derive(Debug, Error)]
pub enum ExecError {
    #[error("cannot run `{program}`: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{program}` did not finish within {}", humantime::format_duration(*.after))]
    Timeout { program: String, after: Duration },
    #[error("cannot {op} {}: {source}", .path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What an executor did (or, in a dry run, would have done), for people reading the log.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Action {
    /// A command run (or, in a dry run, that would be run), with its argv.
    Run { argv: Vec<String>, purpose: String },
    /// A file written atomically, with its full contents.
    Write { path: String, contents: String },
    /// An API call with its parameters.
    Call {
        service: String,
        operation: String,
        params: serde_json::Value,
    },
    /// A wait the dry run skips (bakes, approvals, rollouts becoming ready).
    Wait { what: String },
}

/// What an executor tells whoever watches it: each action, and each process group it starts
/// and sees end (so that a journal can record them).
#[derive(Debug, Clone, PartialEq)]
pub enum Report {
    Action { dry_run: bool, action: Action },
    ChildStarted(children::ChildGroup),
    ChildEnded { pgid: u32 },
}

/// Receives an executor's reports; the engine's caller turns them into events.
pub type Observer = std::sync::Arc<dyn Fn(Report) + Send + Sync>;

#[async_trait]
pub trait Executor: Send + Sync {
    /// True when nothing is really done: reads return nothing and commands "succeed".
    fn is_dry_run(&self) -> bool;
    async fn run(&self, cmd: &Cmd) -> Result<Output, ExecError>;
    /// Replaces the file atomically: readers see the old or the new contents, never a mix.
    async fn write_file(&self, path: &Path, contents: &str) -> Result<(), ExecError>;
    /// The file's contents, or `None` when it does not exist.
    async fn read_file(&self, path: &Path) -> Result<Option<String>, ExecError>;
    /// Reports an API call (the ECS backend makes its own calls; a dry run only reports them).
    fn call(&self, service: &str, operation: &str, params: serde_json::Value);
    /// Says what a backend checks or waits for by itself; a dry run shows it, a real run
    /// needs no word.
    fn note(&self, what: &str);
}

/// Really does things, and reports each action (shown with --verbose).
pub struct RealExecutor {
    pub observer: Observer,
    /// What commands print is redacted before anyone sees it: they inherit the environment,
    /// secrets included, and may echo it.
    pub redactor: redact::Redactor,
}

impl RealExecutor {
    fn report(&self, action: Action) {
        (self.observer)(Report::Action {
            dry_run: false,
            action,
        });
    }
}

#[async_trait]
impl Executor for RealExecutor {
    fn is_dry_run(&self) -> bool {
        false
    }

    async fn run(&self, cmd: &Cmd) -> Result<Output, ExecError> {
        self.report(Action::Run {
            argv: cmd.argv.clone(),
            purpose: cmd.purpose.clone(),
        });
        let mut started = None;
        let result = run_command_with(cmd, |pid| {
            if let Some(group) = children::ChildGroup::of(pid, &cmd.purpose) {
                started = Some(group.pgid);
                (self.observer)(Report::ChildStarted(group));
            }
        })
        .await;
        if let Some(pgid) = started {
            (self.observer)(Report::ChildEnded { pgid });
        }
        result.map(|output| Output {
            stdout: self.redactor.redact(&output.stdout),
            stderr: self.redactor.redact(&output.stderr),
            ..output
        })
    }

    async fn write_file(&self, path: &Path, contents: &str) -> Result<(), ExecError> {
        self.report(Action::Write {
            path: path.display().to_string(),
            contents: contents.to_string(),
        });
        let path = path.to_path_buf();
        let contents = contents.to_string();
        tokio::task::spawn_blocking(move || write_atomically(&path, contents.as_bytes()))
            .await
            .expect("the atomic write task does not panic")
    }

    async fn read_file(&self, path: &Path) -> Result<Option<String>, ExecError> {
        match tokio::fs::read_to_string(path).await {
            Ok(text) => Ok(Some(text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(ExecError::Io {
                op: "read",
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    fn call(&self, service: &str, operation: &str, params: serde_json::Value) {
        self.report(Action::Call {
            service: service.to_string(),
            operation: operation.to_string(),
            params,
        });
    }

    fn note(&self, _what: &str) {}
}

/// Does nothing and says what it would have done, in full.
pub struct DryRunExecutor {
    pub observer: Observer,
}

impl DryRunExecutor {
    fn report(&self, action: Action) {
        (self.observer)(Report::Action {
            dry_run: true,
            action,
        });
    }
}

#[async_trait]
impl Executor for DryRunExecutor {
    fn is_dry_run(&self) -> bool {
        true
    }

    async fn run(&self, cmd: &Cmd) -> Result<Output, ExecError> {
        self.report(Action::Run {
            argv: cmd.argv.clone(),
            purpose: cmd.purpose.clone(),
        });
        Ok(Output {
            code: Some(0),
            ..Output::default()
        })
    }

    async fn write_file(&self, path: &Path, contents: &str) -> Result<(), ExecError> {
        self.report(Action::Write {
            path: path.display().to_string(),
            contents: contents.to_string(),
        });
        Ok(())
    }

    async fn read_file(&self, _path: &Path) -> Result<Option<String>, ExecError> {
        Ok(None)
    }

    fn call(&self, service: &str, operation: &str, params: serde_json::Value) {
        self.report(Action::Call {
            service: service.to_string(),
            operation: operation.to_string(),
            params,
        });
    }

    fn note(&self, what: &str) {
        self.report(Action::Wait {
            what: what.to_string(),
        });
    }
}

/// The line put where bytes were dropped from the middle of an output.
fn dropped_line(dropped: u64) -> String {
    format!("\n… {} dropped …\n", human_bytes(dropped))
}

/// A byte count for people, in decimal units: "512 bytes", "65.5 kB", "399.9 MB".
pub fn human_bytes(n: u64) -> String {
    match n {
        1 => "1 byte".to_string(),
        0..1_000 => format!("{n} bytes"),
        1_000..1_000_000 => format!("{:.1} kB", n as f64 / 1e3),
        1_000_000..1_000_000_000 => format!("{:.1} MB", n as f64 / 1e6),
        _ => format!("{:.1} GB", n as f64 / 1e9),
    }
}

/// Reads a stream to its end, keeping its first and last `keep` bytes; returns the kept text
/// and how many bytes were dropped between them. A read error ends the stream: what was read
/// so far is still worth showing.
async fn read_capped(mut stream: impl AsyncRead + Unpin, keep: usize) -> (String, u64) {
    let mut head = Vec::new();
    let mut tail = VecDeque::new();
    let mut dropped = 0u64;
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        let n = match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut bytes = &chunk[..n];
        if head.len() < keep {
            let take = bytes.len().min(keep - head.len());
            head.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
        }
        tail.extend(bytes);
        if tail.len() > keep {
            let excess = tail.len() - keep;
            tail.drain(..excess);
            dropped += excess as u64;
        }
    }
    let tail = Vec::from(tail);
    let text = if dropped == 0 {
        // Contiguous bytes: converted together, so a character split between head and
        // tail is not mangled.
        head.extend_from_slice(&tail);
        String::from_utf8_lossy(&head).into_owned()
    } else {
        format!(
            "{}{}{}",
            String::from_utf8_lossy(&head),
            dropped_line(dropped),
            String::from_utf8_lossy(&tail)
        )
    };
    (text, dropped)
}

/// Runs a command in its own process group, so that on timeout the whole tree it started
/// (a script and its children) is killed, not just the first process.
pub async fn run_command(cmd: &Cmd) -> Result<Output, ExecError> {
    run_command_with(cmd, |_| {}).await
}

/// Like `run_command`; `on_spawn` gets the child's pid (which is also its process group) as
/// soon as it runs, so that the group can be put on record before it can act for long.
pub async fn run_command_with(
    cmd: &Cmd,
    on_spawn: impl FnOnce(u32) + Send,
) -> Result<Output, ExecError> {
    let program = cmd.argv[0].clone();
    let mut command = tokio::process::Command::new(&program);
    command
        .args(&cmd.argv[1..])
        .envs(cmd.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    children::die_with_parent(&mut command);
    let mut child = command.spawn().map_err(|source| ExecError::Spawn {
        program: program.clone(),
        source,
    })?;
    let pid = child.id();
    if let Some(pid) = pid {
        on_spawn(pid);
    }
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let collect = async {
        let (out, err, status) = tokio::join!(
            read_capped(&mut stdout, cmd.stdout_keep),
            read_capped(&mut stderr, KEEP),
            child.wait()
        );
        (status, out, err)
    };
    match tokio::time::timeout(cmd.timeout, collect).await {
        Ok((status, (stdout, stdout_dropped), (stderr, stderr_dropped))) => {
            let status = status.map_err(|source| ExecError::Spawn {
                program: program.clone(),
                source,
            })?;
            Ok(Output {
                code: status.code(),
                stdout,
                stderr,
                stdout_dropped,
                stderr_dropped,
            })
        }
        Err(_) => {
            if let Some(pid) = pid {
                kill_group(pid);
            }
            Err(ExecError::Timeout {
                program,
                after: cmd.timeout,
            })
        }
    }
}

fn kill_group(pid: u32) {
    // SAFETY: kill(2) with a negative pid signals the process group we created for the child;
    // it touches no memory of ours.
    unsafe {
        libc::kill(-(pid as libc::pid_t), libc::SIGKILL);
    }
}

/// Temp file in the same directory, fsync, rename over the target, fsync the directory, keeping
/// the target's permissions. A crash at any moment leaves the old file or the new one. A
/// symlink is written through: the file it finally points to is replaced, and the link stays.
pub fn write_atomically(path: &Path, contents: &[u8]) -> Result<(), ExecError> {
    write_atomically_with(path, contents, true)
}

/// Like `write_atomically`; with `durable` false it skips the fsyncs: readers still never see
/// a torn file, but a power cut may lose the write. For frequent, unimportant updates.
pub fn write_atomically_with(path: &Path, contents: &[u8], durable: bool) -> Result<(), ExecError> {
    use std::io::Write;
    let io = |op: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| ExecError::Io { op, path, source }
    };
    // Renaming over a link would replace the link itself, while whoever reads the target
    // (nginx includes the target's path) kept reading the old file.
    let target = resolve_symlinks(path)?;
    let path = target.as_path();
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let permissions = std::fs::metadata(path).ok().map(|m| m.permissions());
    let mut temp = tempfile::Builder::new()
        .prefix(".rollout-")
        .tempfile_in(dir)
        .map_err(io("create a temporary file in", dir))?;
    temp.write_all(contents).map_err(io("write", temp.path()))?;
    let permissions = permissions.unwrap_or_else(|| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::Permissions::from_mode(0o644)
    });
    std::fs::set_permissions(temp.path(), permissions)
        .map_err(io("set permissions on", temp.path()))?;
    if durable {
        temp.as_file().sync_all().map_err(io("sync", temp.path()))?;
    }
    temp.persist(path).map_err(|e| ExecError::Io {
        op: "replace",
        path: path.to_path_buf(),
        source: e.error,
    })?;
    if !durable {
        return Ok(());
    }
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("sync the directory", dir))
}

/// The file a path finally names: symlinks followed one after the other (a relative one from
/// its link's directory), up to the kernel's own limit of 40. The last path need not exist.
pub fn resolve_symlinks(path: &Path) -> Result<PathBuf, ExecError> {
    const MAX_LINKS: usize = 40;
    let mut current = path.to_path_buf();
    for _ in 0..MAX_LINKS {
        match std::fs::symlink_metadata(&current) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let target = std::fs::read_link(&current).map_err(|source| ExecError::Io {
                    op: "read the symlink",
                    path: current.clone(),
                    source,
                })?;
                // An absolute target replaces the whole path in `join`.
                current = match current.parent() {
                    Some(dir) => dir.join(target),
                    None => target,
                };
            }
            _ => return Ok(current),
        }
    }
    Err(ExecError::Io {
        op: "follow the symlinks of",
        path: path.to_path_buf(),
        source: std::io::Error::from_raw_os_error(libc::ELOOP),
    })
}

/// An error and its sources in one line (`error sending request: connection refused`), each
/// message once: wrappers often repeat their source's. Not Debug dumps, which the AWS SDK's
/// `DisplayErrorContext` adds.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        let part = e.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = e.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn cmd(argv: &[&str], timeout: Duration) -> Cmd {
        Cmd {
            argv: argv.iter().map(|s| s.to_string()).collect(),
            env: vec![("ROLLOUT_TEST".into(), "yes".into())],
            timeout,
            purpose: "test".into(),
            stdout_keep: KEEP,
        }
    }

    #[tokio::test]
    async fn runs_argv_with_env_and_captures_output() {
        let out = run_command(&cmd(
            &["sh", "-c", "echo $ROLLOUT_TEST; echo oops >&2; exit 3"],
            Duration::from_secs(5),
        ))
        .await
        .unwrap();
        assert_eq!(out.code, Some(3));
        assert_eq!(out.stdout, "yes\n");
        assert_eq!(out.tail(), "oops");
    }

    #[tokio::test]
    async fn a_timeout_kills_the_whole_process_group() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("grandchild.pid");
        let script = format!("sleep 30 & echo $! > {}; wait", pid_file.display());
        let err = run_command(&cmd(&["sh", "-c", &script], Duration::from_millis(500)))
            .await
            .unwrap_err();
        assert!(matches!(err, ExecError::Timeout { .. }), "{err}");
        let grandchild: u32 = std::fs::read_to_string(&pid_file)
            .expect("the grandchild started")
            .trim()
            .parse()
            .unwrap();
        // Killed with its group: gone (or a zombie waiting for init) as soon as the kernel has
        // delivered the signal.
        let gone = || {
            std::fs::read_to_string(format!("/proc/{grandchild}/stat")).map_or(true, |stat| {
                stat.rsplit(')')
                    .next()
                    .is_some_and(|s| s.trim_start().starts_with('Z'))
            })
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !gone() {
            assert!(
                std::time::Instant::now() < deadline,
                "a grandchild outlived the timeout"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn a_missing_program_is_a_clear_error() {
        let err = run_command(&cmd(&["/nonexistent/tool"], Duration::from_secs(1)))
            .await
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("cannot run `/nonexistent/tool`"),
            "{err}"
        );
    }

    /// nginx includes the target's path: replacing the link would leave it reading the old file.
    #[test]
    fn atomic_writes_go_through_a_chain_of_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        std::fs::create_dir(&real).unwrap();
        let target = real.join("upstream.conf");
        std::fs::write(&target, "old").unwrap();
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o640)).unwrap();
        // links/b -> ../real/upstream.conf (relative), a -> links/b (absolute)
        std::fs::create_dir(dir.path().join("links")).unwrap();
        let b = dir.path().join("links/b");
        std::os::unix::fs::symlink("../real/upstream.conf", &b).unwrap();
        let a = dir.path().join("a");
        std::os::unix::fs::symlink(&b, &a).unwrap();
        write_atomically(&a, b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "new");
        for link in [&a, &b] {
            let meta = std::fs::symlink_metadata(link).unwrap();
            assert!(
                meta.file_type().is_symlink(),
                "{} was replaced",
                link.display()
            );
        }
        let mode = std::fs::metadata(&target).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);
        // The temporary file was made, and renamed, next to the target.
        assert_eq!(std::fs::read_dir(&real).unwrap().count(), 1);
        assert_eq!(
            std::fs::read_dir(dir.path().join("links")).unwrap().count(),
            1
        );
    }

    #[test]
    fn a_symlink_loop_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        std::os::unix::fs::symlink("b", &a).unwrap();
        std::os::unix::fs::symlink("a", dir.path().join("b")).unwrap();
        let err = write_atomically(&a, b"x").unwrap_err().to_string();
        assert!(err.starts_with("cannot follow the symlinks of "), "{err}");
    }

    #[test]
    fn atomic_writes_keep_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("upstream.conf");
        std::fs::write(&path, "old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        write_atomically(&path, b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    /// 50 MB on stdout and a 20 MB line on stderr: each keeps its two ends, the exact count of
    /// what was dropped between them, and the child is never blocked on a full pipe.
    #[tokio::test]
    async fn a_flood_of_output_keeps_only_its_ends_and_counts_the_rest() {
        let script = "head -c 50000000 /dev/zero | tr '\\0' o; \
                      head -c 20000000 /dev/zero | tr '\\0' e >&2; echo ' the end' >&2; exit 1";
        let out = run_command(&cmd(&["sh", "-c", script], Duration::from_secs(60)))
            .await
            .unwrap();
        assert_eq!(out.code, Some(1));
        assert_eq!(out.stdout_dropped, 50_000_000 - 2 * KEEP as u64);
        assert_eq!(out.stderr_dropped, 20_000_009 - 2 * KEEP as u64);
        let marker = "\n… 49.9 MB dropped …\n";
        assert_eq!(out.stdout.len(), 2 * KEEP + marker.len());
        assert_eq!(
            out.stdout,
            format!("{}{marker}{}", "o".repeat(KEEP), "o".repeat(KEEP))
        );
        assert!(out.stderr.len() <= 2 * KEEP + 64, "{}", out.stderr.len());
        // The message keeps the end of the one long line and says what was dropped.
        let tail = out.tail();
        assert_eq!(
            tail,
            format!(
                "…{} the end (19.9 MB of stderr dropped)",
                "e".repeat(TAIL_CHARS - 8)
            )
        );
    }

    #[tokio::test]
    async fn output_that_fits_is_kept_whole() {
        let out = run_command(&cmd(
            &[
                "sh",
                "-c",
                "head -c 131072 /dev/zero | tr '\\0' a; printf 'é' >&2",
            ],
            Duration::from_secs(10),
        ))
        .await
        .unwrap();
        assert_eq!((out.stdout_dropped, out.stderr_dropped), (0, 0));
        assert_eq!(out.stdout, "a".repeat(2 * KEEP));
        assert_eq!(out.stderr, "é");
    }

    #[test]
    fn tail_is_bounded_in_lines_and_characters() {
        let output = |stderr: &str| Output {
            code: Some(1),
            stderr: stderr.to_string(),
            ..Output::default()
        };
        assert_eq!(output("1\n2\n3\n4\n5\n6\n7\n").tail(), "3\n4\n5\n6\n7");
        let long = format!("{}END", "x".repeat(10_000));
        let tail = output(&long).tail();
        assert_eq!(tail.chars().count(), TAIL_CHARS + 1);
        assert!(tail.starts_with("…x") && tail.ends_with("xEND"), "{tail}");
        assert_eq!(human_bytes(999), "999 bytes");
        assert_eq!(human_bytes(399_900_000), "399.9 MB");
    }
}
