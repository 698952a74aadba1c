#!/usr/bin/env bash
# Analytics benchmark: loads RECORDS (1,000,000) usage records over DAYS (90) days,
# USERS (1000) users in TEAMS (20) teams (a tenth of them in two), 8 models and 20
# projects into a fresh SQLite file and a fresh PostgreSQL database (one bulk
# INSERT … SELECT each), builds the usage_daily rollup with the migration's own
# backfill statement, starts target/release/alfred serve, and times every analytics
# endpoint, every grouping (the median of RUNS requests after a warm-up). Prints a
# table, writes bench/results/analytics.json (with the rollup's row count).
#
# Env: RECORDS, USERS, DAYS, TEAMS, MIX (1: each user one model; k: k models per user,
# so up to k rollup rows per user and day), RUNS (5), BACKENDS ("sqlite postgres"),
# ALFRED_BENCH_POSTGRES_URL (a role with CREATEDB, default
# postgres://alfred:alfred@127.0.0.1:5432/postgres), NO_BUILD=1 to skip cargo,
# ALFRED_BIN (another build), BENCH_RESULTS (output path).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${NO_BUILD:-0}" != 1 ]; then
    cargo build --release -p alfred-control-plane
fi
exec python3 bench/analytics.py "$@"
