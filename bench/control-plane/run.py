#!/usr/bin/env python3
"""Control-plane benchmark driver (stdlib only); see bench/control-plane.sh."""

import hashlib
import http.client
import json
import os
import platform
import random
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ALFRED = os.environ.get("ALFRED_BIN") or os.path.join(ROOT, "target", "release", "alfred")
HERE = os.path.join(ROOT, "bench", "control-plane")
RESULTS = os.environ.get("BENCH_RESULTS") or os.path.join(ROOT, "bench", "results", "control-plane.json")

USERS = int(os.environ.get("USERS", "1000"))
DURATION = int(os.environ.get("DURATION", "10"))
CONNECTIONS = int(os.environ.get("CONNECTIONS", "64"))
USAGE_CONNECTIONS = int(os.environ.get("USAGE_CONNECTIONS", "8"))
BACKENDS = os.environ.get("BACKENDS", "sqlite postgres").split()
PG_URL = os.environ.get(
    "ALFRED_BENCH_POSTGRES_URL", "postgres://alfred:alfred@127.0.0.1:5432/postgres"
)
TOKEN = "bench-filter-token-" + secrets.token_hex(16)
# Records per usage batch: the filter's largest report (max_batch), which is what a
# proxy sends under load.
BATCH = int(os.environ.get("BATCH", "2000"))
RUNS = os.environ.get("RUNS", "grants usage").split()
SKIPPED = {"requests": 0, "duration_us": 1, "not_ok": 0, "socket_errors": 0, "p50_us": 0,
           "p99_us": 0, "alfred_cpu_s": 0, "postgres_cpu_s": 0}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def with_db(url, name):
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(path="/" + name))


def psql(url, sql):
    subprocess.run(["psql", url, "-v", "ON_ERROR_STOP=1", "-qAtc", sql], check=True,
                   stdout=subprocess.DEVNULL)


class Server:
    def __init__(self, database_url, workdir):
        self.port = free_port()
        self.env = {
            "PATH": os.environ.get("PATH", ""),
            "DATABASE_URL": database_url,
            "ALFRED_BIND": f"127.0.0.1:{self.port}",
            "ALFRED_FILTER_TOKEN": TOKEN,
            "RUST_LOG": "warn",
            "DEFAULT_PERSONAL_QUOTA": "1000000000000",
            **({"DATABASE_POOL_SIZE": os.environ["DATABASE_POOL_SIZE"]} if os.environ.get("DATABASE_POOL_SIZE") else {}),
        }
        self.workdir = workdir
        self.proc = None
        self.log = None

    def cli(self, *args):
        out = subprocess.run([ALFRED, *args], env=self.env, cwd=self.workdir, check=True,
                             capture_output=True, text=True)
        return out.stdout

    def start(self):
        self.log = open(os.path.join(self.workdir, "alfred.log"), "w")
        self.proc = subprocess.Popen([ALFRED, "serve"], env=self.env, cwd=self.workdir,
                                     stdout=self.log, stderr=self.log)
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1)
                c.request("GET", "/readyz")
                if c.getresponse().status == 200:
                    return
            except OSError:
                pass
            if self.proc.poll() is not None:
                raise SystemExit(f"alfred exited: see {self.log.name}")
            time.sleep(0.1)
        raise SystemExit("alfred did not become ready")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        if self.log:
            self.log.close()


def create_users(server, admin_key, n):
    """Creates n users and one lease each (for the usage records); returns lines."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port)
    lines = []
    for i in range(n):
        body = json.dumps({"email": f"bench{i}@example.com", "name": f"Bench {i}"})
        conn.request("POST", "/v1/admin/users", body,
                     {"x-api-key": admin_key, "content-type": "application/json"})
        resp = conn.getresponse()
        user = json.loads(resp.read())
        if resp.status != 201:
            raise SystemExit(f"creating a user failed: {resp.status} {user}")
        key_hash = hashlib.sha256(user["api_key"].encode()).hexdigest()
        body = json.dumps({"key_hash": key_hash, "proxy_id": "bench-usage",
                           "requested_tokens": 1_000_000})
        conn.request("POST", "/internal/v1/leases", body,
                     {"authorization": f"Bearer {TOKEN}", "content-type": "application/json"})
        resp = conn.getresponse()
        lease = json.loads(resp.read())
        if lease.get("decision") != "granted":
            raise SystemExit(f"seeding a lease failed: {lease}")
        lines.append(f"{key_hash} {user['id']} {lease['lease_id']}")
    return lines


def cpu_seconds(pids):
    """User + system CPU seconds used so far by the given processes."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return total / os.sysconf("SC_CLK_TCK")


def postgres_pids():
    pids = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/comm") as f:
                    if f.read().strip() in ("postgres", "postmaster"):
                        pids.append(int(pid))
            except OSError:
                pass
    return pids


def wrk(server, script, connections, users_file):
    env = dict(os.environ, BENCH_USERS=users_file, BENCH_TOKEN=TOKEN, BENCH_BATCH=str(BATCH))
    threads = min(2, connections)
    pg = postgres_pids()
    cpu0 = (cpu_seconds([server.proc.pid]), cpu_seconds(pg))
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{DURATION}s", "--timeout", "10s",
         "-s", os.path.join(HERE, script), f"http://127.0.0.1:{server.port}"],
        env=env, check=True, capture_output=True, text=True)
    cpu1 = (cpu_seconds([server.proc.pid]), cpu_seconds(postgres_pids()))
    for line in out.stdout.splitlines():
        if line.startswith("BENCH "):
            result = json.loads(line[len("BENCH "):])
            result["alfred_cpu_s"] = round(cpu1[0] - cpu0[0], 2)
            result["postgres_cpu_s"] = round(max(cpu1[1] - cpu0[1], 0), 2)
            return result
    raise SystemExit(f"no result from wrk:\n{out.stdout}\n{out.stderr}")


def bench_backend(backend, tmp):
    workdir = tempfile.mkdtemp(prefix=f"alfred-bench-{backend}-", dir=tmp)
    pg_db = None
    if backend == "sqlite":
        database_url = f"sqlite:///{os.path.join(workdir, 'alfred.db')}"  # 4 slashes: absolute
    else:
        pg_db = f"alfred_bench_{secrets.token_hex(4)}"
        psql(PG_URL, f'CREATE DATABASE "{pg_db}"')
        database_url = with_db(PG_URL, pg_db)
    server = Server(database_url, workdir)
    try:
        admin = json.loads(server.cli("create-admin", "--email", "admin@bench.local",
                                      "--name", "Bench admin", "--json"))
        server.start()
        t0 = time.time()
        lines = create_users(server, admin["api_key"], USERS)
        users_file = os.path.join(workdir, "users.txt")
        with open(users_file, "w") as f:
            f.write("\n".join(lines) + "\n")
        print(f"  {backend}: {USERS} users and leases created in {time.time() - t0:.1f} s",
              flush=True)
        # Warm-up (connections, caches), then the measured runs.
        saved = DURATION
        globals()["DURATION"] = 2
        wrk(server, "grant.lua", CONNECTIONS, users_file)
        globals()["DURATION"] = saved
        grants = usage = SKIPPED
        if "grants" in RUNS:
            grants = wrk(server, "grant.lua", CONNECTIONS, users_file)
        if "usage" in RUNS:
            usage = wrk(server, "usage.lua", USAGE_CONNECTIONS, users_file)
    finally:
        server.stop()
        if pg_db:
            psql(PG_URL, f'DROP DATABASE IF EXISTS "{pg_db}" WITH (FORCE)')
    secs = lambda r: r["duration_us"] / 1e6
    return {
        "backend": backend,
        "users": USERS,
        "grants": {
            "connections": CONNECTIONS,
            "requests": grants["requests"],
            "not_granted": grants["not_ok"],
            "socket_errors": grants["socket_errors"],
            "per_s": round((grants["requests"] - grants["not_ok"]) / secs(grants)),
            "p50_ms": grants["p50_us"] / 1000,
            "p99_ms": grants["p99_us"] / 1000,
            "alfred_cpu_s": grants["alfred_cpu_s"],
            "postgres_cpu_s": grants["postgres_cpu_s"],
        },
        "usage": {
            "connections": USAGE_CONNECTIONS,
            "batch_records": BATCH,
            "batches": usage["requests"],
            "failed_batches": usage["not_ok"],
            "socket_errors": usage["socket_errors"],
            "records_per_s": round((usage["requests"] - usage["not_ok"]) * BATCH / secs(usage)),
            "batch_p50_ms": usage["p50_us"] / 1000,
            "batch_p99_ms": usage["p99_us"] / 1000,
            "alfred_cpu_s": usage["alfred_cpu_s"],
            "postgres_cpu_s": usage["postgres_cpu_s"],
        },
    }


def main():
    if not os.path.exists(ALFRED):
        raise SystemExit(f"{ALFRED} missing: cargo build --release -p alfred-control-plane")
    tmp = tempfile.mkdtemp(prefix="alfred-bench-")
    runs = []
    try:
        for backend in BACKENDS:
            print(f"benchmarking {backend} ({DURATION} s per run)…", flush=True)
            runs.append(bench_backend(backend, tmp))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "duration_s": DURATION,
        "load_average_after": os.getloadavg(),
        "targets": {"grants_per_s": 2000, "usage_records_per_s": 20000},
        "runs": runs,
    }
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    with open(RESULTS, "w") as f:
        json.dump(result, f, indent=2)
    print()
    print(f"{'backend':<10} {'grants/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'records/s':>10} "
          f"{'batch p50':>9} {'batch p99':>9} {'errors':>6}")
    ok = True
    for r in runs:
        g, u = r["grants"], r["usage"]
        errors = g["not_granted"] + g["socket_errors"] + u["failed_batches"] + u["socket_errors"]
        print(f"{r['backend']:<10} {g['per_s']:>9} {g['p50_ms']:>7.2f} {g['p99_ms']:>7.2f} "
              f"{u['records_per_s']:>10} {u['batch_p50_ms']:>9.1f} {u['batch_p99_ms']:>9.1f} "
              f"{errors:>6}")
        ok = ok and g["per_s"] >= 2000 and u["records_per_s"] >= 20000 and errors == 0
    print(f"\ntargets: ≥ 2,000 grants/s, ≥ 20,000 records/s — {'met' if ok else 'NOT met'}")
    print(f"wrote {os.path.relpath(RESULTS, ROOT)}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
