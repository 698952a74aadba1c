#!/usr/bin/env bash
# Checks every Envoy configuration of the repository with `envoy --mode validate`:
#   - envoy/render.py output for the main variants (https provider, in-mesh http
#     provider with a path prefix, no filter, every provider enabled), rendered with
#     dummy secrets;
#   - every committed config (envoy/*.yaml and deploy/**/envoy*.yaml).
# Validate mode instantiates the Wasm plugin, so it needs a real Proxy-Wasm module:
# the built filter when present, else envoy/stub_wasm.py's stub (said loudly).
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"
cd "$ALFRED_ROOT"

envoy="$(envoy_bin)" || die "no Envoy found: run scripts/bootstrap.sh"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

wasm="${ALFRED_FILTER_WASM:-target/wasm32-wasip1/release/alfred_filter.wasm}"
if [[ -f "$wasm" ]]; then
    log "validating against the built filter $wasm"
else
    warn "filter not built ($wasm missing): validating against a stub Proxy-Wasm module"
    wasm="$tmp/stub.wasm"
    python3 envoy/stub_wasm.py "$wasm"
fi

failures=0
checked=0
validate() {
    local label="$1" file="$2" out
    checked=$((checked + 1))
    if out="$("$envoy" --mode validate -c "$file" -l warn 2>&1)"; then
        log "ok: $label"
    else
        failures=$((failures + 1))
        warn "FAILED: $label"
        printf '%s\n' "$out" | tail -20 >&2
    fi
}

# Dummy secrets: validation must never need real ones.
export OPENAI_API_KEY="sk-validate-dummy"
export ALFRED_FILTER_TOKEN="validate-dummy-token-0123456789abcdef"

render() {
    local name="$1"
    shift
    python3 envoy/render.py -o "$tmp/$name.yaml" --wasm "$wasm" "$@"
    validate "render.py $*" "$tmp/$name.yaml"
}

render default
render local-http --openai-base-url http://127.0.0.1:8090 --listen-address 127.0.0.1 --control-plane localhost:8081
render prefixed --openai-base-url https://llm.example.internal:8443/openai/v1
render baseline --no-filter
# Every provider at once, in-mesh over http (one local provider can stand in for all).
all_provider_vars=(AZURE_OPENAI_API_KEY ANTHROPIC_API_KEY GEMINI_API_KEY AWS_ACCESS_KEY_ID
    AWS_SECRET_ACCESS_KEY AWS_REGION VLLM_API_KEY)
export AZURE_OPENAI_API_KEY=az-dummy ANTHROPIC_API_KEY=sk-ant-dummy GEMINI_API_KEY=g-dummy
export AWS_ACCESS_KEY_ID=AKIDDUMMY AWS_SECRET_ACCESS_KEY=dummy-secret AWS_REGION=eu-west-1
export VLLM_API_KEY=vllm-dummy
base=http://127.0.0.1:8090
render all-providers --openai-base-url "$base" --azure-base-url "$base" --anthropic-base-url "$base" \
    --gemini-base-url "$base" --bedrock-base-url "$base" --ollama-base-url "$base/ollama" \
    --vllm-base-url "$base/vllm"
unset "${all_provider_vars[@]}"

# The committed example must be what the renderer produces today.
python3 envoy/render.py --example -o "$tmp/example.yaml"
if ! diff -u envoy/alfred.example.yaml "$tmp/example.yaml" >"$tmp/example.diff"; then
    failures=$((failures + 1))
    warn "FAILED: envoy/alfred.example.yaml is stale; regenerate: python3 envoy/render.py --example -o envoy/alfred.example.yaml"
    head -30 "$tmp/example.diff" >&2
fi

shopt -s nullglob globstar
for file in envoy/*.yaml deploy/**/envoy*.yaml; do
    # Committed examples point at the default filter path: use the module chosen above.
    sed -E "s#filename: \"?[^\"]*alfred_filter\\.wasm\"?#filename: \"$wasm\"#" "$file" > "$tmp/committed.yaml"
    validate "$file" "$tmp/committed.yaml"
done

if ((failures > 0)); then
    die "$failures of $checked Envoy configurations failed validation"
fi
log "all $checked Envoy configurations valid"
