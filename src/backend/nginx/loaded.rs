//! What nginx really runs, as far as rollout can see: the master and its workers (the pid file
//! and `/proc`) and the files its configuration reads (the `nginx -T` dump). Also the checks,
//! before anything changes, that the paths the backend will need are usable.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::exec::resolve_symlinks;

/// An nginx master and its worker processes, read from the pid file and `/proc`.
#[derive(Debug, Clone, PartialEq)]
pub struct Workers {
    pub master: u32,
    pub pids: BTreeSet<u32>,
}

impl Workers {
    pub fn read(pid_file: &Path) -> Result<Workers, String> {
        let master = master_pid(pid_file)?;
        let proc = std::fs::read_dir("/proc").map_err(|e| format!("cannot read /proc: {e}"))?;
        let pids = proc
            .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| parent_of(*pid) == Some(master))
            .collect();
        Ok(Workers { master, pids })
    }

    /// A reload that was applied started workers that did not exist before it (a restarted
    /// master, with a new pid, counts too).
    pub fn is_newer_generation_than(&self, before: &Workers) -> bool {
        self.master != before.master || self.pids.iter().any(|pid| !before.pids.contains(pid))
    }
}

/// The process id in nginx's pid file.
pub fn master_pid(pid_file: &Path) -> Result<u32, String> {
    let text = std::fs::read_to_string(pid_file).map_err(|e| {
        format!(
            "cannot read the nginx pid_file {}: {e}; is nginx running, and is pid_file the path \
             of nginx's `pid` directive?",
            pid_file.display()
        )
    })?;
    text.trim().parse().map_err(|_| {
        let shown: String = text.trim().chars().take(40).collect();
        format!(
            "the nginx pid_file {} does not hold a process id (it holds `{shown}`)",
            pid_file.display()
        )
    })
}

/// A reload can only be confirmed by new workers of a master that is running.
pub fn check_master_running(pid_file: &Path) -> Result<(), String> {
    let pid = master_pid(pid_file)?;
    if is_running(pid) {
        return Ok(());
    }
    Err(format!(
        "the nginx pid_file {} names process {pid}, which is not running; start nginx, or point \
         pid_file at the pid file of the running nginx master",
        pid_file.display()
    ))
}

/// Running, not a zombie waiting to be reaped.
fn is_running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rfind(')')
            .and_then(|end| stat[end + 1..].split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X")
    })
}

/// The parent pid from `/proc/PID/stat`; the command name in parentheses may itself hold
/// spaces and parentheses, so fields are counted after the last `)`.
fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(1)?.parse().ok()
}

/// Every write creates a temporary file next to the file the upstream_file finally names and
/// renames it over that file. Creating (and removing) a file there is the only honest test:
/// permission bits say nothing to root, nor about a read-only mount.
pub fn check_upstream_dir(upstream_file: &Path) -> Result<(), String> {
    let shown = shown(upstream_file);
    let target = resolve_symlinks(upstream_file)
        .map_err(|e| format!("cannot write the nginx upstream_file {shown}: {e}"))?;
    let dir = match target.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let probe = dir.join(format!(".rollout-check-{}-{nanos}", std::process::id()));
    let created = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe);
    match created {
        Ok(_) => std::fs::remove_file(&probe).map_err(|e| {
            format!(
                "cannot remove the test file {} rollout created: {e}",
                probe.display()
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(format!(
            "cannot write the nginx upstream_file {shown}: its directory {} does not exist; \
             create it, or point upstream_file at a file in an existing directory",
            dir.display()
        )),
        Err(e) => Err(format!(
            "cannot write the nginx upstream_file {shown}: cannot create a file in {} ({e}); \
             rollout replaces the file by renaming a new one over it, so it needs to create \
             files in that directory",
            dir.display()
        )),
    }
}

/// The path, and where it leads when it is a symlink.
fn shown(path: &Path) -> String {
    match resolve_symlinks(path) {
        Ok(target) if target != path => {
            format!("{} (a link to {})", path.display(), target.display())
        }
        _ => path.display().to_string(),
    }
}

/// One file of nginx's configuration dump: the path nginx opened, and what it read there.
#[derive(Debug, Clone, PartialEq)]
pub struct DumpedFile {
    pub path: PathBuf,
    pub text: String,
}

/// The files in the output of `nginx -T`: each starts with a line `# configuration file
/// PATH:`, and nginx ends each with a newline of its own.
pub fn parse_dump(stdout: &str) -> Vec<DumpedFile> {
    let mut files: Vec<DumpedFile> = Vec::new();
    for line in stdout.split_inclusive('\n') {
        let bare = line.trim_end_matches(['\n', '\r']);
        let header = bare
            .strip_prefix("# configuration file ")
            .and_then(|rest| rest.strip_suffix(':'));
        match (header, files.last_mut()) {
            (Some(path), _) => files.push(DumpedFile {
                path: PathBuf::from(path),
                text: String::new(),
            }),
            (None, Some(file)) => file.text.push_str(line),
            (None, None) => {}
        }
    }
    for file in &mut files {
        if file.text.ends_with('\n') {
            file.text.pop();
        }
    }
    files
}

/// Whether a file nginx reads holds this exact line. Wherever nginx sees the file (under a
/// link, or under another path inside a container), the line proves which write it reads.
pub fn holds_line(files: &[DumpedFile], line: &str) -> bool {
    files.iter().any(|f| f.text.lines().any(|l| l == line))
}

/// Whether nginx reads `upstream_file`, before rollout has written it: by its path or, for a
/// file nginx reads at a path that does not exist here (nginx in a container, the file
/// mounted), by contents equal to the file's. A path that exists here is a different file,
/// whatever it holds.
pub fn loads_file(files: &[DumpedFile], upstream_file: &Path, contents: &str) -> bool {
    find_file(files, upstream_file, contents).is_some()
}

/// The file of the dump that is `path` (see `loads_file`); empty contents identify nothing.
pub fn find_file<'f>(
    files: &'f [DumpedFile],
    path: &Path,
    contents: &str,
) -> Option<&'f DumpedFile> {
    files.iter().find(|f| {
        same_file(&f.path, path)
            || (!f.path.exists()
                && !contents.trim().is_empty()
                && f.text.trim_end() == contents.trim_end())
    })
}

/// What nginx reads instead of `upstream_file` holding the line `marker`, in one sentence.
pub fn what_nginx_loads_instead(
    files: &[DumpedFile],
    upstream_file: &Path,
    marker: Option<&str>,
    dump_command: &str,
) -> String {
    if let Some(file) = files.iter().find(|f| same_file(&f.path, upstream_file)) {
        let found = file
            .text
            .lines()
            .find(|l| l.starts_with("# Stage "))
            .map_or("contents rollout did not write".to_string(), |l| {
                format!("`{l}`")
            });
        let wanted = marker.map_or(String::new(), |m| format!(" instead of `{m}`"));
        return format!(
            "nginx loads {}, but there it finds {found}{wanted}",
            file.path.display()
        );
    }
    const SHOWN: usize = 8;
    let mut paths: Vec<String> = files
        .iter()
        .take(SHOWN)
        .map(|f| f.path.display().to_string())
        .collect();
    if files.len() > SHOWN {
        paths.push(format!("and {} more", files.len() - SHOWN));
    }
    let listed = if paths.is_empty() {
        "no file at all".to_string()
    } else {
        paths.join(", ")
    };
    format!(
        "nginx does not load {}: its configuration (`{dump_command}`) includes only {listed}",
        shown(upstream_file)
    )
}

/// The same file, links followed; paths that do not exist compare as written.
fn same_file(a: &Path, b: &Path) -> bool {
    let real = |p: &Path| {
        std::fs::canonicalize(p)
            .or_else(|_| resolve_symlinks(p))
            .unwrap_or_else(|_| p.to_path_buf())
    };
    real(a) == real(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_children_of_a_process() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("test.pid");
        std::fs::write(&pid_file, format!("{}\n", std::process::id())).unwrap();
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let workers = Workers::read(&pid_file).unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(workers.pids.contains(&child.id()), "{workers:?}");
        let older = Workers {
            master: workers.master,
            pids: BTreeSet::new(),
        };
        assert!(workers.is_newer_generation_than(&older));
        assert!(!workers.is_newer_generation_than(&workers));
    }

    #[test]
    fn a_pid_file_must_name_a_running_process() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("nginx.pid");
        std::fs::write(&pid_file, format!("{}\n", std::process::id())).unwrap();
        assert_eq!(check_master_running(&pid_file), Ok(()));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        // Exited but not yet reaped: a zombie is not a running master either.
        let pid = child.id();
        std::fs::write(&pid_file, format!("{pid}\n")).unwrap();
        assert!(wait_for_zombie(pid));
        assert!(check_master_running(&pid_file).is_err());
        child.wait().unwrap();
        let err = check_master_running(&pid_file).unwrap_err();
        assert!(
            err.contains(&format!("names process {pid}, which is not running")),
            "{err}"
        );
        std::fs::write(&pid_file, "").unwrap();
        let err = check_master_running(&pid_file).unwrap_err();
        assert!(
            err.ends_with("does not hold a process id (it holds ``)"),
            "{err}"
        );
    }

    fn wait_for_zombie(pid: u32) -> bool {
        (0..500).any(|_| {
            std::thread::sleep(std::time::Duration::from_millis(10));
            !is_running(pid)
        })
    }

    #[test]
    fn the_upstream_directory_must_take_new_files() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(check_upstream_dir(&dir.path().join("up.conf")), Ok(()));
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "the probe is removed"
        );
        // A link into a missing directory: the directory that matters is the target's.
        let link = dir.path().join("link.conf");
        std::os::unix::fs::symlink(dir.path().join("gone/up.conf"), &link).unwrap();
        let err = check_upstream_dir(&link).unwrap_err();
        assert_eq!(
            err,
            format!(
                "cannot write the nginx upstream_file {} (a link to {}): its directory {} does not \
                 exist; create it, or point upstream_file at a file in an existing directory",
                link.display(),
                dir.path().join("gone/up.conf").display(),
                dir.path().join("gone").display()
            )
        );
    }

    const DUMP: &str = "# configuration file /etc/nginx/nginx.conf:\nhttp {\n    include conf.d/*.conf;\n}\n\n\
                        # configuration file /etc/nginx/conf.d/app.conf:\n# Stage 2: 5% of traffic to the new version. Write ab12.\nupstream app { server a:1; }\n\n\
                        # configuration file /etc/nginx/conf.d/no-newline.conf:\nkeepalive_timeout 5;\n";

    #[test]
    fn reads_the_files_of_a_configuration_dump() {
        let files = parse_dump(DUMP);
        let paths: Vec<&Path> = files.iter().map(|f| f.path.as_path()).collect();
        assert_eq!(
            paths,
            [
                Path::new("/etc/nginx/nginx.conf"),
                Path::new("/etc/nginx/conf.d/app.conf"),
                Path::new("/etc/nginx/conf.d/no-newline.conf")
            ]
        );
        assert_eq!(files[0].text, "http {\n    include conf.d/*.conf;\n}\n");
        assert_eq!(files[2].text, "keepalive_timeout 5;");
        assert!(holds_line(
            &files,
            "# Stage 2: 5% of traffic to the new version. Write ab12."
        ));
        assert!(!holds_line(
            &files,
            "# Stage 2: 5% of traffic to the new version. Write ab13."
        ));
    }

    #[test]
    fn says_what_nginx_loads_instead() {
        let files = parse_dump(DUMP);
        let wanted = "# Stage 3: 50% of traffic to the new version. Write cd34.";
        assert_eq!(
            what_nginx_loads_instead(
                &files,
                Path::new("/etc/nginx/conf.d/app.conf"),
                Some(wanted),
                "nginx -T"
            ),
            format!(
                "nginx loads /etc/nginx/conf.d/app.conf, but there it finds `# Stage 2: 5% of \
                 traffic to the new version. Write ab12.` instead of `{wanted}`"
            )
        );
        assert_eq!(
            what_nginx_loads_instead(
                &files,
                Path::new("/srv/other.conf"),
                Some(wanted),
                "nginx -T"
            ),
            "nginx does not load /srv/other.conf: its configuration (`nginx -T`) includes only \
             /etc/nginx/nginx.conf, /etc/nginx/conf.d/app.conf, /etc/nginx/conf.d/no-newline.conf"
        );
        assert!(loads_file(
            &files,
            Path::new("/etc/nginx/conf.d/app.conf"),
            ""
        ));
        // Seen under another path (a container's mount), recognised by its contents.
        assert!(loads_file(
            &files,
            Path::new("/srv/edge/no-newline.conf"),
            "keepalive_timeout 5;\n"
        ));
        assert!(!loads_file(&files, Path::new("/srv/other.conf"), "x"));
        // A copy is not the file: equal contents count only where nginx's path is not ours.
        let dir = tempfile::tempdir().unwrap();
        let (included, copy) = (
            dir.path().join("included.conf"),
            dir.path().join("copy.conf"),
        );
        std::fs::write(&included, "upstream app { server a:1; }\n").unwrap();
        std::fs::write(&copy, "upstream app { server a:1; }\n").unwrap();
        let dump = format!(
            "# configuration file {}:\nupstream app {{ server a:1; }}\n\n",
            included.display()
        );
        let files = parse_dump(&dump);
        assert!(loads_file(
            &files,
            &included,
            "upstream app { server a:1; }\n"
        ));
        assert!(!loads_file(&files, &copy, "upstream app { server a:1; }\n"));
    }
}
