#!/usr/bin/env bash
# Install the command-line tools that `make bench` and `make test` drive, from Debian's
# packages, when they are missing. Needs root (or sudo) and the Debian mirror; does nothing
# when every tool asked for is already there.
#
#   scripts/install_tools.sh            wrk (the HTTP load generator of make bench) and HAProxy
#                                       (the load balancer of tests/test_scaleout.py, configured
#                                       by deploy/haproxy/haproxy.cfg)
#   scripts/install_tools.sh chromium   the browser the UI tests drive (tests/test_ui_browser.py)
#
# Chromium comes with a font (fonts-dejavu-core), so that the UI's screenshots show text
# rather than empty boxes on a machine that has no font at all. Playwright drives this
# browser; it never downloads one of its own.
set -euo pipefail

tools=("$@")
if [ "${#tools[@]}" -eq 0 ]; then
    tools=(wrk haproxy)
fi

missing=()
for tool in "${tools[@]}"; do
    case "$tool" in
        wrk) command -v wrk >/dev/null 2>&1 || missing+=(wrk) ;;
        # Debian installs it in /usr/sbin, which a non-root PATH may lack.
        haproxy) command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || missing+=(haproxy) ;;
        chromium) [ -x /usr/bin/chromium ] || missing+=(chromium fonts-dejavu-core) ;;
        *) echo "install_tools: unknown tool $tool (wrk, haproxy, chromium)" >&2; exit 2 ;;
    esac
done
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
# The packages' own services are not used: the tests start HAProxy with the project's config.
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get "${lock[@]}" install -y -qq \
    --no-install-recommends "${missing[@]}"
