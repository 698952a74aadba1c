#!/usr/bin/env bash
# Analytics benchmark: loads RECORDS (1,000,000) usage records over DAYS (90) days,
# USERS (1000) users, 8 models and 20 projects into a fresh SQLite file and a fresh
# PostgreSQL database (one bulk INSERT … SELECT each), starts target/release/alfred
# serve, and times every analytics endpoint (the median of RUNS requests after a
# warm-up). Then drops the analytics index and times the organisation-wide queries
# again, to show what it buys. Prints a table, writes bench/results/analytics.json.
#
# Env: RECORDS, USERS, DAYS, RUNS (5), BACKENDS ("sqlite postgres"),
# ALFRED_BENCH_POSTGRES_URL (a role with CREATEDB, default
# postgres://alfred:alfred@127.0.0.1:5432/postgres), NO_BUILD=1 to skip cargo,
# BENCH_RESULTS (output path).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${NO_BUILD:-0}" != 1 ]; then
    cargo build --release -p alfred-control-plane
fi
exec python3 bench/analytics.py "$@"
