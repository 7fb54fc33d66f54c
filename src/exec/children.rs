//! The processes a rollout starts must not outlive it and then act: a `set_weight` that finishes
//! after `kill -9` of its rollout, and after someone else's rollback, would silently undo it.
//!
//! Two defences. Each child asks the kernel to kill it when its parent dies
//! (`PR_SET_PDEATHSIG`); that reaches the child only, not what it started. So each child also
//! runs in its own process group, which the journal records (with the leader's start time, so a
//! reused number is never mistaken for it), and a later process that takes the rollout over kills
//! every group the dead one left before it acts.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A process group a rollout started for one of its commands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChildGroup {
    /// The process group id: the pid of the command, which leads its group.
    pub pgid: u32,
    /// The leader's start time (clock ticks after boot, `/proc/PID/stat`): tells the group
    /// apart from a later one that got the same number.
    pub started: u64,
    /// What the command was for ("set_weight", "nginx reload", "hook").
    pub purpose: String,
}

impl ChildGroup {
    /// The group of a child just started; `None` when it is already gone.
    pub fn of(pid: u32, purpose: &str) -> Option<ChildGroup> {
        Some(ChildGroup {
            pgid: pid,
            started: stat(pid)?.started,
            purpose: purpose.to_string(),
        })
    }
}

/// Makes the command's process receive SIGKILL when the thread that started it dies. tokio
/// starts child processes from its worker threads, which live as long as the runtime, so in
/// effect: when rollout dies.
pub fn die_with_parent(command: &mut tokio::process::Command) {
    // SAFETY: the closure runs in the child between fork and exec and only makes
    // async-signal-safe system calls (prctl, getppid, _exit).
    unsafe {
        let parent = libc::getpid();
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died before the request was made.
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
}

/// What `/proc/PID/stat` says of a process that matters here.
struct Stat {
    pgid: u32,
    started: u64,
    zombie: bool,
}

fn stat(pid: u32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name in parentheses may hold spaces and parentheses itself.
    let fields: Vec<&str> = text[text.rfind(')')? + 1..].split_whitespace().collect();
    Some(Stat {
        zombie: *fields.first()? == "Z",
        pgid: fields.get(2)?.parse().ok()?,
        started: fields.get(19)?.parse().ok()?,
    })
}

/// The live processes of a process group (zombies are dead already, whoever reaps them).
fn members(pgid: u32) -> Vec<u32> {
    let Ok(proc) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    proc.filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| stat(pid).is_some_and(|s| s.pgid == pgid && !s.zombie))
        .collect()
}

/// Whether any process of the group still runs. A leader that is alive but started at another
/// time leads a different group that reused the number: not ours.
fn still_running(group: &ChildGroup) -> bool {
    if let Some(leader) = stat(group.pgid)
        && leader.started != group.started
    {
        return false;
    }
    // While any member of the old group lives, the kernel does not hand its number out again.
    !members(group.pgid).is_empty()
}

/// Kills what is left of a group a dead rollout started and waits until none of it runs.
/// `Ok(true)` when something was left and is now gone, `Ok(false)` when nothing was left.
pub async fn stop(group: &ChildGroup, within: Duration) -> Result<bool, String> {
    if !still_running(group) {
        return Ok(false);
    }
    // SAFETY: kill(2) with a negative pid signals a process group; it touches no memory.
    unsafe {
        libc::kill(-(group.pgid as libc::pid_t), libc::SIGKILL);
    }
    let deadline = tokio::time::Instant::now() + within;
    while still_running(group) {
        if tokio::time::Instant::now() >= deadline {
            return Err(format!(
                "process group {} ({}) is still running {} after SIGKILL",
                group.pgid,
                group.purpose,
                humantime::format_duration(within)
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;

    /// A group as a test starts it: `sh` leading its own group, with a grandchild.
    fn spawn_group() -> (std::process::Child, ChildGroup) {
        let child = std::process::Command::new("sh")
            .args(["-c", "sleep 30 & wait"])
            .process_group(0)
            .spawn()
            .unwrap();
        let group = ChildGroup::of(child.id(), "test").unwrap();
        (child, group)
    }

    #[tokio::test]
    async fn a_group_left_behind_is_killed_grandchildren_included() {
        let (mut child, group) = spawn_group();
        // The grandchild is in the group before the test goes on.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while members(group.pgid).len() < 2 {
            assert!(std::time::Instant::now() < deadline, "no grandchild");
            std::thread::yield_now();
        }
        assert_eq!(stop(&group, Duration::from_secs(5)).await, Ok(true));
        assert!(members(group.pgid).is_empty());
        child.wait().unwrap();
        assert_eq!(stop(&group, Duration::from_secs(5)).await, Ok(false));
    }

    #[tokio::test]
    async fn a_group_number_reused_by_another_process_is_left_alone() {
        let (mut child, mut group) = spawn_group();
        group.started += 1;
        assert_eq!(stop(&group, Duration::from_secs(5)).await, Ok(false));
        assert!(!members(group.pgid).is_empty(), "not ours: still running");
        child.kill().unwrap();
        child.wait().unwrap();
        // The grandchild keeps the group alive; clean it up.
        group.started -= 1;
        stop(&group, Duration::from_secs(5)).await.unwrap();
    }
}
