//! One integration-test binary: every test runs the built `rollout` and asserts what a user
//! would see.
//!
//! `cargo test` runs the tests that need nothing but the binary (parser, diagnostics, dry runs,
//! plan tables, faults of the tool's own plumbing, ...). The end-to-end tiers need real
//! services (nginx, Prometheus, the Kubernetes API emulator, moto, the OpenFeature flagd
//! provider, unleash-server on PostgreSQL) and run with
//! `--features e2e` (`./scripts/test.sh` installs the services and runs everything); a missing
//! service fails them loudly.

mod architecture;
mod ci;
mod completions;
mod dry_run;
mod faults;
mod flag_plans;
mod harness;
mod invalid_plans;
mod look_before_leaping;
mod notify;
mod parser_fuzz;
mod plan_documents;
mod plan_table;
mod plans_dir;
mod running;
mod schema;
mod window;

#[cfg(feature = "e2e")]
mod demo;
#[cfg(feature = "e2e")]
mod e2e_backtest;
#[cfg(feature = "e2e")]
mod e2e_ecs;
#[cfg(feature = "e2e")]
mod e2e_flagd;
#[cfg(feature = "e2e")]
mod e2e_gateway_shadow;
#[cfg(feature = "e2e")]
mod e2e_judge_live;
#[cfg(feature = "e2e")]
mod e2e_kubectl;
#[cfg(feature = "e2e")]
mod e2e_nginx;
#[cfg(feature = "e2e")]
mod e2e_nginx_mirror;
#[cfg(feature = "e2e")]
mod e2e_nginx_truth;
#[cfg(feature = "e2e")]
mod e2e_shared;
#[cfg(feature = "e2e")]
mod e2e_sources;
#[cfg(feature = "e2e")]
mod e2e_state;
#[cfg(feature = "e2e")]
mod e2e_unleash;
#[cfg(feature = "e2e")]
mod http_stub;
#[cfg(feature = "e2e")]
mod lab;
#[cfg(feature = "e2e")]
mod lab_smoke;
#[cfg(feature = "e2e")]
mod scipy_cross_check;
#[cfg(feature = "e2e")]
mod unleash_lab;
