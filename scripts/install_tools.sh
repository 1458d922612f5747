#!/usr/bin/env bash
# Install the command-line tools that `make bench` and `make test` drive, from Debian's
# packages, when they are missing: wrk (the HTTP load generator of make bench) and HAProxy
# (the load balancer of tests/test_scaleout.py, configured by deploy/haproxy/haproxy.cfg).
# Needs root (or sudo) and the Debian mirror; does nothing when every tool is already there.
set -euo pipefail

missing=()
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
# Debian installs it in /usr/sbin, which a non-root PATH may lack.
command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || missing+=(haproxy)
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
# Several people (and CI) may install at once on one machine: wait for dpkg's lock.
lock=(-o DPkg::Lock::Timeout=300)
"${sudo[@]}" apt-get "${lock[@]}" update -qq
# The package's own service is not used: the tests start HAProxy with the project's config.
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get "${lock[@]}" install -y -qq \
    --no-install-recommends "${missing[@]}"
