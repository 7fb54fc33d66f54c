#!/usr/bin/env bash
# A real canary on this machine, in about a minute once built: two local services behind a real
# nginx, a real Prometheus scraping them, live traffic, and `rollout run` moving it stage by stage.
#   ./scripts/demo.sh          a healthy canary, promoted to 100%
#   ./scripts/demo.sh --bad    the canary starts failing mid-rollout and is rolled back
#   ./scripts/demo.sh --flag   a feature flag (flagd file) rolled out against live traffic
#                              instead; add --bad too to watch it rolled back (scripts/flag-demo.sh)
# Ctrl-C rolls back (rollout receives it too); the demo then stops nginx, Prometheus and the
# services. ROLLOUT_DEMO_QUICK=1 bakes each stage for seconds instead of 15 s (the tests use it).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-services.sh
if [ "${1:-}" = "--flag" ]; then
    shift
    exec ./scripts/flag-demo.sh "$@"
fi
export PATH="$PATH:/usr/sbin"
cargo build -q --bin rollout --example demo
exec ./target/debug/examples/demo "$@"
