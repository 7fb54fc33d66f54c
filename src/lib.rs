//! `rollout`: drives a canary or blue-green release through a traffic backend, stage by stage,
//! deciding from metrics whether to advance or roll back.
//!
//! Modules, from the bottom up; each uses only those before it (a test holds them to it):
//!
//! - `exit`: the exit codes and what they mean. `plan`: the TOML plan, parsed and validated
//!   into typed structs. `approval`: what an approval gate waits on.
//! - `exec`: every child process and file write (argv only, time limits, capped output, atomic
//!   replace, process groups that die with rollout, secret redaction), reported to an observer.
//! - `metrics`: the metric sources behind one trait. `backend`: the traffic backends behind one
//!   trait.
//! - `event`: the vocabulary of what happens (events, measurements, outcomes, reporters, the
//!   ledger that records each step before it is taken).
//! - `engine`: the stage state machine and the verdict rules; it emits events.
//! - `report`: renders events for people and machines. `notify`: tells people (Slack,
//!   webhooks) in the background. `state`: the journal, the lock and approvals, in a
//!   rollout's state folder.
//! - The `rollout` binary (`src/cli/`) wires them together.

pub mod approval;
pub mod backend;
pub mod engine;
pub mod event;
pub mod exec;
pub mod exit;
pub mod metrics;
pub mod notify;
pub mod plan;
pub mod report;
pub mod state;
