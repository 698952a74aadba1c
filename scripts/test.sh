#!/usr/bin/env bash
# `make test`: every test of the repository, natively and end to end.
#
#   1. set-up (scripts/bootstrap.sh) and PostgreSQL for the DB tests when available
#   2. cargo test --workspace            native unit tests + DB tests (SQLite, PostgreSQL)
#   3. release builds + the filter .wasm
#   4. scripts/validate-envoy.sh         every Envoy config through `envoy --mode validate`
#      tests/api/schemathesis.sh         the control plane against its /openapi.json
#   5. pytest tests/e2e                  real Envoy + filter + control plane + local provider
#   6. tests/browser (node --test)       the dashboard in headless Chromium against the real stack
#
# Every stage runs even when an earlier one failed (unless it depends on a failed build);
# the script exits non-zero if any stage failed.
set -uo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"
cd "$ALFRED_ROOT" || exit 1

"$ALFRED_ROOT/scripts/bootstrap.sh" --browser || die "set-up failed"

failed=()
stage() { # stage NAME COMMAND...
    local name="$1"
    shift
    log "[$name] $*"
    if "$@"; then
        log "[$name] passed"
    else
        warn "[$name] FAILED"
        failed+=("$name")
    fi
}

# --- PostgreSQL for the control plane's DB tests and the e2e PostgreSQL variant
as_postgres() {
    if [[ "$(id -un)" == postgres ]]; then
        "$@"
    elif [[ $EUID -eq 0 ]]; then
        runuser -u postgres -- "$@"
    else
        sudo -n -u postgres "$@"
    fi
}

setup_postgres() {
    command -v pg_ctlcluster >/dev/null 2>&1 || return 1
    local version port
    version="$(find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -printf "%f\n" 2>/dev/null | sort -V | tail -1)"
    [[ -n "$version" ]] || return 1
    if ! pg_lsclusters -h 2>/dev/null | awk '{print $1" "$2}' | grep -qx "$version main"; then
        log "postgres: creating cluster $version/main"
        pg_createcluster "$version" main >/dev/null || return 1
    fi
    if ! pg_lsclusters -h | awk -v v="$version" '$1==v && $2=="main" {print $4}' | grep -qx online; then
        log "postgres: starting cluster $version/main"
        pg_ctlcluster "$version" main start || return 1
    fi
    port="$(pg_lsclusters -h | awk -v v="$version" '$1==v && $2=="main" {print $3}')"
    for _ in $(seq 50); do
        pg_isready -q -h 127.0.0.1 -p "$port" && break
        sleep 0.2
    done
    as_postgres psql -q -p "$port" -v ON_ERROR_STOP=1 -d postgres <<'SQL' || return 1
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'alfred') THEN
    CREATE ROLE alfred LOGIN PASSWORD 'alfred' CREATEDB;
  ELSE
    ALTER ROLE alfred LOGIN PASSWORD 'alfred' CREATEDB;
  END IF;
END
$$;
SQL
    if ! as_postgres psql -p "$port" -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'alfred_test'" | grep -q 1; then
        as_postgres createdb -p "$port" -O alfred alfred_test || return 1
    fi
    export ALFRED_TEST_POSTGRES_URL="postgres://alfred:alfred@127.0.0.1:$port/alfred_test"
}

if [[ -n "${ALFRED_TEST_POSTGRES_URL:-}" ]]; then
    log "postgres: using ALFRED_TEST_POSTGRES_URL from the environment"
elif setup_postgres; then
    log "postgres: ALFRED_TEST_POSTGRES_URL=$ALFRED_TEST_POSTGRES_URL"
else
    warn "##################################################################"
    warn "PostgreSQL unavailable (no ALFRED_TEST_POSTGRES_URL, no usable pg_ctlcluster):"
    warn "the PostgreSQL variants of the DB and end-to-end tests are SKIPPED."
    warn "##################################################################"
fi

stage "cargo test" cargo test --workspace
stage "release build" cargo build --release -p alfred-control-plane -p alfred-local-provider
stage "filter build" cargo build --release --target wasm32-wasip1 -p alfred-filter
stage "dashboard build" "$ALFRED_ROOT/scripts/build-dashboard.sh"
stage "envoy validate" "$ALFRED_ROOT/scripts/validate-envoy.sh"

if [[ " ${failed[*]} " == *" release build "* ]]; then
    warn "[api schema] not run: the release build failed"
    failed+=("api schema")
else
    stage "api schema" "$ALFRED_ROOT/tests/api/schemathesis.sh"
fi

if [[ " ${failed[*]} " == *" release build "* || " ${failed[*]} " == *" filter build "* ]]; then
    warn "[e2e] not run: a build it needs failed"
    failed+=("e2e")
else
    stage "e2e" "$(venv_python)" -m pytest tests/e2e -v -rA
fi

browser_tests() {
    npm_ci_if_needed "$ALFRED_ROOT/tests/browser" || return 1
    (cd "$ALFRED_ROOT/tests/browser" && npm test)
}
if [[ " ${failed[*]} " == *" release build "* || " ${failed[*]} " == *" filter build "* ||
    " ${failed[*]} " == *" dashboard build "* ]]; then
    warn "[browser] not run: a build it needs failed"
    failed+=("browser")
else
    stage "browser" browser_tests
fi

if ((${#failed[@]} > 0)); then
    die "failed stages: ${failed[*]}"
fi
log "all stages passed"
