#!/usr/bin/env bash
# A local PostgreSQL for the image repository, in a folder of its own, reachable only through
# a Unix socket in that folder (no TCP port, so several can run side by side):
#
#   scripts/postgres.sh start DIR   # prints REPO_DB_URL=postgresql+psycopg://...
#   scripts/postgres.sh stop DIR
#   scripts/postgres.sh url DIR     # prints the URL of an instance already started
#
# Debian's `postgresql` package is installed with apt-get when no server is found (as root).
# initdb and pg_ctl refuse to run as root, so as root they run as the `postgres` user, which
# then owns DIR. The database is `repository`, the role `postgres`, trusted on the socket only.
# PG_FAST=1 turns fsync off (tests: nothing there needs to survive a power cut).
set -euo pipefail

usage() {
    echo "usage: $0 start|stop|url DIR" >&2
    exit 2
}
[ $# -eq 2 ] || usage
action=$1
dir=$(realpath -m "$2")
data="$dir/pgdata"
socket="$dir/socket"
database=repository

pg_bin() {
    local found
    found=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
    if [ -z "$found" ] && [ "$action" = start ]; then
        if [ "$(id -u)" -ne 0 ]; then
            echo "$0: PostgreSQL is not installed; as root: apt-get install postgresql" >&2
            exit 1
        fi
        echo "$0: installing Debian's postgresql package" >&2
        apt-get update -qq >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            postgresql >&2
        found=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
    fi
    [ -n "$found" ] || { echo "$0: PostgreSQL is not installed" >&2; exit 1; }
    echo "$found"
}

as_owner() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

url() {
    echo "REPO_DB_URL=postgresql+psycopg://postgres@/${database}?host=${socket}"
}

case "$action" in
start)
    bin=$(pg_bin)
    mkdir -p "$dir"
    if [ "$(id -u)" -eq 0 ]; then
        chown postgres: "$dir"
    fi
    chmod 0700 "$dir"
    if [ ! -f "$data/PG_VERSION" ]; then
        as_owner "$bin/initdb" -D "$data" -U postgres --auth=trust --encoding=UTF8 \
            --no-locale >"$dir/initdb.log" 2>&1 ||
            { cat "$dir/initdb.log" >&2; exit 1; }
    fi
    as_owner mkdir -p "$socket"
    options="-c listen_addresses= -c unix_socket_directories=$socket -c max_connections=100"
    if [ "${PG_FAST:-0}" = 1 ]; then
        options="$options -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    fi
    if ! as_owner "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
        as_owner "$bin/pg_ctl" -D "$data" -l "$dir/postgres.log" -o "$options" -w -t 60 \
            start >/dev/null || { tail -n 20 "$dir/postgres.log" >&2; exit 1; }
    fi
    exists=$(as_owner "$bin/psql" -h "$socket" -U postgres -d postgres -tAc \
        "SELECT 1 FROM pg_database WHERE datname = '${database}'")
    if [ "$exists" != 1 ]; then
        as_owner "$bin/createdb" -h "$socket" -U postgres "$database"
    fi
    url
    ;;
stop)
    bin=$(pg_bin)
    if [ -f "$data/PG_VERSION" ] && as_owner "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
        as_owner "$bin/pg_ctl" -D "$data" -m fast -w -t 60 stop >/dev/null
    fi
    ;;
url)
    url
    ;;
*)
    usage
    ;;
esac
