# shellcheck shell=bash
# Helpers shared by Alfred's scripts: logging, locating Envoy, waiting for readiness.
# Sourced, never executed.

ALFRED_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export ALFRED_ROOT

if [[ -t 2 ]]; then
    _bold=$'\033[1m' _yellow=$'\033[33m' _red=$'\033[31m' _reset=$'\033[0m'
else
    _bold='' _yellow='' _red='' _reset=''
fi

log()  { printf '%s==> %s%s\n' "$_bold" "$*" "$_reset" >&2; }
warn() { printf '%s!!  %s%s\n' "$_yellow" "$*" "$_reset" >&2; }
die()  { printf '%sxx  %s%s\n' "$_red" "$*" "$_reset" >&2; exit 1; }

# The Envoy binary: $ENVOY_BIN, else the project's virtualenv, else `envoy` on PATH.
envoy_bin() {
    if [[ -n "${ENVOY_BIN:-}" ]]; then
        printf '%s\n' "$ENVOY_BIN"
    elif [[ -x "$ALFRED_ROOT/.venv/bin/envoy" ]]; then
        printf '%s\n' "$ALFRED_ROOT/.venv/bin/envoy"
    elif command -v envoy >/dev/null 2>&1; then
        command -v envoy
    else
        return 1
    fi
}

# The Python of the project's virtualenv (tests, renderer), else python3.
venv_python() {
    if [[ -x "$ALFRED_ROOT/.venv/bin/python" ]]; then
        printf '%s\n' "$ALFRED_ROOT/.venv/bin/python"
    else
        command -v python3
    fi
}

# wait_http URL SECONDS [PID]: poll until URL answers 2xx; fail early if PID dies.
wait_http() {
    local url="$1" seconds="$2" pid="${3:-}" deadline
    deadline=$((SECONDS + seconds))
    while ((SECONDS < deadline)); do
        if [[ -n "$pid" ]] && ! kill -0 "$pid" 2>/dev/null; then
            return 1
        fi
        if python3 - "$url" <<'PY' 2>/dev/null; then
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=2) as r:
    sys.exit(0 if 200 <= r.status < 300 else 1)
PY
            return 0
        fi
        sleep 0.2
    done
    return 1
}

# random_hex N: N random bytes as hex (for tokens and local credentials).
random_hex() {
    python3 -c "import secrets, sys; print(secrets.token_hex(int(sys.argv[1])))" "$1"
}

# The Chromium binary for the browser tests: $CHROMIUM_BIN, else chromium on PATH.
chromium_bin() {
    if [[ -n "${CHROMIUM_BIN:-}" ]]; then
        printf '%s\n' "$CHROMIUM_BIN"
    else
        command -v chromium || command -v chromium-browser
    fi
}

# npm_ci_if_needed DIR: `npm ci` in DIR unless node_modules matches package-lock.json.
npm_ci_if_needed() {
    local dir="$1" stamp want
    stamp="$dir/node_modules/.alfred-lock.sha256"
    want="$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)"
    if [[ "$(cat "$stamp" 2>/dev/null || true)" == "$want" ]]; then
        return 0
    fi
    log "npm ci in ${dir#"$ALFRED_ROOT"/}"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error) || return 1
    printf '%s\n' "$want" > "$stamp"
}
