#!/usr/bin/env bash
# Installs what the real end-to-end setup needs (nginx, Prometheus, Python 3 and pip, PostgreSQL,
# Node.js and npm) from Debian's packages, only when missing, and stops the system services the
# packages start: tests and the demo run their own instances on free loopback ports. Then the
# flag backends' pieces: the OpenFeature flagd provider (PyPI) and unleash-server 7.5.1 with
# its Node client (npm, into tests/support/unleash).
set -euo pipefail

sudo_if_needed() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

missing_debs=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing_debs+=(nginx-light)
command -v prometheus >/dev/null 2>&1 || missing_debs+=(prometheus)
command -v python3 >/dev/null 2>&1 || missing_debs+=(python3)
python3 -m pip --version >/dev/null 2>&1 || missing_debs+=(python3-pip)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 || missing_debs+=(postgresql)
command -v node >/dev/null 2>&1 || missing_debs+=(nodejs)
command -v npm >/dev/null 2>&1 || missing_debs+=(npm)
if [ ${#missing_debs[@]} -gt 0 ]; then
    echo "installing ${missing_debs[*]}" >&2
    sudo_if_needed apt-get update -q
    sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing_debs[@]}"
fi
for service in nginx prometheus postgresql; do
    sudo_if_needed systemctl disable --now "$service" >/dev/null 2>&1 || true
done

# unleash-server 7.5.1 is the newest that runs on Node 20 (7.6 and 8.x need Node 22).
node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 20 ]; then
    echo "unleash-server 7.5.1 needs Node.js 20 or newer; this machine has $(node --version)" >&2
    exit 1
fi
cd "$(dirname "$0")/.."
pip_install() {
    echo "installing $*" >&2
    python3 -m pip install -q "$@" 2>/dev/null || python3 -m pip install -q --break-system-packages "$@"
}
# The flagd tests evaluate files with the OpenFeature SDK and the flagd provider in file mode
# (pinned: providers bucket users differently from one major version to the next).
python3 -c 'import importlib.metadata as m, sys; sys.exit(m.version("openfeature-provider-flagd") != "0.6.1")' >/dev/null 2>&1 \
    || pip_install 'openfeature-provider-flagd==0.6.1'
installed() {
    node -p "require('./tests/support/unleash/node_modules/$1/package.json').version" 2>/dev/null
}
if [ "$(installed unleash-server)" != "7.5.1" ] || [ "$(installed unleash-client)" != "6.12.1" ]; then
    echo "installing unleash-server 7.5.1 and unleash-client 6.12.1 (npm)" >&2
    npm install --prefix tests/support/unleash --no-audit --no-fund --loglevel=error
fi
