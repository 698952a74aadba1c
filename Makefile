# Alfred — the two commands that matter: `make run` and `make test`.
.PHONY: run test bootstrap validate-envoy

## Build everything and run the gateway locally (Envoy :8000, control plane :8081).
run:
	scripts/run.sh

## Every test: cargo test, release + wasm builds, Envoy config validation, end-to-end.
test:
	scripts/test.sh

## Install what a fresh machine lacks (wasm target, .venv with Envoy and test tools).
bootstrap:
	scripts/bootstrap.sh

## Check every Envoy configuration with `envoy --mode validate`.
validate-envoy:
	scripts/validate-envoy.sh
