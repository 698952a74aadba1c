#!/usr/bin/env python3
"""Alfred filter benchmark: Envoy without a filter, with a do-nothing wasm filter, with a
wasm filter that makes only the host calls Alfred makes (the floor of any filter doing
Alfred's job on this runtime; once through the SDK and once through the bare ABI with
only the callbacks it needs exported), and with Alfred (warm leases), side by side against the
same fast fixed-response upstream.

Measures serial latency (p50/p99: one request at a time, interleaved across the modes by
bench/serial-client), saturated throughput (requests/s),
the fraction of requests that waited on the control plane, and the filter VM's memory
with 10,000 distinct active keys. Prints a Markdown table and writes
bench/results/filter.json and bench/results/filter.md.

Run through bench/filter.sh (which builds everything first). Standard library only;
needs wrk and an Envoy binary (ENVOY_BIN, else .venv/bin/envoy, else envoy on PATH).
"""

from __future__ import annotations

import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from benchlib import Procs, envoy_binary, free_port, wait_http

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "bench", "results")
ALFRED = os.path.join(ROOT, "target", "release", "alfred")
ALFRED_WASM = os.environ.get("ALFRED_WASM") or os.path.join(ROOT, "target", "wasm32-wasip1", "release", "alfred_filter.wasm")
NOOP_WASM = os.path.join(ROOT, "target", "wasm32-wasip1", "release", "alfred_bench_noop_filter.wasm")
HOST_CALLS_WASM = os.path.join(ROOT, "target", "wasm32-wasip1", "release", "alfred_bench_host_calls_filter.wasm")
RAW_FLOOR_WASM = os.path.join(ROOT, "target", "wasm32-wasip1", "release", "alfred_bench_raw_floor_filter.wasm")
RENDER = os.path.join(ROOT, "envoy", "render.py")
SERIAL_CLIENT = os.path.join(ROOT, "target", "release", "alfred-bench-serial")

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
# Saturated runs: per round, SATURATED_CYCLES cycles in which every mode runs for
# SATURATED_BLOCK, the order rotated each cycle; ratios are taken within a cycle.
SATURATED_BLOCK = os.environ.get("BENCH_SATURATED_BLOCK", "1s")
SATURATED_CYCLES = int(os.environ.get("BENCH_SATURATED_CYCLES", "3"))
# Alfred's usage records reach the control plane up to the report interval (1 s) after
# their requests. Each block follows a lead-in of the same load, not counted, so the
# control plane ingests during the block as it would under steady load; after Alfred's
# block the bench waits this long (the report interval, a tick and an ingestion round,
# with room to spare) so the next mode does not pay for Alfred's last reports.
SATURATED_DRAIN_SECONDS = float(os.environ.get("BENCH_SATURATED_DRAIN_SECONDS", "2.5"))
SERIAL_SECONDS = float(os.environ.get("BENCH_SERIAL_SECONDS", "8"))
SERIAL_BLOCK = int(os.environ.get("BENCH_SERIAL_BLOCK", "50"))
# Where the serial run's processes go, by core (each mode alike). "proxy-core" (default)
# gives the front Envoys a core of their own, as in a deployment. "one-core" is the layout
# of runs before 2026-12-01: the upstream and the client share the proxy's core and, run
# between a request's callbacks, evict the filter's code and data, a cost no deployment
# pays.
SERIAL_LAYOUTS = {
    "proxy-core": {"front": "0", "client": "1", "upstream": "1", "control plane": "1",
                   "says": "the front Envoys alone on one core and the client, the upstream and the control plane "
                           "on the other"},
    "one-core": {"front": "0", "client": "0", "upstream": "0", "control plane": "1",
                 "says": "the request path (client, front Envoys, upstream) on one core and the control plane on "
                         "the other"},
}
SERIAL_LAYOUT = os.environ.get("BENCH_SERIAL_LAYOUT", "proxy-core")
if SERIAL_LAYOUT not in SERIAL_LAYOUTS:
    sys.exit(f"BENCH_SERIAL_LAYOUT must be one of {', '.join(SERIAL_LAYOUTS)}, not {SERIAL_LAYOUT!r}")
PLACEMENT = SERIAL_LAYOUTS[SERIAL_LAYOUT]
CONCURRENCY = os.environ.get("BENCH_ENVOY_CONCURRENCY", "2")
SATURATION_CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "64"))
MEMORY_KEYS = int(os.environ.get("BENCH_MEMORY_KEYS", "10000"))
WARM_KEYS = int(os.environ.get("BENCH_WARM_KEYS", "100"))
ALL_CPUS = f"0-{(os.cpu_count() or 1) - 1}"

CHAT_BODY = '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello"}]}'
# The API path driven; /v1/embeddings is not body-inspected by the filter, which shows
# what reading OpenAI chat bodies before forwarding costs.
BENCH_PATH = os.environ.get("BENCH_PATH", "/v1/chat/completions")
UPSTREAM_BODY = json.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1764460800,
        "model": "gpt-4o-mini",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "Hello!"}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12},
    }
)


def upstream_config(port: int, admin_port: int) -> dict:
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}},
        "static_resources": {
            "listeners": [
                {
                    "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
                    "filter_chains": [
                        {
                            "filters": [
                                {
                                    "name": "envoy.filters.network.http_connection_manager",
                                    "typed_config": {
                                        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                                        "stat_prefix": "upstream",
                                        "route_config": {
                                            "virtual_hosts": [
                                                {
                                                    "name": "all",
                                                    "domains": ["*"],
                                                    "routes": [
                                                        {
                                                            "match": {"prefix": "/"},
                                                            "direct_response": {
                                                                "status": 200,
                                                                "body": {"inline_string": UPSTREAM_BODY},
                                                            },
                                                            "response_headers_to_add": [
                                                                {"header": {"key": "content-type", "value": "application/json"}}
                                                            ],
                                                        }
                                                    ],
                                                }
                                            ]
                                        },
                                        "http_filters": [
                                            # Answer once the whole request is read: a
                                            # direct response sent before the request body
                                            # ends makes the front Envoy close the upstream
                                            # connection, so every request would pay a
                                            # new TCP connection in every mode.
                                            {
                                                "name": "envoy.filters.http.buffer",
                                                "typed_config": {
                                                    "@type": "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer",
                                                    "max_request_bytes": 1048576,
                                                },
                                            },
                                            {
                                                "name": "envoy.filters.http.router",
                                                "typed_config": {
                                                    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
                                                },
                                            }
                                        ],
                                    },
                                }
                            ]
                        }
                    ],
                }
            ]
        },
    }


def post_json(url: str, body: dict, key: str) -> dict:
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"content-type": "application/json", "x-api-key": key}
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def wrk_script(path: str, keys_file: str) -> None:
    with open(path, "w") as f:
        f.write(
            f"""
local keys = {{}}
for line in io.lines("{keys_file}") do keys[#keys + 1] = line end
local i = 0
local body = '{CHAT_BODY}'
request = function()
  i = i + 1
  local key = keys[(i % #keys) + 1]
  return wrk.format("POST", "{BENCH_PATH}",
    {{["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. key}}, body)
end
"""
        )


def pin(pids: list[int], cpus: str) -> None:
    """Move every thread of each process onto `cpus` (a taskset list, e.g. "0")."""
    for pid in pids:
        subprocess.run(["taskset", "-a", "-p", "-c", cpus, str(pid)], check=True, stdout=subprocess.DEVNULL)


def run_wrk(port: int, script: str, threads: int, connections: int, duration: str, cpus: str | None = None) -> dict:
    pinned = ["taskset", "-c", cpus] if cpus else []
    out = subprocess.run(
        [*pinned, "wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}", "--latency", "-s", script, f"http://127.0.0.1:{port}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout

    def latency(pct: str) -> float:
        m = re.search(rf"^\s*{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if not m:
            raise RuntimeError(f"no {pct}% latency in wrk output:\n{out}")
        value, unit = float(m.group(1)), m.group(2)
        return value * {"us": 1, "ms": 1_000, "s": 1_000_000}[unit]

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    total = int(re.search(r"(\d+) requests in", out).group(1))
    return {
        "p50_us": latency("50"),
        "p99_us": latency("99"),
        "rps": rps,
        "requests": total,
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
    }


def run_serial(fronts: dict[str, int], keys_file: str, body_file: str) -> dict:
    """One interleaved serial run over every mode: one request at a time, the modes taking
    turns in blocks of SERIAL_BLOCK requests, so drift of the shared machine hits every
    mode alike (each block's first request, the first after another mode ran, is not
    counted)."""
    targets = [f"{mode}=127.0.0.1:{port}" for mode, port in fronts.items()]
    out = subprocess.run(
        ["taskset", "-c", PLACEMENT["client"], SERIAL_CLIENT, "--seconds", str(SERIAL_SECONDS), "--block", str(SERIAL_BLOCK),
         "--path", BENCH_PATH,
         "--body-file", body_file, "--keys-file", keys_file, *targets],
        capture_output=True, text=True, check=True,
    ).stdout
    return json.loads(out)


def envoy_stats(admin_port: int) -> dict[str, int]:
    with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/stats?filter=wasmcustom", timeout=5) as r:
        text = r.read().decode()
    stats = {}
    for line in text.splitlines():
        name, _, value = line.partition(": ")
        if value.strip().isdigit():
            stats[name.replace("wasmcustom.", "")] = int(value)
    return stats


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure_saturated(port: int, script: str, pids: dict[str, int]) -> dict:
    """One saturated run after a lead-in of the same load, with the CPU each process
    spent per request during the run."""
    run_wrk(port, script, 2, SATURATION_CONNECTIONS, SATURATED_BLOCK)  # lead-in
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    wrk_before = children_cpu_seconds()
    run = run_wrk(port, script, 2, SATURATION_CONNECTIONS, SATURATED_BLOCK)
    cpu = {name: cpu_seconds(pid) - before[name] for name, pid in pids.items()}
    cpu["wrk"] = children_cpu_seconds() - wrk_before
    run["cpu_us_per_request"] = {name: round(s * 1e6 / max(run["requests"], 1), 1) for name, s in cpu.items()}
    return run


def main() -> None:
    os.makedirs(RESULTS, exist_ok=True)
    envoy = envoy_binary()
    work = tempfile.mkdtemp(prefix="alfred-bench-")
    procs = Procs(work)
    token = "bench-filter-token-" + "x" * 32
    results: dict = {
        "machine": {"cores": os.cpu_count(), "envoy_concurrency": int(CONCURRENCY), "serial_layout": SERIAL_LAYOUT},
        "method": {"rounds": ROUNDS, "serial_seconds": SERIAL_SECONDS, "serial_block": SERIAL_BLOCK,
                   "saturated_block": SATURATED_BLOCK, "saturated_cycles_per_round": SATURATED_CYCLES,
                   "saturated_drain_seconds": SATURATED_DRAIN_SECONDS,
                   "connections": SATURATION_CONNECTIONS},
        "modes": {},
    }
    try:
        # Fixed-response upstream (its own Envoy, one worker).
        up_port, up_admin = free_port(), free_port()
        with open(os.path.join(work, "upstream.json"), "w") as f:
            json.dump(upstream_config(up_port, up_admin), f)
        upstream = procs.start("upstream", [envoy, "-c", os.path.join(work, "upstream.json"), "--concurrency", "1", "-l", "error", "--base-id", "41"])
        wait_http(f"http://127.0.0.1:{up_admin}/ready")

        # Control plane on a temporary SQLite database.
        cp_port = free_port()
        env = dict(os.environ, DATABASE_URL=f"sqlite:///{work}/bench.db", ALFRED_BIND=f"127.0.0.1:{cp_port}",
                   ALFRED_FILTER_TOKEN=token, RUST_LOG="warn")
        admin = json.loads(subprocess.run([ALFRED, "create-admin", "--email", "bench@example.com", "--name", "Bench", "--json"],
                                          env=env, capture_output=True, text=True, check=True).stdout)
        control_plane = procs.start("control-plane", [ALFRED, "serve"], env=env)
        wait_http(f"http://127.0.0.1:{cp_port}/healthz")
        users_url = f"http://127.0.0.1:{cp_port}/v1/admin/users"

        def create(i: int) -> str:
            return post_json(users_url, {"email": f"bench{i}@example.com", "name": f"Bench {i}", "personal_quota": 10**15},
                             admin["api_key"])["api_key"]

        started = time.time()
        with ThreadPoolExecutor(8) as pool:
            keys = list(pool.map(create, range(max(MEMORY_KEYS, WARM_KEYS))))
        print(f"created {len(keys)} users in {time.time() - started:.1f}s", flush=True)
        warm_keys_file = os.path.join(work, "warm-keys.txt")
        all_keys_file = os.path.join(work, "all-keys.txt")
        with open(warm_keys_file, "w") as f:
            f.write("\n".join(keys[:WARM_KEYS]) + "\n")
        with open(all_keys_file, "w") as f:
            f.write("\n".join(keys[:MEMORY_KEYS]) + "\n")
        warm_script = os.path.join(work, "warm.lua")
        all_script = os.path.join(work, "all.lua")
        wrk_script(warm_script, warm_keys_file)
        wrk_script(all_script, all_keys_file)

        # All three front proxies run side by side for the whole measurement, and the
        # rounds interleave them, so drift of the shared machine hits every mode alike.
        modes = [("envoy", None), ("noop-wasm", NOOP_WASM), ("host-calls-wasm", HOST_CALLS_WASM),
                 ("raw-floor-wasm", RAW_FLOOR_WASM), ("alfred", ALFRED_WASM)]
        fronts: dict[str, tuple[int, int, subprocess.Popen]] = {}
        for base_id, (mode, wasm) in enumerate(modes, start=50):
            port, admin_port = free_port(), free_port()
            config = os.path.join(work, f"envoy-{mode}.yaml")
            args = [sys.executable, RENDER, "-o", config, "--listen-address", "127.0.0.1", "--listen-port", str(port),
                    "--admin-port", str(admin_port), "--control-plane", f"127.0.0.1:{cp_port}",
                    "--openai-base-url", f"http://127.0.0.1:{up_port}", "--openai-api-key", "sk-bench",
                    "--filter-token", token, "--proxy-id", f"bench-{mode}", "--no-access-log"]
            args += ["--no-filter"] if wasm is None else ["--wasm", wasm]
            subprocess.run(args, check=True)
            proc = procs.start(f"envoy-{mode}", [envoy, "-c", config, "--concurrency", CONCURRENCY, "-l", "error",
                                                 "--base-id", str(base_id)])
            wait_http(f"http://127.0.0.1:{admin_port}/ready")
            fronts[mode] = (port, admin_port, proc)
        for mode, (port, _, _) in fronts.items():
            # Warm up: every warm key gets its lease (keys go round-robin, and a key's
            # first request waits for its lease); JIT and connection pools settle.
            run_wrk(port, warm_script, 1, 4, f"{max(3, WARM_KEYS // 400)}s")

        alfred_admin = fronts["alfred"][1]
        before = envoy_stats(alfred_admin)
        serial: dict[str, list[dict]] = {mode: [] for mode in fronts}
        saturated: dict[str, list[dict]] = {mode: [] for mode in fronts}
        order = list(fronts)
        body_file = os.path.join(work, "body.json")
        with open(body_file, "w") as f:
            f.write(CHAT_BODY)
        for r in range(ROUNDS):
            # Serial: every process pinned (see SERIAL_LAYOUT), so the latency is the work
            # on the path, not where the scheduler happened to wake each hop.
            front_pids = [proc.pid for _, _, proc in fronts.values()]
            pin(front_pids, PLACEMENT["front"])
            pin([upstream.pid], PLACEMENT["upstream"])
            pin([control_plane.pid], PLACEMENT["control plane"])
            interleaved = run_serial({m: fronts[m][0] for m in order}, warm_keys_file, body_file)
            pin([*front_pids, upstream.pid, control_plane.pid], ALL_CPUS)
            for mode in order:
                serial[mode].append(interleaved["targets"][mode])
            # Saturated: short blocks, every mode once per cycle, so a ratio of two modes
            # within a cycle compares runs seconds apart.
            for c in range(SATURATED_CYCLES):
                shift = (r * SATURATED_CYCLES + c) % len(order)
                for mode in order[shift:] + order[:shift]:
                    port, _, proc = fronts[mode]
                    pids = {"front envoy": proc.pid, "upstream": upstream.pid, "control plane": control_plane.pid}
                    saturated[mode].append(measure_saturated(port, warm_script, pids))
                    if mode == "alfred":
                        time.sleep(SATURATED_DRAIN_SECONDS)
            round_rps = {m: statistics.median(x["rps"] for x in saturated[m][-SATURATED_CYCLES:]) for m in order}
            print(f"round {r + 1}/{ROUNDS}: " + ", ".join(
                f"{m} p50 {serial[m][-1]['p50_us']:.0f} µs (+{serial[m][-1]['paired_added_us']:.0f}), "
                f"{round_rps[m]:.0f} req/s" for m in order), flush=True)
        time.sleep(1)
        after = envoy_stats(alfred_admin)

        for mode in order:
            entry = {
                "serial": {
                    "p50_us": statistics.median([x["p50_us"] for x in serial[mode]]),
                    "p99_us": statistics.median([x["p99_us"] for x in serial[mode]]),
                    "paired_added_us": statistics.median([x["paired_added_us"] for x in serial[mode]]),
                    "rounds": serial[mode],
                },
                "saturated": {
                    "rps": statistics.median([x["rps"] for x in saturated[mode]]),
                    "cpu_us_per_request": {
                        name: statistics.median([x["cpu_us_per_request"][name] for x in saturated[mode]])
                        for name in saturated[mode][0]["cpu_us_per_request"]
                    },
                    "blocks": saturated[mode],
                },
            }
            entry["non_2xx"] = sum(x["non_2xx"] for x in serial[mode] + saturated[mode])
            results["modes"][mode] = entry

        alfred = results["modes"]["alfred"]
        requests = after.get("alfred_requests_total", 0) - before.get("alfred_requests_total", 0)
        waited = after.get("alfred_requests_waited_total", 0) - before.get("alfred_requests_waited_total", 0)
        alfred["requests_counted"] = requests
        alfred["waited_fraction"] = waited / requests if requests else None

        # Memory with many distinct active keys: every key gets a lease and is tracked by
        # the worker VMs; the gauges are reported by the VMs that serve requests.
        port = fronts["alfred"][0]
        run_wrk(port, all_script, 2, 16, os.environ.get("BENCH_MEMORY_DURATION", "30s"))
        time.sleep(1)
        stats = envoy_stats(alfred_admin)
        alfred["memory"] = {
            "distinct_keys": MEMORY_KEYS,
            "tracked_keys_one_vm": stats.get("alfred_tracked_keys"),
            "vm_memory_bytes": stats.get("alfred_vm_memory_bytes"),
            "lease_fetches": stats.get("alfred_lease_fetches_total"),
            "records_dropped": stats.get("alfred_usage_records_dropped_total"),
        }
    finally:
        procs.stop_all()

    def cycle_ratios(a: dict, b: dict) -> list[float]:
        return [x["rps"] / y["rps"] for x, y in zip(a["saturated"]["blocks"], b["saturated"]["blocks"])]

    def paired_ratio(a: dict, b: dict) -> float:
        return statistics.median(cycle_ratios(a, b))

    def paired_ratio_by_round(a: dict, b: dict) -> list[float]:
        ratios = cycle_ratios(a, b)
        return [statistics.median(ratios[i:i + SATURATED_CYCLES]) for i in range(0, len(ratios), SATURATED_CYCLES)]

    base, noop, floor, raw, alfred = (results["modes"][m] for m in
                                      ("envoy", "noop-wasm", "host-calls-wasm", "raw-floor-wasm", "alfred"))
    summary = {
        "added_p50_us": alfred["serial"]["p50_us"] - base["serial"]["p50_us"],
        "added_p99_us": alfred["serial"]["p99_us"] - base["serial"]["p99_us"],
        "paired_added_us": alfred["serial"]["paired_added_us"],
        "noop_added_p50_us": noop["serial"]["p50_us"] - base["serial"]["p50_us"],
        "throughput_vs_noop": alfred["saturated"]["rps"] / noop["saturated"]["rps"],
        "throughput_vs_envoy": alfred["saturated"]["rps"] / base["saturated"]["rps"],
        # Paired: the median over cycles of the ratio within a cycle (every mode runs
        # once per cycle, within seconds of the others); and the same, round by round.
        "throughput_vs_noop_paired": paired_ratio(alfred, noop),
        "throughput_vs_envoy_paired": paired_ratio(alfred, base),
        "throughput_vs_noop_by_round": paired_ratio_by_round(alfred, noop),
        "throughput_vs_envoy_by_round": paired_ratio_by_round(alfred, base),
        "waited_fraction": alfred.get("waited_fraction"),
        "vm_memory_mib_10k_keys": (alfred["memory"]["vm_memory_bytes"] or 0) / 2**20,
        "front_envoy_cpu_added_us": alfred["saturated"]["cpu_us_per_request"]["front envoy"]
        - noop["saturated"]["cpu_us_per_request"]["front envoy"],
        "control_plane_cpu_us": alfred["saturated"]["cpu_us_per_request"]["control plane"],
        "host_calls_added_p50_us": floor["serial"]["p50_us"] - base["serial"]["p50_us"],
        "host_calls_throughput_vs_noop": paired_ratio(floor, noop),
        "host_calls_front_envoy_cpu_added_us": floor["saturated"]["cpu_us_per_request"]["front envoy"]
        - noop["saturated"]["cpu_us_per_request"]["front envoy"],
        "raw_floor_added_p50_us": raw["serial"]["p50_us"] - base["serial"]["p50_us"],
        "raw_floor_throughput_vs_noop": paired_ratio(raw, noop),
        "raw_floor_front_envoy_cpu_added_us": raw["saturated"]["cpu_us_per_request"]["front envoy"]
        - noop["saturated"]["cpu_us_per_request"]["front envoy"],
    }
    results["summary"] = summary

    def by_round(ratios: list[float]) -> str:
        return " ".join(f"{r * 100:.0f}" for r in ratios)

    lines = [
        f"Median of {ROUNDS} rounds. Serial: each round sends one request at a time for {SERIAL_SECONDS:g} s, "
        f"the modes taking turns in blocks of {SERIAL_BLOCK} requests (bench/serial-client; a block's first "
        f"request is not counted), with {PLACEMENT['says']} (layout `{SERIAL_LAYOUT}`); "
        "\"paired\" is the median over cycles of each block's median less bare "
        f"Envoy's. Saturated: {SATURATED_CYCLES} cycles per round in which every mode runs {SATURATED_BLOCK} with "
        f"{SATURATION_CONNECTIONS} connections after a lead-in of the same load (so the control plane ingests "
        "Alfred's usage as under steady load), the order rotated each cycle; req/s and CPU per request (by process) "
        "are medians over all blocks, and the throughput ratios the median over cycles of the ratio within a cycle.",
        "",
        "| mode | serial p50 (µs) | paired, over bare Envoy (µs) | serial p99 (µs) | saturated req/s "
        "| front Envoy CPU (µs) | upstream CPU (µs) | control plane CPU (µs) | wrk CPU (µs) | non-2xx |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for mode, entry in results["modes"].items():
        cpu = entry["saturated"]["cpu_us_per_request"]
        lines.append(f"| {mode} | {entry['serial']['p50_us']:.0f} | {entry['serial']['paired_added_us']:.0f} "
                     f"| {entry['serial']['p99_us']:.0f} | "
                     f"{entry['saturated']['rps']:.0f} | {cpu['front envoy']:.0f} | {cpu['upstream']:.0f} | "
                     f"{cpu['control plane']:.0f} | {cpu['wrk']:.0f} | {entry['non_2xx']} |")
    lines += [
        "",
        "| target | measured | goal |",
        "| --- | ---: | ---: |",
        f"| added p50 | {summary['added_p50_us']:.0f} µs (paired: {summary['paired_added_us']:.0f} µs) | ≤ 50 µs |",
        f"| added p99 | {summary['added_p99_us']:.0f} µs | ≤ 250 µs |",
        f"| throughput vs do-nothing wasm, paired | {summary['throughput_vs_noop_paired'] * 100:.1f} % "
        f"(rounds: {by_round(summary['throughput_vs_noop_by_round'])}; ratio of medians "
        f"{summary['throughput_vs_noop'] * 100:.1f} %) | ≥ 85 % |",
        f"| throughput vs bare Envoy, paired | {summary['throughput_vs_envoy_paired'] * 100:.1f} % "
        f"(rounds: {by_round(summary['throughput_vs_envoy_by_round'])}; ratio of medians "
        f"{summary['throughput_vs_envoy'] * 100:.1f} %) | ≥ 90 % (SPEC) |",
        f"| front Envoy CPU per request over do-nothing wasm | {summary['front_envoy_cpu_added_us']:.0f} µs | |",
        f"| control plane CPU per request (usage ingestion, same cores) | {summary['control_plane_cpu_us']:.0f} µs | |",
        f"| requests that waited on the control plane | {(summary['waited_fraction'] or 0) * 100:.3f} % | ≤ 1 % |",
        f"| wasm memory per worker, {MEMORY_KEYS} keys | {summary['vm_memory_mib_10k_keys']:.1f} MiB | ≤ 16 MiB |",
        "",
        "The host-calls filter makes only the host calls Alfred makes on a warm request, with no logic: "
        "the floor of any Proxy-Wasm filter doing Alfred's job on this runtime. The raw floor makes the same "
        "calls through the bare ABI, without the SDK and exporting only the callbacks it needs.",
        "",
        "| floor (host calls only) | SDK | bare ABI |",
        "| --- | ---: | ---: |",
        f"| added p50 over bare Envoy | {summary['host_calls_added_p50_us']:.0f} µs "
        f"| {summary['raw_floor_added_p50_us']:.0f} µs |",
        f"| throughput vs do-nothing wasm | {summary['host_calls_throughput_vs_noop'] * 100:.1f} % "
        f"| {summary['raw_floor_throughput_vs_noop'] * 100:.1f} % |",
        f"| front Envoy CPU per request over do-nothing wasm | {summary['host_calls_front_envoy_cpu_added_us']:.0f} µs "
        f"| {summary['raw_floor_front_envoy_cpu_added_us']:.0f} µs |",
    ]
    table = "\n".join(lines)
    print(table)
    with open(os.path.join(RESULTS, "filter.json"), "w") as f:
        json.dump(results, f, indent=2)
    with open(os.path.join(RESULTS, "filter.md"), "w") as f:
        f.write(table + "\n")


if __name__ == "__main__":
    main()
