#!/usr/bin/env bash
# Install the command-line tools that `make bench` drives, from Debian's packages, when they
# are missing: wrk (the HTTP load generator). Needs root (or sudo) and the Debian mirror;
# does nothing when every tool is already on PATH.
set -euo pipefail

missing=()
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
if [ "${#missing[@]}" -eq 0 ]; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install_tools: ${missing[*]} missing and apt-get is not available: install them yourself" >&2
    exit 1
fi
sudo=()
if [ "$(id -u)" -ne 0 ]; then
    sudo=(sudo)
fi
echo "install_tools: installing ${missing[*]} from the Debian packages"
"${sudo[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
