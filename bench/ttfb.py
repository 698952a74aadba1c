#!/usr/bin/env python3
"""Time to first byte of a streamed completion: Envoy without the filter vs Envoy with
Alfred (warm lease), both in front of the same local provider.

One persistent HTTP/1.1 connection per gateway; the two gateways are measured in
alternation (request i to bare Envoy, then request i to Alfred) so machine noise hits
both alike. For each request two instants are taken from the moment the request is
written: the response headers parsed (``headers``) and the first bytes of the SSE body
(``first_event``, the provider's first ``data:`` chunk). Prints p50/p99 per gateway and
the difference, and writes bench/results/ttfb.json. Target (SPEC §8): Alfred's
first-byte overhead ≤ 1 ms.

Run through bench/ttfb.sh (which builds first). Standard library only.

    BENCH_TTFB_REQUESTS   measured requests per gateway   (default 2000)
    BENCH_TTFB_WARMUP     unmeasured requests per gateway (default 200)
"""

from __future__ import annotations

import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

from benchlib import Procs, envoy_binary, free_port, wait_http

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "bench", "results")
ALFRED = os.path.join(ROOT, "target", "release", "alfred")
PROVIDER = os.path.join(ROOT, "target", "release", "alfred-local-provider")
WASM = os.path.join(ROOT, "target", "wasm32-wasip1", "release", "alfred_filter.wasm")
RENDER = os.path.join(ROOT, "envoy", "render.py")

REQUESTS = int(os.environ.get("BENCH_TTFB_REQUESTS", "2000"))
WARMUP = int(os.environ.get("BENCH_TTFB_WARMUP", "200"))
BODY = json.dumps({"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": "Hello!"}]})
# A slow provider makes "first byte" unambiguous: the rest of the stream comes later.
PROVIDER_HEADERS = {"x-local-provider-reply-words": "8"}


class Gateway:
    """A persistent connection to one Envoy, timing streamed requests."""

    def __init__(self, name: str, port: int, headers: dict[str, str]):
        self.name = name
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        self.headers = {"content-type": "application/json", **PROVIDER_HEADERS, **headers}
        self.samples: dict[str, list[float]] = {"headers": [], "first_event": []}

    def request(self, record: bool) -> None:
        start = time.perf_counter()
        self.conn.request("POST", "/v1/chat/completions", body=BODY, headers=self.headers)
        response = self.conn.getresponse()
        at_headers = time.perf_counter()
        first = response.read1(65536)
        at_first = time.perf_counter()
        if response.status != 200 or not first.startswith(b"data: "):
            raise RuntimeError(f"{self.name}: HTTP {response.status}: {first[:300]!r}")
        response.read()  # drain: the connection is reused
        if record:
            self.samples["headers"].append((at_headers - start) * 1e6)
            self.samples["first_event"].append((at_first - start) * 1e6)


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered)) - 1))
    return ordered[index]


def summary(values: list[float]) -> dict:
    return {
        "p50_us": round(percentile(values, 50), 1),
        "p99_us": round(percentile(values, 99), 1),
        "mean_us": round(statistics.fmean(values), 1),
        "n": len(values),
    }


def main() -> None:
    for path in (ALFRED, PROVIDER, WASM):
        if not os.path.exists(path):
            sys.exit(f"missing build output {path}: run bench/ttfb.sh")
    os.makedirs(RESULTS, exist_ok=True)
    envoy = envoy_binary()
    work = tempfile.mkdtemp(prefix="alfred-ttfb-")
    procs = Procs(work)
    token = "bench-ttfb-token-" + "x" * 32
    provider_key = "sk-bench-ttfb"
    try:
        provider_port = free_port()
        procs.start("provider", [PROVIDER, "--bind", f"127.0.0.1:{provider_port}"], dict(os.environ, RUST_LOG="warn"))
        wait_http(f"http://127.0.0.1:{provider_port}/_health")

        cp_port = free_port()
        env = dict(os.environ, DATABASE_URL=f"sqlite:///{work}/ttfb.db", ALFRED_BIND=f"127.0.0.1:{cp_port}",
                   ALFRED_FILTER_TOKEN=token, RUST_LOG="warn")
        admin = json.loads(subprocess.run([ALFRED, "create-admin", "--email", "ttfb@example.com", "--name", "TTFB", "--json"],
                                          env=env, capture_output=True, text=True, check=True, cwd=work).stdout)
        procs.start("control-plane", [ALFRED, "serve"], env=env)
        wait_http(f"http://127.0.0.1:{cp_port}/healthz")
        request = urllib.request.Request(
            f"http://127.0.0.1:{cp_port}/v1/admin/users",
            data=json.dumps({"email": "ttfb-user@example.com", "name": "TTFB user", "personal_quota": 10**12}).encode(),
            headers={"content-type": "application/json", "x-api-key": admin["api_key"]},
        )
        with urllib.request.urlopen(request, timeout=10) as r:
            user_key = json.loads(r.read())["api_key"]

        gateways = []
        for base_id, (name, with_filter) in enumerate([("envoy", False), ("alfred", True)], start=70):
            port, admin_port = free_port(), free_port()
            config = os.path.join(work, f"envoy-{name}.yaml")
            render_env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "ALFRED_"))}
            render_env.update(OPENAI_API_KEY=provider_key, ALFRED_FILTER_TOKEN=token)
            args = [sys.executable, RENDER, "-o", config, "--listen-address", "127.0.0.1", "--listen-port", str(port),
                    "--admin-port", str(admin_port), "--control-plane", f"127.0.0.1:{cp_port}",
                    "--openai-base-url", f"http://127.0.0.1:{provider_port}", "--proxy-id", f"ttfb-{name}",
                    "--no-access-log"]
            args += ["--wasm", WASM] if with_filter else ["--no-filter"]
            subprocess.run(args, check=True, env=render_env)
            procs.start(f"envoy-{name}", [envoy, "-c", config, "--concurrency", "1", "-l", "warn",
                                          "--base-id", str(base_id), "--disable-hot-restart"])
            wait_http(f"http://127.0.0.1:{admin_port}/ready")
            gateways.append(Gateway(name, port, {"authorization": f"Bearer {user_key}"} if with_filter else {}))

        for _ in range(WARMUP):  # warms connections, the lease and the JIT
            for gateway in gateways:
                gateway.request(record=False)
        for _ in range(REQUESTS):
            for gateway in gateways:
                gateway.request(record=True)

        results = {
            "requests_per_gateway": REQUESTS,
            "machine": {"cores": os.cpu_count()},
            "gateways": {g.name: {k: summary(v) for k, v in g.samples.items()} for g in gateways},
        }
        bare, alfred = results["gateways"]["envoy"], results["gateways"]["alfred"]
        results["overhead_us"] = {
            metric: {p: round(alfred[metric][p] - bare[metric][p], 1) for p in ("p50_us", "p99_us")}
            for metric in ("headers", "first_event")
        }
        results["target_us"] = 1000
        results["within_target"] = results["overhead_us"]["first_event"]["p50_us"] <= 1000
        out = os.path.join(RESULTS, "ttfb.json")
        with open(out, "w") as f:
            json.dump(results, f, indent=2)
            f.write("\n")

        print(f"\nTime to first byte of an SSE stream, {REQUESTS} requests per gateway (µs)\n")
        print(f"| gateway | headers p50 | headers p99 | first event p50 | first event p99 |")
        print(f"|---|---:|---:|---:|---:|")
        for name, r in results["gateways"].items():
            print(f"| {name} | {r['headers']['p50_us']} | {r['headers']['p99_us']} | "
                  f"{r['first_event']['p50_us']} | {r['first_event']['p99_us']} |")
        o = results["overhead_us"]
        print(f"| Alfred − Envoy | {o['headers']['p50_us']} | {o['headers']['p99_us']} | "
              f"{o['first_event']['p50_us']} | {o['first_event']['p99_us']} |")
        print(f"\nTarget: first-byte overhead ≤ 1000 µs → {'met' if results['within_target'] else 'NOT met'}. "
              f"Written to {os.path.relpath(out, ROOT)}")
    finally:
        procs.stop_all()


if __name__ == "__main__":
    main()
