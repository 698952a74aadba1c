#!/usr/bin/env python3
"""Analytics benchmark driver (standard library only); see bench/analytics.sh."""

from __future__ import annotations

import datetime as dt
import http.client
import json
import os
import platform
import secrets
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import ROOT, Procs, free_port, wait_http  # noqa: E402

ALFRED = os.environ.get("ALFRED_BIN") or os.path.join(ROOT, "target", "release", "alfred")
RESULTS = os.environ.get("BENCH_RESULTS") or os.path.join(ROOT, "bench", "results", "analytics.json")
RECORDS = int(os.environ.get("RECORDS", "1000000"))
USERS = int(os.environ.get("USERS", "1000"))
DAYS = int(os.environ.get("DAYS", "90"))
TEAMS = int(os.environ.get("TEAMS", "20"))
MIX = int(os.environ.get("MIX", "1"))
RUNS = int(os.environ.get("RUNS", "5"))
BACKENDS = os.environ.get("BACKENDS", "sqlite postgres").split()
PG_URL = os.environ.get("ALFRED_BENCH_POSTGRES_URL", "postgres://alfred:alfred@127.0.0.1:5432/postgres")

TODAY = dt.datetime.now(dt.timezone.utc).date()
START = dt.datetime.combine(TODAY - dt.timedelta(days=DAYS - 1), dt.time())
SPAN_S = DAYS * 86_400 - 1
MODELS = ["gpt-4o-mini", "gpt-4o", "claude-3-5-sonnet", "claude-3-haiku", "gemini-1.5-pro",
          "gpt-4.1-mini", "o3-mini", "local-llama"]


def rng(days: int) -> str:
    return f"from={TODAY - dt.timedelta(days=days - 1)}&to={TODAY}"


GROUPS = ("day", "model", "user", "project", "team")
# (name, path)
ENDPOINTS = [
    (f"summary {d}d", f"/v1/admin/analytics/summary?{rng(d)}") for d in (30, DAYS)
] + [
    (f"by {g} {d}d", f"/v1/admin/analytics/usage?group_by={g}&{rng(d)}")
    for d in (30, DAYS) for g in GROUPS
] + [
    (f"me summary {DAYS}d", f"/v1/users/me/analytics/summary?{rng(DAYS)}"),
    (f"me by day {DAYS}d", f"/v1/users/me/analytics/usage?group_by=day&{rng(DAYS)}"),
    (f"me by model {DAYS}d", f"/v1/users/me/analytics/usage?group_by=model&{rng(DAYS)}"),
    (f"admin: one user by day {DAYS}d", f"/v1/admin/analytics/usage?group_by=day&user_id=1&{rng(DAYS)}"),
]


def record_select(dialect: str) -> str:
    """The INSERT … SELECT body producing RECORDS synthetic records (n = 1…RECORDS):
    users round-robin, 8 models, 20 projects (a fifth without), spread evenly over DAYS
    days, gpt-4o-mini-like prices (the last model unpriced), a quarter of the input
    cached, 2% failed (500) and about 1% estimated."""
    # With MIX = 1 a user's records all have one model and project (user, model and
    # project all follow n); MIX = k gives each user k models, rotating per record,
    # so the rollup has up to k rows per user and day instead of one.
    model = f"CASE (n + (n / {USERS}) % {MIX}) % 8 " + " ".join(
        f"WHEN {i} THEN '{m}'" for i, m in enumerate(MODELS)) + " END"
    unpriced = f"(n + (n / {USERS}) % {MIX}) % 8 = 7"
    if dialect == "sqlite":
        created = f"datetime('{START:%Y-%m-%d %H:%M:%S}', '+' || ((n * {SPAN_S}) / {RECORDS}) || ' seconds')"
        period = f"strftime('%Y-%m-01 00:00:00', {created})"
        false, true = "0", "1"
        project = "CASE WHEN n % 5 = 0 THEN NULL ELSE 'project-' || (n % 20) END"
        source = f"WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < {RECORDS}) SELECT"
        tail = "FROM seq"
    else:
        created = f"(TIMESTAMP '{START:%Y-%m-%d %H:%M:%S}' + ((n::bigint * {SPAN_S}) / {RECORDS}) * INTERVAL '1 second')"
        period = f"date_trunc('month', {created})"
        false, true = "FALSE", "TRUE"
        project = "CASE WHEN n % 5 = 0 THEN NULL ELSE 'project-' || (n % 20) END"
        source = "SELECT"
        tail = f"FROM generate_series(1, {RECORDS}) AS n"
    return f"""
INSERT INTO usage_records (request_id, user_id, lease_id, proxy_id, provider, model,
    input_tokens, output_tokens, total_tokens, cached_tokens, reasoning_tokens, status,
    estimated, priority, project_id, privacy, occurred_at, created_at, period_start,
    cost_nano_usd, unpriced)
{source} 'bench-' || n, 1 + (n % {USERS}), NULL, 'bench', 'openai', {model},
    50 + n % 500, 20 + n % 300, 70 + n % 500 + n % 300, (50 + n % 500) / 4, 0,
    CASE WHEN n % 50 = 0 THEN 500 ELSE 200 END,
    CASE WHEN n % 97 = 0 THEN {true} ELSE {false} END, 'normal', {project}, 'standard', {created}, {created}, {period},
    CASE WHEN {unpriced} THEN 0 ELSE (50 + n % 500) * 150 + (20 + n % 300) * 600 END,
    CASE WHEN {unpriced} THEN {true} ELSE {false} END
{tail}
"""


def users_insert(dialect: str) -> str:
    now = f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M:%S}"
    if dialect == "sqlite":
        return f"""
WITH RECURSIVE seq(n) AS (SELECT 2 UNION ALL SELECT n + 1 FROM seq WHERE n < {USERS})
INSERT INTO users (id, email, name, personal_quota, status, is_admin, created_at, updated_at)
SELECT n, 'user' || n || '@bench.example', 'User ' || n, 1000000, 'active', 0, '{now}', '{now}' FROM seq"""
    return f"""
INSERT INTO users (id, email, name, personal_quota, status, is_admin, created_at, updated_at)
SELECT n, 'user' || n || '@bench.example', 'User ' || n, 1000000, 'active', FALSE, '{now}', '{now}'
FROM generate_series(2, {USERS}) AS n;
SELECT setval(pg_get_serial_sequence('users', 'id'), {USERS})"""


def teams_insert(dialect: str) -> list[str]:
    """TEAMS teams; user n is in team n % TEAMS, and every tenth user also in the next
    team (members of two teams count in both)."""
    now = f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M:%S}"
    now = f"'{now}'" if dialect == "sqlite" else f"TIMESTAMP '{now}'"
    seq = (f"WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < {USERS})"
           if dialect == "sqlite" else "")
    users = "seq" if dialect == "sqlite" else f"generate_series(1, {USERS}) AS n"
    teams = (f"WITH RECURSIVE t(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM t WHERE n < {TEAMS}) "
             f"INSERT INTO teams (id, name, description, common_pool, created_at, updated_at) "
             f"SELECT n, 'team-' || n, '', 0, {now}, {now} FROM t"
             if dialect == "sqlite" else
             f"INSERT INTO teams (id, name, description, common_pool, created_at, updated_at) "
             f"SELECT n, 'team-' || n, '', 0, {now}, {now} FROM generate_series(1, {TEAMS}) AS n")
    members = (f"{seq} INSERT INTO team_members (team_id, user_id, is_admin, created_at) "
               f"SELECT 1 + n % {TEAMS}, n, {'0' if dialect == 'sqlite' else 'FALSE'}, {now} FROM {users} "
               f"UNION ALL SELECT 1 + (n + 1) % {TEAMS}, n, {'0' if dialect == 'sqlite' else 'FALSE'}, {now} "
               f"FROM {users} WHERE n % 10 = 0")
    return [teams, members]


def backfill_statement(dialect: str) -> str:
    """The rollup migration's own backfill (`INSERT INTO usage_daily … ;`), so the bench
    reads exactly what a migrated database holds."""
    path = os.path.join(ROOT, "migrations", dialect, "2026-11-30-300000_usage_daily", "up.sql")
    with open(path) as f:
        sql = "\n".join(line for line in f.read().splitlines() if not line.lstrip().startswith("--"))
    start = sql.index("INSERT INTO usage_daily")
    return sql[start:sql.index(";", start)]


def psql(url: str, sql: str) -> None:
    subprocess.run(["psql", url, "-v", "ON_ERROR_STOP=1", "-q", "-c", sql], check=True, capture_output=True)


def alfred(args: list[str], env: dict) -> str:
    return subprocess.run([ALFRED, *args], env=env, check=True, capture_output=True, text=True, cwd=ROOT).stdout


def time_get(port: int, path: str, key: str) -> tuple[float, int]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    started = time.perf_counter()
    conn.request("GET", path, headers={"x-api-key": key})
    response = conn.getresponse()
    body = response.read()
    elapsed = time.perf_counter() - started
    conn.close()
    if response.status != 200:
        raise RuntimeError(f"GET {path}: {response.status} {body[:300]!r}")
    return elapsed, len(body)


def measure(port: int, key: str, endpoints) -> dict:
    out = {}
    for name, path in endpoints:
        time_get(port, path, key)  # warm-up (page cache, prepared statements)
        times = [time_get(port, path, key)[0] for _ in range(RUNS)]
        out[name] = {"median_ms": round(statistics.median(times) * 1000, 1), "min_ms": round(min(times) * 1000, 1),
                     "max_ms": round(max(times) * 1000, 1)}
        print(f"    {name:<32} median {out[name]['median_ms']:>8.1f} ms   min {out[name]['min_ms']:>8.1f} ms", flush=True)
    return out


def run_backend(backend: str, workdir: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ALFRED_", "DATABASE_"))}
    pg_name = None
    if backend == "sqlite":
        path = os.path.join(workdir, "analytics.db")
        env["DATABASE_URL"] = f"sqlite:///{path}"  # four slashes: absolute
    else:
        pg_name = f"alfred_bench_analytics_{secrets.token_hex(4)}"
        psql(PG_URL, f'CREATE DATABASE "{pg_name}"')
        parts = urllib.parse.urlsplit(PG_URL)
        env["DATABASE_URL"] = urllib.parse.urlunsplit(parts._replace(path="/" + pg_name))
    procs = Procs(workdir)
    try:
        alfred(["migrate"], env)
        admin = json.loads(alfred(["create-admin", "--email", "admin@bench.example", "--name", "Bench Admin", "--json"], env))
        started = time.perf_counter()
        if backend == "sqlite":
            db = sqlite3.connect(path)
            db.execute("PRAGMA journal_mode = WAL")
            with db:
                db.execute(users_insert("sqlite"))
                for statement in teams_insert("sqlite"):
                    db.execute(statement)
                db.execute(record_select("sqlite"))
            load_s = time.perf_counter() - started
            started = time.perf_counter()
            with db:
                db.execute(backfill_statement("sqlite"))
            rollup_rows = db.execute("SELECT COUNT(*) FROM usage_daily").fetchone()[0]
            db.close()
        else:
            psql(env["DATABASE_URL"], users_insert("postgres"))
            for statement in teams_insert("postgres"):
                psql(env["DATABASE_URL"], statement)
            psql(env["DATABASE_URL"], record_select("postgres"))
            load_s = time.perf_counter() - started
            started = time.perf_counter()
            psql(env["DATABASE_URL"], backfill_statement("postgres"))
            # What autovacuum does on its own after a million inserts: statistics and
            # the visibility map.
            psql(env["DATABASE_URL"], "VACUUM ANALYZE usage_records")
            psql(env["DATABASE_URL"], "VACUUM ANALYZE usage_daily")
            rollup_rows = int(subprocess.run(
                ["psql", env["DATABASE_URL"], "-tAc", "SELECT COUNT(*) FROM usage_daily"],
                check=True, capture_output=True, text=True).stdout.strip())
        rollup_s = time.perf_counter() - started
        print(f"  {backend}: loaded {RECORDS:,} records in {load_s:.1f} s; "
              f"usage_daily: {rollup_rows:,} rows, built in {rollup_s:.1f} s", flush=True)

        port = free_port()
        env.update(ALFRED_BIND=f"127.0.0.1:{port}", ALFRED_FILTER_TOKEN=secrets.token_hex(24), RUST_LOG="warn")
        procs.start("alfred", [ALFRED, "serve"], env)
        wait_http(f"http://127.0.0.1:{port}/readyz")
        endpoints = measure(port, admin["api_key"], ENDPOINTS)
        return {"load_s": round(load_s, 1), "rollup_rows": rollup_rows, "rollup_build_s": round(rollup_s, 1),
                "endpoints": endpoints}
    finally:
        procs.stop_all()
        if pg_name:
            try:
                psql(PG_URL, f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)')
            except subprocess.CalledProcessError as e:
                print(f"could not drop {pg_name}: {e.stderr}", file=sys.stderr)


def main() -> int:
    if not os.path.exists(ALFRED):
        sys.exit(f"{ALFRED} missing: cargo build --release -p alfred-control-plane")
    results = {
        "when": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "records": RECORDS, "users": USERS, "days": DAYS, "teams": TEAMS, "mix": MIX, "runs": RUNS,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "loadavg": os.getloadavg()},
        "backends": {},
    }
    with tempfile.TemporaryDirectory(prefix="alfred-bench-analytics-") as workdir:
        for backend in BACKENDS:
            print(f"== {backend}", flush=True)
            results["backends"][backend] = run_backend(backend, workdir)
    results["machine"]["loadavg_end"] = os.getloadavg()
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    with open(RESULTS, "w") as f:
        json.dump(results, f, indent=2)
    print(f"\nwrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
