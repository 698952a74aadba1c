#!/usr/bin/env bash
# Control-plane benchmark: lease grants/s and usage records/s on SQLite and PostgreSQL
# (SPEC §8: ≥ 2,000 grants/s and ≥ 20,000 records/s on a 2-core machine).
#
# Starts target/release/alfred serve on a temporary SQLite file and on a fresh
# PostgreSQL database, creates USERS users, then drives it with wrk:
#   grants: POST /internal/v1/leases for many distinct users from 8 proxy ids (a new
#           lease the first time, an extension afterwards), CONNECTIONS at once;
#   usage:  POST /internal/v1/usage batches of BATCH records spread over every user
#           (each record on the user's lease, all request ids new).
# Prints a table and writes bench/results/control-plane.json.
#
# Env: USERS (1000), DURATION (10 s per run), CONNECTIONS (64), BATCH (2000, the filter's
# largest report), BACKENDS
# ("sqlite postgres"), ALFRED_BENCH_POSTGRES_URL (server URL of a role with CREATEDB,
# default postgres://alfred:alfred@127.0.0.1:5432/postgres), NO_BUILD=1 to skip cargo.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || { echo "installing wrk"; apt-get install -y wrk >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y wrk >/dev/null; }; }
if [ "${NO_BUILD:-0}" != 1 ]; then
    cargo build --release -p alfred-control-plane
fi
exec python3 bench/control-plane/run.py "$@"
