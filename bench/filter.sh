#!/usr/bin/env bash
# Filter benchmark: bare Envoy vs a do-nothing wasm filter vs a filter making only
# Alfred's host calls (through the SDK, and through the bare ABI) vs Alfred, same upstream.
# Prints a table; writes bench/results/filter.json and bench/results/filter.md.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
command -v wrk >/dev/null || { echo "installing wrk"; apt-get install -y wrk >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y wrk >/dev/null; }; }
cargo build --release -p alfred-control-plane -p alfred-bench-serial-client
cargo build --release --target wasm32-wasip1 -p alfred-filter -p alfred-bench-noop-filter -p alfred-bench-host-calls-filter -p alfred-bench-raw-floor-filter
exec python3 bench/filter_bench.py "$@"
