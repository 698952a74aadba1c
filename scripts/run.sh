#!/usr/bin/env bash
# `make run`: builds Alfred and runs the whole gateway on this machine.
#
#   control plane   target/release/alfred serve      127.0.0.1:8081  (DATABASE_URL, default sqlite://./alfred.db)
#   local provider  alfred-local-provider            127.0.0.1:8090  (only when no provider variable is set)
#   Envoy + filter  front door                       :8000           (http://localhost:8000/v1)
#   dashboard       dashboard/dist, served by the control plane at http://localhost:8000/static/
#
# Ctrl-C stops everything; so does any of the three exiting. Logs: .alfred/logs/.
# ALFRED_NO_BUILD=1 skips the builds (uses what target/ and dashboard/dist hold).
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"
cd "$ALFRED_ROOT"

"$ALFRED_ROOT/scripts/bootstrap.sh"

if [[ "${ALFRED_NO_BUILD:-}" == 1 ]]; then
    warn "ALFRED_NO_BUILD=1: using the existing release builds"
else
    log "building the control plane and the local provider (release)"
    cargo build --release -p alfred-control-plane -p alfred-local-provider
    log "building the filter (release, wasm32-wasip1)"
    cargo build --release --target wasm32-wasip1 -p alfred-filter
    "$ALFRED_ROOT/scripts/build-dashboard.sh"
fi
[[ -f "$ALFRED_ROOT/dashboard/dist/index.html" ]] ||
    warn "the dashboard is not built (scripts/build-dashboard.sh): /static/ answers 503 until it is"
WASM="$ALFRED_ROOT/target/wasm32-wasip1/release/alfred_filter.wasm"
[[ -f "$WASM" ]] || die "the filter build produced no $WASM"

STATE="$ALFRED_ROOT/.alfred"
LOGS="$STATE/logs"
mkdir -p "$LOGS"
chmod 700 "$STATE"

# --- secrets: the filter token (shared by Envoy and the control plane)
if [[ -z "${ALFRED_FILTER_TOKEN:-}" ]]; then
    if [[ ! -s "$STATE/filter-token" ]]; then
        log "generating ALFRED_FILTER_TOKEN into .alfred/filter-token"
        (umask 077 && random_hex 32 > "$STATE/filter-token")
    fi
    ALFRED_FILTER_TOKEN="$(cat "$STATE/filter-token")"
fi
export ALFRED_FILTER_TOKEN

export DATABASE_URL="${DATABASE_URL:-sqlite://./alfred.db}"
export ALFRED_BIND="${ALFRED_BIND:-127.0.0.1:8081}"
export DASHBOARD_DIR="${DASHBOARD_DIR:-$ALFRED_ROOT/dashboard/dist}"
LISTEN_ADDRESS="${ALFRED_LISTEN_ADDRESS:-127.0.0.1}"
LISTEN_PORT="${ALFRED_LISTEN_PORT:-8000}"
ADMIN_PORT="${ENVOY_ADMIN_PORT:-9901}"
PROVIDER_BIND="${LOCAL_PROVIDER_BIND:-127.0.0.1:8090}"

pids=()
names=()
stopping=0
# shellcheck disable=SC2317  # invoked from the EXIT trap
stop_all() {
    ((stopping)) && return
    stopping=1
    log "stopping"
    local pid
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for _ in $(seq 50); do
        local alive=0
        for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        ((alive)) || break
        sleep 0.1
    done
    for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap stop_all EXIT
trap 'exit 130' INT TERM

start() { # start NAME LOGFILE COMMAND...
    local name="$1" logfile="$2"
    shift 2
    "$@" >"$logfile" 2>&1 &
    pids+=("$!")
    names+=("$name")
    log "$name started (pid $!, log ${logfile#"$ALFRED_ROOT"/})"
}

failed_start() { # failed_start NAME LOGFILE
    warn "$1 did not become ready; last lines of $2:"
    tail -25 "$2" >&2 || true
    exit 1
}

# --- control plane
start "control plane" "$LOGS/control-plane.log" "$ALFRED_ROOT/target/release/alfred" serve
wait_http "http://$ALFRED_BIND/readyz" 60 "${pids[-1]}" || failed_start "control plane" "$LOGS/control-plane.log"

# --- providers: the real ones whose credentials (or base URLs) are set; when none is,
# the local stand-in serves every provider route (OpenAI, Azure, Anthropic, Gemini,
# Bedrock, Ollama, vLLM) with deterministic replies.
provider_vars=(OPENAI_API_KEY AZURE_OPENAI_API_KEY ANTHROPIC_API_KEY GEMINI_API_KEY BEDROCK_ENDPOINT
    AWS_ACCESS_KEY_ID OLLAMA_BASE_URL VLLM_BASE_URL)
any_provider=0
for var in "${provider_vars[@]}"; do
    [[ -n "${!var:-}" ]] && any_provider=1
done
if ((any_provider == 0)); then
    if [[ ! -s "$STATE/local-provider-key" ]]; then
        (umask 077 && printf 'sk-local-%s\n' "$(random_hex 16)" > "$STATE/local-provider-key")
    fi
    local_key="$(cat "$STATE/local-provider-key")"
    local_url="http://$PROVIDER_BIND"
    export OPENAI_API_KEY="$local_key" OPENAI_BASE_URL="$local_url"
    export AZURE_OPENAI_API_KEY="$local_key" AZURE_OPENAI_ENDPOINT="$local_url"
    export ANTHROPIC_API_KEY="$local_key" ANTHROPIC_BASE_URL="$local_url"
    export GEMINI_API_KEY="$local_key" GEMINI_BASE_URL="$local_url"
    # Envoy signs Bedrock requests with SigV4; the local provider checks the signature's
    # shape, so placeholder AWS credentials do.
    export BEDROCK_ENDPOINT="$local_url" AWS_ACCESS_KEY_ID=AKIDALFREDLOCAL
    export AWS_SECRET_ACCESS_KEY=alfred-local-provider AWS_REGION="${AWS_REGION:-us-east-1}"
    export OLLAMA_BASE_URL="$local_url/ollama"
    export VLLM_BASE_URL="$local_url/vllm" VLLM_API_KEY="$local_key"
    export LOCAL_PROVIDER_EXPECT_KEY="$local_key"
    start "local provider" "$LOGS/local-provider.log" \
        "$ALFRED_ROOT/target/release/alfred-local-provider" --bind "$PROVIDER_BIND" --expect-sigv4
    wait_http "http://$PROVIDER_BIND/_health" 30 "${pids[-1]}" || failed_start "local provider" "$LOGS/local-provider.log"
    provider_note="the local provider at $local_url for every provider (no provider variable set; deterministic replies)"
else
    enabled=()
    for var in "${provider_vars[@]}"; do [[ -n "${!var:-}" ]] && enabled+=("$var"); done
    provider_note="the providers configured by ${enabled[*]}"
fi

# --- Envoy with the filter
python3 envoy/render.py -o "$STATE/envoy.yaml" --wasm "$WASM" \
    --listen-address "$LISTEN_ADDRESS" --listen-port "$LISTEN_PORT" --admin-port "$ADMIN_PORT" \
    --control-plane "$ALFRED_BIND"
envoy="$(envoy_bin)"
start "envoy" "$LOGS/envoy.log" "$envoy" -c "$STATE/envoy.yaml" \
    --concurrency "${ENVOY_CONCURRENCY:-2}" --disable-hot-restart -l warn --component-log-level wasm:info
wait_http "http://127.0.0.1:$ADMIN_PORT/ready" 60 "${pids[-1]}" || failed_start "envoy" "$LOGS/envoy.log"
wait_http "http://127.0.0.1:$LISTEN_PORT/healthz" 30 "${pids[-1]}" || failed_start "envoy" "$LOGS/envoy.log"

cat <<MSG

${_bold}Alfred is running${_reset} at http://localhost:$LISTEN_PORT/v1  (provider: $provider_note)
Dashboard: http://localhost:$LISTEN_PORT/static/ (log in with an API key)      Logs: .alfred/logs/

1. Create the first admin (prints the admin's tp- key once):
     DATABASE_URL=$DATABASE_URL target/release/alfred create-admin --email admin@company.com --name "Admin User"

2. Create a user with the admin key:
     curl -X POST http://localhost:$LISTEN_PORT/v1/admin/users \\
       -H "X-API-Key: tp-ADMIN-KEY" -H "Content-Type: application/json" \\
       -d '{"email": "user@company.com", "name": "New User", "personal_quota": 5000}'

3. Call a model with the user's key, through Alfred (the openai SDK is in .venv/bin/python):

from openai import OpenAI
client = OpenAI(api_key="tp-USER-KEY", base_url="http://localhost:$LISTEN_PORT/v1")
response = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "Hello!"}])
print(response.choices[0].message.content, response.usage.total_tokens)

   Other SDKs, same key: anthropic.Anthropic(base_url="http://localhost:$LISTEN_PORT"),
   genai.Client(http_options={"base_url": "http://localhost:$LISTEN_PORT"}), boto3 bedrock-runtime
   endpoint_url="http://localhost:$LISTEN_PORT", ollama.Client(host="http://localhost:$LISTEN_PORT"),
   OpenAI(base_url=".../vllm/v1" or ".../ollama/v1"), AzureOpenAI(azure_endpoint=...). See README.md.

4. Check the quota:
     curl http://localhost:$LISTEN_PORT/v1/users/me/quota -H "Authorization: Bearer tp-USER-KEY"

Ctrl-C stops everything.
MSG

# Exit as soon as any child exits (the trap stops the others).
set +e
wait -n "${pids[@]}"
status=$?
for i in "${!pids[@]}"; do
    if ! kill -0 "${pids[$i]}" 2>/dev/null; then
        if ((status == 0 || status > 128)); then
            log "${names[$i]} stopped"  # Ctrl-C reaches the children too
        else
            warn "${names[$i]} exited with status $status; see .alfred/logs/"
        fi
    fi
done
exit "$status"
