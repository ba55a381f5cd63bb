#!/usr/bin/env bash
# Starts or stops a throwaway PostgreSQL cluster on loopback for the tests.
#
#   eval "$(scripts/test-postgres.sh start)"   # exports SERVAL_TEST_POSTGRES_URL
#   cargo test --workspace
#   scripts/test-postgres.sh stop
#
# The cluster lives in $SERVAL_TEST_POSTGRES_DIR (default
# /tmp/serval-test-postgres), listens on 127.0.0.1:$SERVAL_TEST_POSTGRES_PORT
# (default 55432) and trusts local connections: it is for tests only.
# Needs Debian's `postgresql` package (or any PostgreSQL 13+ binaries).
set -euo pipefail

dir="${SERVAL_TEST_POSTGRES_DIR:-/tmp/serval-test-postgres}"
port="${SERVAL_TEST_POSTGRES_PORT:-55432}"

bin_dir() {
    if command -v initdb >/dev/null 2>&1; then
        dirname "$(command -v initdb)"
        return
    fi
    local found
    found="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
    if [[ -z "$found" ]]; then
        echo "PostgreSQL is not installed: apt-get install postgresql" >&2
        exit 1
    fi
    echo "$found"
}

# PostgreSQL refuses to run as root; run its programs as `postgres` then.
as_owner() {
    if [[ "$(id -u)" == 0 ]]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

case "${1:-}" in
start)
    bin="$(bin_dir)"
    if [[ ! -f "$dir/PG_VERSION" ]]; then
        mkdir -p "$dir"
        [[ "$(id -u)" == 0 ]] && chown postgres: "$dir"
        as_owner "$bin/initdb" -D "$dir" -U postgres --auth=trust --no-sync -E UTF8 >"$dir.initdb.log" 2>&1 \
            || { cat "$dir.initdb.log" >&2; exit 1; }
    fi
    if ! as_owner "$bin/pg_ctl" -D "$dir" status >/dev/null 2>&1; then
        # fsync off and many connections: the tests start several servers
        # and throw the data away.
        as_owner "$bin/pg_ctl" -D "$dir" -l "$dir/server.log" -w start \
            -o "-h 127.0.0.1 -p $port -k $dir -c fsync=off -c max_connections=300" >/dev/null
    fi
    echo "export SERVAL_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:$port/postgres"
    ;;
halt)
    # Stops the server, keeping the cluster for a later `start`.
    as_owner "$(bin_dir)/pg_ctl" -D "$dir" -m fast -w stop >/dev/null
    ;;
stop)
    bin="$(bin_dir)"
    if [[ -f "$dir/PG_VERSION" ]]; then
        as_owner "$bin/pg_ctl" -D "$dir" -m fast -w stop >/dev/null 2>&1 || true
        rm -rf "$dir" "$dir.initdb.log"
    fi
    ;;
*)
    echo "usage: $0 start|halt|stop" >&2
    exit 2
    ;;
esac
