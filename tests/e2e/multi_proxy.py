"""Several Envoys in front of one control plane, for the issue-4 end-to-end tests.

:class:`MultiProxyStack` is a :class:`stack.Stack` (same control plane, same local
provider, same helpers: ``create_admin``, ``provider_stats``, ``save_logs`` …) with N
Envoy processes instead of one. Each Envoy runs the compiled filter with ``--concurrency
2``, its own ``--base-id``, ports and ``proxy_id``, so the filters hold separate leases
for the same user, exactly like several proxies of a mesh. The control plane can be
``SIGKILL``-ed and restarted on the same port and database.

Every process runs in its own process group and is stopped by killing the group
(``Process.stop``); :func:`multi_stack` always stops everything, saves every log to
``tests/e2e/artifacts/<test>/<backend>/`` when the test failed, and fails the test when
a process died or a client key reached the provider.

:class:`LoadGenerator` runs client threads (one ``requests.Session`` each) against the
proxies and tallies every answer.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import requests

from helpers import MODEL, REQUEST_TIMEOUT
from stack import (
    ALFRED_BIN,
    FILTER_WASM,
    PROVIDER_BIN,
    RENDER,
    Process,
    Stack,
    StartError,
    envoy_bin,
    free_port,
    missing_artifacts,
    postgres_database_url,
    psql,
)

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
ANSI = re.compile(r"\x1b\[[0-9;]*m")
RENDER_ENV_PREFIXES = (
    "ALFRED_", "OPENAI_", "AZURE_", "ANTHROPIC_", "GEMINI_", "BEDROCK_", "AWS_", "OLLAMA_", "VLLM_", "ENVOY_",
)
# Control-plane log level that shows each usage batch's applied/duplicates counts.
USAGE_LOG_LEVEL = "info,alfred_control_plane::http::internal=debug"

# One message "Hello!" costs 4 + 24 = 28 tokens at the local provider (its usage rule).
HELLO_PAYLOAD = {"model": MODEL, "messages": [{"role": "user", "content": "Hello!"}]}
HELLO_BODY = json.dumps(HELLO_PAYLOAD, separators=(",", ":")).encode()
HELLO_TOKENS = 28


def estimate_for(default_estimate_tokens: int, body: bytes = HELLO_BODY) -> int:
    """The filter's reservation estimate for a request body (filter/src/gateway.rs:
    ``default_estimate_tokens + ceil(content_length / 4)``)."""
    return default_estimate_tokens + (len(body) + 3) // 4


# ---------------------------------------------------------------------------- processes


@dataclass
class Proxy:
    """One Envoy process with the filter."""

    index: int
    proxy_id: str
    base_id: int
    port: int = field(default_factory=free_port)
    admin_port: int = field(default_factory=free_port)
    process: Process | None = None

    @property
    def envoy_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    @property
    def config_path_name(self) -> str:
        return f"envoy-{self.index}.yaml"

    def stat(self, name: str) -> int:
        """A counter or gauge from Envoy's admin (0 when absent)."""
        response = requests.get(
            f"{self.admin_url}/stats", params={"filter": f"^{re.escape(name)}$", "format": "json"}, timeout=5
        )
        response.raise_for_status()
        for stat in response.json().get("stats", []):
            if stat.get("name") == name:
                return int(stat.get("value", 0))
        return 0


@dataclass
class MultiProxyStack(Stack):
    """One control plane + one local provider + ``proxy_count`` Envoys with the filter."""

    proxy_count: int = 2
    # Filter settings rendered into every Envoy (None: render.py's default).
    default_estimate_tokens: int | None = None
    lease_request_tokens: int | None = None
    proxies: list[Proxy] = field(default_factory=list)

    def __post_init__(self) -> None:
        tag = secrets.token_hex(3)
        base = 1000 + secrets.randbelow(50_000) * 4
        self.proxies = [
            Proxy(index=i, proxy_id=f"e2e-{self.backend}-{tag}-p{i}", base_id=base + i) for i in range(self.proxy_count)
        ]
        # The inherited single-Envoy addresses name the first proxy, so the helpers of
        # helpers.py (create_user, quota, chat) work on the stack itself.
        self.envoy_port = self.proxies[0].port
        self.admin_port = self.proxies[0].admin_port

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> "MultiProxyStack":
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            cp = self._spawn_control_plane()
            provider_env = dict(os.environ, LOCAL_PROVIDER_EXPECT_KEY=self.provider_key, RUST_LOG="info")
            provider = self._spawn(
                "local-provider",
                [str(PROVIDER_BIN), "--bind", f"127.0.0.1:{self.provider_port}"],
                provider_env,
            )
            for proxy in self.proxies:
                self.render_proxy_config(proxy)
                proxy.process = self._spawn(
                    f"envoy-{proxy.index}",
                    [
                        envoy_bin(), "-c", str(self.workdir / proxy.config_path_name),
                        "--concurrency", "2", "--base-id", str(proxy.base_id), "--disable-hot-restart",
                        "-l", "info", "--component-log-level", "wasm:debug",
                    ],
                    dict(os.environ),
                )
            cp.wait_http(f"{self.cp_url}/readyz", 60)
            provider.wait_http(f"{self.provider_url}/_health", 30)
            for proxy in self.proxies:
                proxy.process.wait_http(f"{proxy.admin_url}/ready", 60)
                # Through each front door to the control plane (filter disabled there).
                proxy.process.wait_http(f"{proxy.envoy_url}/healthz", 30)
        except BaseException:
            self.stop()
            raise
        return self

    def _spawn_control_plane(self) -> Process:
        return self._spawn("control-plane", [str(ALFRED_BIN), "serve"], self.cp_env())

    def render_proxy_config(self, proxy: Proxy) -> None:
        # Only the local provider (OpenAI dialect), whatever the caller's environment holds:
        # no other provider's settings, no ALFRED_* render defaults.
        env = {k: v for k, v in os.environ.items() if not k.startswith(RENDER_ENV_PREFIXES)}
        env.update(OPENAI_API_KEY=self.provider_key, ALFRED_FILTER_TOKEN=self.filter_token)
        argv = [
            sys.executable, str(RENDER),
            "-o", str(self.workdir / proxy.config_path_name),
            "--wasm", str(FILTER_WASM),
            "--listen-address", "127.0.0.1",
            "--listen-port", str(proxy.port),
            "--admin-port", str(proxy.admin_port),
            "--control-plane", f"127.0.0.1:{self.cp_port}",
            "--openai-base-url", self.provider_url,
            "--proxy-id", proxy.proxy_id,
            # Thousands of requests: keep Envoy's stdout for errors, not one line each.
            "--no-access-log",
        ]
        if self.default_estimate_tokens is not None:
            argv += ["--default-estimate-tokens", str(self.default_estimate_tokens)]
        if self.lease_request_tokens is not None:
            argv += ["--lease-request-tokens", str(self.lease_request_tokens)]
        subprocess.run(argv, env=env, check=True)

    @property
    def control_plane(self) -> Process:
        return next(p for p in self.processes if p.name == "control-plane")

    def kill_control_plane(self) -> None:
        """SIGKILL the control plane's whole process group: no graceful shutdown."""
        process = self.control_plane
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.popen.pid, signal.SIGKILL)
        process.popen.wait(10)

    def freeze_control_plane(self) -> None:
        """SIGSTOP: the control plane keeps its sockets but answers nothing, so the
        filters' calls time out while the requests already sent are still processed
        after :meth:`thaw_control_plane` — a batch applied but never acknowledged."""
        os.killpg(self.control_plane.popen.pid, signal.SIGSTOP)

    def thaw_control_plane(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.control_plane.popen.pid, signal.SIGCONT)

    def usage_batches_logged(self) -> list[dict[str, int]]:
        """`usage batch ingested` lines of the control-plane log (debug level for
        `alfred_control_plane::http::internal`, see :data:`USAGE_LOG_LEVEL`)."""
        text = ANSI.sub("", self.control_plane.log_path.read_text(errors="replace"))
        return [
            {k: int(v) for k, v in re.findall(r"(records|applied|duplicates)=(\d+)", line)}
            for line in text.splitlines()
            if "usage batch ingested" in line
        ]

    def restart_control_plane(self, timeout: float = 60) -> None:
        """Start the control plane again on the same port and database (log appended)."""
        old = self.control_plane
        assert not old.alive(), "the control plane is still running"
        with open(old.log_path, "ab") as log:
            log.write(b"\n===== e2e: control plane restarted =====\n")
        new = Process(old.name, old.argv, old.log_path, old.env, old.cwd).start()
        self.processes[self.processes.index(old)] = new
        new.wait_http(f"{self.cp_url}/readyz", timeout)

    def save_logs(self, destination: Path) -> None:
        super().save_logs(destination)
        for proxy in self.proxies:
            config = self.workdir / proxy.config_path_name
            if config.exists():
                shutil.copy(config, destination / config.name)

    # ------------------------------------------------------------------ helpers

    def filter_stat(self, proxy: Proxy, metric: str) -> int:
        return proxy.stat(f"wasmcustom.{metric}")

    def dropped_usage_records(self) -> dict[str, int]:
        return {p.proxy_id: self.filter_stat(p, "alfred_usage_records_dropped_total") for p in self.proxies}


# ---------------------------------------------------------------------------- fixtures


def artifact_dir(nodeid: str) -> Path:
    return ARTIFACTS / re.sub(r"[^A-Za-z0-9_.-]+", "_", nodeid)


def require_built() -> None:
    import pytest

    missing = missing_artifacts()
    if missing:
        pytest.fail(
            "end-to-end tests need the release builds, missing: " + ", ".join(missing)
            + " (cargo build --release -p alfred-control-plane -p alfred-local-provider; "
            "cargo build --release --target wasm32-wasip1 -p alfred-filter)",
            pytrace=False,
        )


def _failed(node) -> bool:
    return any(getattr(getattr(node, f"rep_{when}", None), "failed", False) for when in ("setup", "call"))


@contextlib.contextmanager
def multi_stack(request, tmp_path: Path, backend: str = "sqlite", **options) -> Iterator[MultiProxyStack]:
    """A fresh :class:`MultiProxyStack` for one test, on SQLite or on a fresh PostgreSQL
    database (``ALFRED_TEST_POSTGRES_URL``; skipped, loudly, when unset). Always stopped;
    logs saved to the artifacts directory when the test (or the start) failed, or when a
    process died or a client key reached the provider — which fails the test."""
    import pytest

    require_built()
    database = None
    base_url = None
    if backend == "sqlite":
        database_url = "sqlite://./alfred.db"
    elif backend == "postgres":
        base_url = os.environ.get("ALFRED_TEST_POSTGRES_URL")
        if not base_url:
            pytest.skip("ALFRED_TEST_POSTGRES_URL is unset: the PostgreSQL variant is SKIPPED")
        if not shutil.which("psql"):
            pytest.skip("psql not found: cannot create a fresh PostgreSQL database; PostgreSQL variant SKIPPED")
        database = f"alfred_e2e_mp_{secrets.token_hex(4)}"
        psql(base_url, f'CREATE DATABASE "{database}"')
        database_url = postgres_database_url(base_url, database)
    else:
        raise ValueError(backend)
    stack = MultiProxyStack(tmp_path / f"multi-{backend}", database_url, backend, **options)
    destination = artifact_dir(request.node.nodeid) / backend
    try:
        try:
            stack.start()
        except StartError:
            stack.save_logs(destination)
            raise
        yield stack
        # The test body is over (passed or not): check the processes and the provider.
        problems = []
        dead = stack.dead_processes()
        if dead:
            problems.append(f"process died: {', '.join(dead)}")
        else:
            leaked = stack.provider_stats()["leaked_client_keys"]
            if leaked:
                problems.append(f"{leaked} request(s) reached the provider with a client key")
        if problems:
            stack.save_logs(destination)
        assert not problems, "; ".join(problems)
    except BaseException:
        stack.save_logs(destination)
        raise
    finally:
        stack.stop()
        if _failed(request.node):
            stack.save_logs(destination)
        if database is not None:
            psql(base_url, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


# ---------------------------------------------------------------------------- admin API


def admin_headers(admin_key: str) -> dict:
    return {"X-API-Key": admin_key}


def list_users(stack: Stack, admin_key: str) -> list[dict]:
    response = requests.get(f"{stack.cp_url}/v1/admin/users", headers=admin_headers(admin_key), timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def used_by_user(stack: Stack, admin_key: str, user_ids: list[int]) -> dict[int, int]:
    wanted = set(user_ids)
    return {u["id"]: u["used_tokens"] for u in list_users(stack, admin_key) if u["id"] in wanted}


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


# ---------------------------------------------------------------------------- load


@dataclass
class ClientTally:
    """What one client thread saw."""

    statuses: Counter = field(default_factory=Counter)
    codes: Counter = field(default_factory=Counter)
    tokens: int = 0
    token_values: Counter = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    # (monotonic time, status) of every answer, for timelines.
    timeline: list[tuple[float, int]] = field(default_factory=list)


class LoadGenerator:
    """Client threads sending chat completions through the proxies.

    ``clients`` is a list of ``(proxy, api_key)``; each runs in its own thread with its own
    keep-alive session and calls ``on_answer(index, status, body)`` after each answer;
    returning False stops that client. ``stop()`` stops them all. In-flight requests are
    counted, and the peak is kept.
    """

    def __init__(self, clients: list[tuple[Proxy, str]], on_answer: Callable[[int, int, dict], bool],
                 pause_s: float = 0.0, max_seconds: float = 45.0):
        self.clients = clients
        self.on_answer = on_answer
        self.pause_s = pause_s
        self.max_seconds = max_seconds
        self.tallies = [ClientTally() for _ in clients]
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.in_flight = 0
        self.peak_in_flight = 0
        self._barrier = threading.Barrier(len(clients) + 1)
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(len(clients))]

    def start(self) -> "LoadGenerator":
        for thread in self._threads:
            thread.start()
        self._barrier.wait(30)  # every client ready: they start together
        return self

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in self._threads)

    def _run(self, index: int) -> None:
        proxy, key = self.clients[index]
        tally = self.tallies[index]
        url = f"{proxy.envoy_url}/v1/chat/completions"
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        session = requests.Session()
        self._barrier.wait(30)
        deadline = time.monotonic() + self.max_seconds
        try:
            while not self._stop.is_set():
                if time.monotonic() > deadline:
                    tally.errors.append(f"client {index} still running after {self.max_seconds}s")
                    return
                with self._lock:
                    self.in_flight += 1
                    self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
                try:
                    response = session.post(url, data=HELLO_BODY, headers=headers, timeout=REQUEST_TIMEOUT)
                except requests.RequestException as err:
                    tally.errors.append(f"client {index}: {type(err).__name__}: {err}")
                    return
                finally:
                    with self._lock:
                        self.in_flight -= 1
                status = response.status_code
                try:
                    body = response.json()
                except ValueError:
                    body = {"_raw": response.text[:300]}
                tally.statuses[status] += 1
                tally.timeline.append((time.monotonic(), status))
                if status == 200:
                    total = body.get("usage", {}).get("total_tokens")
                    tally.token_values[total] += 1
                    tally.tokens += int(total or 0)
                else:
                    code = (body.get("error") or {}).get("code") if isinstance(body.get("error"), dict) else None
                    tally.codes[f"{status}:{code}"] += 1
                if not self.on_answer(index, status, body):
                    return
                if self.pause_s:
                    time.sleep(self.pause_s)
        finally:
            session.close()

    # --------------------------------------------------------------- summaries

    def total_tokens(self) -> int:
        return sum(t.tokens for t in self.tallies)

    def statuses(self) -> Counter:
        out = Counter()
        for t in self.tallies:
            out.update(t.statuses)
        return out

    def codes(self) -> Counter:
        out = Counter()
        for t in self.tallies:
            out.update(t.codes)
        return out

    def token_values(self) -> Counter:
        out = Counter()
        for t in self.tallies:
            out.update(t.token_values)
        return out

    def errors(self) -> list[str]:
        return [e for t in self.tallies for e in t.errors]
