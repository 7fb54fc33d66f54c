#!/usr/bin/env bash
# A feature flag rolled out against live traffic, on this machine, in about a minute once built:
# a small checkout service reads flag `new-checkout` through the OpenFeature flagd provider in
# file mode, a traffic thread calls it for random users, and `rollout run` moves the flag in a
# flagd flags file: staff first (0% + segment), then 10%, 50%, 100%, gated by the service's own
# error rate of the new checkout.
#   ./scripts/demo.sh --flag          a healthy rollout, promoted
#   ./scripts/demo.sh --flag --bad    the new checkout fails one request in five: rolled back
# Ctrl-C rolls back. ROLLOUT_DEMO_QUICK=1 bakes each stage for 3 s instead of 10 s.
set -euo pipefail
cd "$(dirname "$0")/.."
bad=""
[ "${1:-}" = "--bad" ] && bad="--bad"
cargo build -q --bin rollout
dir=$(mktemp -d)
service=""
cleanup() {
    [ -n "$service" ] && kill "$service" 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cp plans/flagd-flags.json "$dir/flags.json"
python3 examples/flag_demo/service.py "$dir/flags.json" "$port" $bad &
service=$!
for _ in $(seq 100); do
    curl -fs "http://127.0.0.1:$port/stats" >/dev/null 2>&1 && break
    sleep 0.1
done
bake=10s
[ -n "${ROLLOUT_DEMO_QUICK:-}" ] && bake=3s
cat > "$dir/plan.toml" <<PLAN
name = "flag-demo"
[defaults]
bake = "$bake"
interval = "1s"
max_hold = "30s"
[backend]
type = "flagd"
flags_file = "$dir/flags.json"
flag = "new-checkout"
[backend.segments.staff]
attribute = "email"
ends_with = "@example.com"
[sources.service]
type = "http-json"
url = "http://127.0.0.1:$port/stats"
[[metrics]]
name = "new-checkout-errors"
source = "service"
path = "/new_error_rate"
advance = "< 2%"
rollback = "> 5%"
min_samples = 2
[[stages]]
weight = 0
segments = ["staff"]
[[stages]]
weight = 10
[[stages]]
weight = 50
[[stages]]
weight = 100
PLAN
set +e
ROLLOUT_STATE_DIR="$dir/state" ./target/debug/rollout run "$dir/plan.toml"
code=$?
set -e
# The provider polls the file twice a second; its next five seconds of traffic show the result.
sleep 6
share=$(curl -fs "http://127.0.0.1:$port/stats" | python3 -c 'import json,sys; s=json.load(sys.stdin)["new_share"]; print("no traffic" if s is None else f"{s*100:.0f}% of the last 5 s of requests got the new checkout")')
case $code in
    0) echo "promoted: new-checkout is on for everyone ($share)" ;;
    3) echo "rolled back: new-checkout is off for everyone ($share)" ;;
    *) echo "rollout ended with exit $code ($share)" ;;
esac
exit $code
