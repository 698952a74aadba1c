#!/usr/bin/env bash
# Schemathesis against the real control plane: the release `alfred` binary on a fresh
# SQLite database and a free port, seeded by tests/api/seed.py. Every operation of its
# /openapi.json is called with generated valid and invalid input; every answer must be
# documented (status code, content type, headers, body schema) and none may be a 5xx.
# Any finding fails the run.
#
#   cargo build --release -p alfred-control-plane && tests/api/schemathesis.sh
#
# Two passes, each with its own admin: the key-destroying operations (rotate-key and
# DELETE …/keys, which revoke the caller's own key when given its id) run last, alone,
# so they cannot lock the first pass out. /internal/v1/* get the filter token (per
# security scheme, tests/api/schemathesis.toml).
#
# Env: ALFRED_BIN (default target/release/alfred); SCHEMATHESIS_EXAMPLES (cases per
# operation and phase, default 100); SCHEMATHESIS_SEED (replay a run: the seed is printed);
# KEEP=1 keeps the scratch directory (database, server log) and prints where it is.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/../../scripts/lib.sh"
cd "$ALFRED_ROOT"

bin="$(realpath "${ALFRED_BIN:-$ALFRED_ROOT/target/release/alfred}")"
schemathesis="$ALFRED_ROOT/.venv/bin/schemathesis"
python="$(venv_python)"
[[ -x "$bin" ]] || die "no $bin: run cargo build --release -p alfred-control-plane"
[[ -x "$schemathesis" ]] || die "no schemathesis in .venv: run scripts/bootstrap.sh"

workdir="$(realpath "$(mktemp -d "${TMPDIR:-/tmp}/alfred-schemathesis.XXXXXX")")"
server_pid=""
cleanup() {
    if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
        kill -TERM "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    if [[ -n "${KEEP:-}" ]]; then
        log "kept $workdir"
    else
        rm -rf "$workdir"
    fi
}
trap cleanup EXIT

port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
url="http://127.0.0.1:$port"
# Everything runs in the scratch directory: no `.env` of the tree is read, and nothing
# (database, reports, caches) lands in it. workdir is absolute, so sqlite:/// + /tmp/…
# is the absolute-path form.
cd "$workdir"
export DATABASE_URL="sqlite:///$workdir/alfred.db"
export ALFRED_BIND="127.0.0.1:$port"
ALFRED_FILTER_TOKEN="$(random_hex 24)"
export ALFRED_FILTER_TOKEN
export TRANSFER_APPROVAL_THRESHOLD=1000
# A stand-in dashboard build, so /static/* answers files, client routes and 404s.
export DASHBOARD_DIR="$workdir/dashboard"
mkdir -p "$DASHBOARD_DIR/assets"
printf '<!doctype html><title>Alfred</title>\n' >"$DASHBOARD_DIR/index.html"
printf 'console.log("alfred");\n' >"$DASHBOARD_DIR/assets/app.js"
export RUST_LOG="${RUST_LOG:-warn}"

admin_key() { # admin_key EMAIL: a new admin's key
    "$bin" create-admin --email "$1" --name "Schemathesis" --json |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["api_key"])'
}
first_admin="$(admin_key schemathesis@example.com)"

"$bin" serve >"$workdir/server.log" 2>&1 &
server_pid=$!
wait_http "$url/readyz" 30 "$server_pid" || {
    tail -n 40 "$workdir/server.log" >&2
    die "control plane not ready at $url"
}
"$python" "$ALFRED_ROOT/tests/api/seed.py" "$url" "$first_admin" "$ALFRED_FILTER_TOKEN"

checks=not_a_server_error,status_code_conformance,content_type_conformance
checks+=,response_schema_conformance,response_headers_conformance
run_schemathesis() { # run_schemathesis ADMIN_KEY FILTER-OPTIONS...
    local key="$1"
    shift
    local args=(
        --config-file "$ALFRED_ROOT/tests/api/schemathesis.toml"
        run "$url/openapi.json"
        --checks "$checks"
        --max-examples "${SCHEMATHESIS_EXAMPLES:-100}"
        --workers 1
        --generation-database none
        --no-color
        "$@"
    )
    [[ -n "${SCHEMATHESIS_SEED:-}" ]] && args+=(--seed "$SCHEMATHESIS_SEED")
    log "schemathesis ${args[*]}"
    ALFRED_ADMIN_KEY="$key" "$schemathesis" "${args[@]}"
}

status=0
destructive='/(rotate-key|keys)$'
run_schemathesis "$first_admin" --exclude-path-regex "$destructive" || status=1
# A new admin: the first pass may have deleted, suspended or demoted any other user.
run_schemathesis "$(admin_key schemathesis-keys@example.com)" --include-path-regex "$destructive" || status=1

# Whatever the fuzzing did, the ledger must still balance.
check="$(python3 - "$url/v1/admin/ledger/check" "$(admin_key schemathesis-ledger@example.com)" <<'PY' 2>&1
import sys, urllib.request
request = urllib.request.Request(sys.argv[1], headers={"X-API-Key": sys.argv[2]})
with urllib.request.urlopen(request, timeout=10) as response:
    print(response.read().decode())
PY
)" || true
if [[ "$check" != *'"clean":true'* ]]; then
    warn "ledger check after the run is not clean: $check"
    status=1
fi
if ! kill -0 "$server_pid" 2>/dev/null; then
    warn "the control plane died during the run"
    status=1
fi
if ((status != 0)); then
    warn "control plane log (tail):"
    tail -n 40 "$workdir/server.log" >&2
fi
exit "$status"
