#!/usr/bin/env bash
# Installs what the real end-to-end setup needs (nginx, Prometheus, Python 3 and pip) from Debian's
# packages, only when missing, and stops the system services the packages start: tests and the
# demo run their own instances on free loopback ports.
set -euo pipefail

sudo_if_needed() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

missing_debs=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing_debs+=(nginx-light)
command -v prometheus >/dev/null 2>&1 || missing_debs+=(prometheus)
command -v python3 >/dev/null 2>&1 || missing_debs+=(python3)
python3 -m pip --version >/dev/null 2>&1 || missing_debs+=(python3-pip)
if [ ${#missing_debs[@]} -gt 0 ]; then
    echo "installing ${missing_debs[*]}" >&2
    sudo_if_needed apt-get update -q
    sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing_debs[@]}"
fi
for service in nginx prometheus; do
    sudo_if_needed systemctl disable --now "$service" >/dev/null 2>&1 || true
done
