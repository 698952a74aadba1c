#!/usr/bin/env bash
# Builds the web dashboard (dashboard/ → dashboard/dist, served by the control plane at
# /static/): `npm ci` when package-lock.json changed, then `vite build` (after a
# TypeScript check) unless dist/ was built from exactly the current sources.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"
cd "$ALFRED_ROOT/dashboard"

command -v npm >/dev/null 2>&1 || die "npm not found: run scripts/bootstrap.sh (installs nodejs and npm)"

# Everything the build reads, hashed: a changed file, added or removed, rebuilds.
sources_hash() {
    find index.html package.json package-lock.json tsconfig.json vite.config.ts src public \
        -type f -print0 2>/dev/null | sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1
}

npm_ci_if_needed "$PWD"
want="$(sources_hash)"
if [[ -f dist/index.html && "$(cat dist/.alfred-sources.sha256 2>/dev/null || true)" == "$want" ]]; then
    log "dashboard: dist/ up to date"
    exit 0
fi
log "dashboard: building (tsc + vite build)"
npm run --silent build
printf '%s\n' "$want" > dist/.alfred-sources.sha256
log "dashboard: built into dashboard/dist"
