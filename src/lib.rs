//! `rollout`: drives a canary or blue-green release through a traffic backend, stage by stage,
//! deciding from metrics whether to advance or roll back.
//!
//! - `plan`: the TOML plan, parsed and validated into typed structs.
//! - `engine`: the stage state machine, the verdict rules, rollback; it emits events.
//! - `backend`: the traffic backends behind one trait.
//! - `metrics`: the metric sources behind one trait.
//! - `report`: renders events for people (progress, plain lines, tables) and machines (JSON).

pub mod backend;
pub mod engine;
pub mod exit;
pub mod metrics;
pub mod plan;
pub mod report;
pub mod state;
