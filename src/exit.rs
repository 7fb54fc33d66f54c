//! The process exit codes, as the plan contract fixes them, with what each means. Defined once:
//! the command line's help, the README's table, docs and the `finished` event all say what is
//! here (a test holds the README and docs to it).

use serde::Serialize;

/// How a `rollout` command ended, as its exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Exit {
    /// `run`/`resume`: promoted; `rollback`: traffic is back on stable, confirmed; `validate`:
    /// every plan is valid; any other command: done.
    Success = 0,
    CouldNotProceed = 1,
    Invalid = 2,
    RolledBack = 3,
    Paused = 4,
    RollbackFailed = 5,
}

impl Exit {
    pub const ALL: [Exit; 6] = [
        Exit::Success,
        Exit::CouldNotProceed,
        Exit::Invalid,
        Exit::RolledBack,
        Exit::Paused,
        Exit::RollbackFailed,
    ];

    pub fn code(self) -> u8 {
        self as u8
    }

    /// What the code means, in one line.
    pub fn meaning(self) -> &'static str {
        match self {
            Exit::Success => {
                "success: promoted to 100% (`run`, `resume`), traffic confirmed back on stable (`rollback`), every plan valid (`validate`)"
            }
            Exit::CouldNotProceed => {
                "could not proceed: the tool could not operate its backend, journal or files, or another process holds the rollout; traffic was returned to stable where possible, and the output says where it was left otherwise"
            }
            Exit::Invalid => "usage error or invalid plan; nothing was touched",
            Exit::RolledBack => {
                "rolled back to stable: a failed gate or hook, a new version that never became ready, max_hold with on_timeout = \"rollback\", an interrupt with on_interrupt = \"rollback\", or a refused approval; the output says which"
            }
            Exit::Paused => {
                "paused: traffic deliberately left at the current weight; `rollout resume` or `rollout rollback` continues"
            }
            Exit::RollbackFailed => {
                "the rollback itself failed: traffic is in an unknown state and a person must act"
            }
        }
    }

    /// The exit codes in a few words each, for `--help`.
    pub fn help() -> String {
        let short = |exit: Exit| match exit {
            Exit::Success => "success",
            Exit::CouldNotProceed => "could not proceed",
            Exit::Invalid => "usage error or invalid plan",
            Exit::RolledBack => "rolled back",
            Exit::Paused => "paused",
            Exit::RollbackFailed => "rollback failed",
        };
        let codes: Vec<String> = Exit::ALL
            .iter()
            .map(|&e| format!("{} {}", e.code(), short(e)))
            .collect();
        format!("Exit codes: {}.", codes.join(", "))
    }

    /// The README's and docs' table of exit codes.
    pub fn markdown_table() -> String {
        let mut out = String::from("| code | meaning |\n|---|---|\n");
        for exit in Exit::ALL {
            out.push_str(&format!("| {} | {} |\n", exit.code(), exit.meaning()));
        }
        out
    }
}

impl Serialize for Exit {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(self.code())
    }
}

impl From<Exit> for std::process::ExitCode {
    fn from(exit: Exit) -> Self {
        std::process::ExitCode::from(exit.code())
    }
}
