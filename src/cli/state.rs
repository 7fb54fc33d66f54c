//! Which state store a command uses: `--state`, `--state-dir`, then env `ROLLOUT_STATE`, then
//! `ROLLOUT_STATE_DIR`, then the plan's `[state] url`, then `.rollout`.

use std::path::PathBuf;
use std::sync::Arc;

use rollout::plan::Plan;
use rollout::state::{Location, StateStore, StoreError};

use super::Exit;
use super::args::StateArgs;

/// Where the state lives, by the order above.
pub fn location(args: &StateArgs, plan: Option<&Plan>) -> Result<Location, StoreError> {
    let env = |key: &str| std::env::var(key).ok().filter(|v| !v.is_empty());
    if let Some(url) = &args.state {
        return Location::parse(url);
    }
    if let Some(dir) = &args.state_dir {
        return Ok(Location::Local(dir.clone()));
    }
    if let Some(url) = env("ROLLOUT_STATE") {
        return Location::parse(&url);
    }
    if let Some(dir) = env("ROLLOUT_STATE_DIR") {
        return Ok(Location::Local(PathBuf::from(dir)));
    }
    if let Some(url) = plan.and_then(|p| p.state.url.as_deref()) {
        return Location::parse(url);
    }
    Ok(Location::Local(PathBuf::from(".rollout")))
}

/// Opens the store; a mistake in where it is says so and is a usage error (exit 2).
pub fn open(args: &StateArgs, plan: Option<&Plan>) -> Result<Arc<dyn StateStore>, Exit> {
    location(args, plan)
        .and_then(|location| rollout::state::store::open(&location))
        .map_err(|e| {
            eprintln!("error: {e}");
            Exit::Invalid
        })
}

/// A store error as a command's exit: a store that cannot be used is the tool failing (1),
/// after saying what is wrong.
pub fn failed(e: &StoreError) -> Exit {
    eprintln!("error: {e}");
    match e {
        StoreError::Setup(_) => Exit::Invalid,
        _ => Exit::CouldNotProceed,
    }
}
