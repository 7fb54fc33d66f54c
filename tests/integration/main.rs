//! One integration-test binary: every test runs the built `rollout` and asserts what a user
//! would see.

mod architecture;
mod completions;
mod demo;
mod dry_run;
mod e2e_ecs;
mod e2e_kubectl;
mod e2e_nginx;
mod e2e_nginx_truth;
mod e2e_sources;
mod e2e_state;
mod faults;
mod harness;
mod http_stub;
mod invalid_plans;
mod lab;
mod lab_smoke;
mod parser_fuzz;
mod plan_table;
mod plans_dir;
