#!/usr/bin/env bash
# Sets up everything the tests need on a fresh Debian machine, then runs every test.
# Safe to run again: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

sudo_if_needed() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

missing_debs=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing_debs+=(nginx-light)
command -v prometheus >/dev/null 2>&1 || missing_debs+=(prometheus)
command -v python3 >/dev/null 2>&1 || missing_debs+=(python3)
if [ ${#missing_debs[@]} -gt 0 ]; then
    echo "installing ${missing_debs[*]}" >&2
    sudo_if_needed apt-get update -q
    sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing_debs[@]}"
fi
# The Debian packages start system services; the tests run their own instances on free
# loopback ports and need none of those.
for service in nginx prometheus; do
    sudo_if_needed systemctl disable --now "$service" >/dev/null 2>&1 || true
done
export PATH="$PATH:/usr/sbin"

cargo test --locked "$@"
