#!/usr/bin/env bash
# Time-to-first-byte benchmark: a streamed completion through bare Envoy vs Envoy with
# Alfred (warm lease), same local provider. Prints p50/p99; writes bench/results/ttfb.json.
#   BENCH_TTFB_REQUESTS (2000), BENCH_TTFB_WARMUP (200); ALFRED_NO_BUILD=1 skips the builds.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
if [[ "${ALFRED_NO_BUILD:-}" != 1 ]]; then
    cargo build --release -p alfred-control-plane -p alfred-local-provider
    cargo build --release --target wasm32-wasip1 -p alfred-filter
fi
exec python3 bench/ttfb.py "$@"
