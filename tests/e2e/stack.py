"""Real processes for the end-to-end tests: control plane, local provider, Envoy.

Every process runs in its own process group on free loopback ports, logs to a file, and
is stopped by killing its group (TERM, then KILL). Nothing here knows about pytest, so
the same code can drive a manual session::

    with Stack.start(tmp_dir) as stack:
        print(stack.envoy_url)
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]
# Overridable (e.g. to run against debug builds); processes run in a temporary
# directory, so paths are made absolute here.
ALFRED_BIN = Path(os.environ.get("ALFRED_BIN", ROOT / "target/release/alfred")).resolve()
PROVIDER_BIN = Path(os.environ.get("ALFRED_LOCAL_PROVIDER_BIN", ROOT / "target/release/alfred-local-provider")).resolve()
FILTER_WASM = Path(os.environ.get("ALFRED_FILTER_WASM", ROOT / "target/wasm32-wasip1/release/alfred_filter.wasm")).resolve()
RENDER = ROOT / "envoy/render.py"
# Provider settings of the caller's environment must not leak into rendered test configs.
PROVIDER_ENV_PREFIXES = ("OPENAI_", "AZURE_OPENAI_", "ANTHROPIC_", "GEMINI_", "BEDROCK_", "AWS_", "OLLAMA_", "VLLM_")


def envoy_bin() -> str:
    """$ENVOY_BIN, else the project's virtualenv, else `envoy` on PATH."""
    if os.environ.get("ENVOY_BIN"):
        return os.environ["ENVOY_BIN"]
    venv = ROOT / ".venv/bin/envoy"
    if venv.exists():
        return str(venv)
    found = shutil.which("envoy")
    if not found:
        raise RuntimeError("no Envoy: run scripts/bootstrap.sh")
    return found


def missing_artifacts() -> list[str]:
    """Build outputs the stack needs that do not exist yet."""
    return [str(p) for p in (ALFRED_BIN, PROVIDER_BIN, FILTER_WASM) if not p.exists()]


def _ephemeral_low() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A port free now, chosen below the kernel's ephemeral range: a port the kernel
    hands out for `bind(0)` can be taken by any outgoing connection before the server
    meant to listen on it binds it (a CI run's e2e stage failed on an Envoy admin port
    already in use, right after the API schema stage's thousands of connections)."""
    low = _ephemeral_low()
    for _ in range(200):
        port = 10_000 + secrets.randbelow(max(low - 10_000, 1))
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class StartError(RuntimeError):
    pass


@dataclass
class Process:
    name: str
    argv: list[str]
    log_path: Path
    env: dict[str, str]
    cwd: Path
    popen: subprocess.Popen | None = None

    def start(self) -> "Process":
        log = open(self.log_path, "ab")
        try:
            self.popen = subprocess.Popen(
                self.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,  # own process group: stop() kills it whole
            )
        finally:
            log.close()
        return self

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def stop(self, timeout: float = 5.0) -> None:
        if self.popen is None or self.popen.poll() is not None:
            return
        pgid = self.popen.pid  # session leader: its pid is the group id
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, timeout)):
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                return
            try:
                self.popen.wait(wait)
                return
            except subprocess.TimeoutExpired:
                continue

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def wait_http(self, url: str, timeout: float, expect=lambda r: r.status_code == 200) -> None:
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if not self.alive():
                raise StartError(f"{self.name} exited with {self.popen.returncode}:\n{self.log_tail()}")
            try:
                response = requests.get(url, timeout=2)
                if expect(response):
                    return
                last = f"HTTP {response.status_code}: {response.text[:200]}"
            except requests.RequestException as err:
                last = str(err)
            time.sleep(0.1)
        raise StartError(f"{self.name} not ready at {url} after {timeout}s ({last}):\n{self.log_tail()}")


@dataclass
class Stack:
    """One gateway: control plane + local provider + Envoy with the compiled filter."""

    workdir: Path
    database_url: str
    backend: str
    filter_token: str = field(default_factory=lambda: secrets.token_hex(24))
    provider_key: str = field(default_factory=lambda: "sk-local-" + secrets.token_hex(12))
    cp_port: int = field(default_factory=free_port)
    provider_port: int = field(default_factory=free_port)
    envoy_port: int = field(default_factory=free_port)
    admin_port: int = field(default_factory=free_port)
    processes: list[Process] = field(default_factory=list)
    env_overrides: dict[str, str] = field(default_factory=dict)

    # ---------------------------------------------------------------- addresses

    @property
    def envoy_url(self) -> str:
        return f"http://127.0.0.1:{self.envoy_port}"

    @property
    def cp_url(self) -> str:
        return f"http://127.0.0.1:{self.cp_port}"

    @property
    def provider_url(self) -> str:
        return f"http://127.0.0.1:{self.provider_port}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    # ---------------------------------------------------------------- lifecycle

    def cp_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ALFRED_", "OPENAI_", "DATABASE_"))}
        env.update(
            DATABASE_URL=self.database_url,
            ALFRED_BIND=f"127.0.0.1:{self.cp_port}",
            ALFRED_FILTER_TOKEN=self.filter_token,
            RUST_LOG=os.environ.get("ALFRED_E2E_RUST_LOG", "info"),
        )
        env.update(self.env_overrides)
        return env

    def _spawn(self, name: str, argv: list[str], env: dict[str, str]) -> Process:
        process = Process(name, argv, self.workdir / f"{name}.log", env, self.workdir).start()
        self.processes.append(process)
        return process

    def start(self) -> "Stack":
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            cp = self._spawn("control-plane", [str(ALFRED_BIN), "serve"], self.cp_env())
            provider_env = dict(os.environ, LOCAL_PROVIDER_EXPECT_KEY=self.provider_key, RUST_LOG="info")
            provider = self._spawn(
                "local-provider",
                [str(PROVIDER_BIN), "--bind", f"127.0.0.1:{self.provider_port}", "--expect-sigv4"],
                provider_env,
            )
            self.render_envoy_config()
            envoy = self._spawn(
                "envoy",
                [
                    envoy_bin(), "-c", str(self.workdir / "envoy.yaml"),
                    "--concurrency", "2", "--disable-hot-restart",
                    "-l", "info", "--component-log-level", "wasm:debug",
                ],
                dict(os.environ),
            )
            cp.wait_http(f"{self.cp_url}/readyz", 60)
            provider.wait_http(f"{self.provider_url}/_health", 30)
            envoy.wait_http(f"{self.admin_url}/ready", 60)
            # Through the front door to the control plane (filter disabled on the route).
            envoy.wait_http(f"{self.envoy_url}/healthz", 30)
        except BaseException:
            self.stop()
            raise
        return self

    # Fake AWS credentials for Envoy's SigV4 signing of Bedrock requests (the local
    # provider checks the signature's shape, not its value).
    AWS_TEST_CREDENTIALS = {
        "AWS_ACCESS_KEY_ID": "AKIDALFREDLOCALTEST",
        "AWS_SECRET_ACCESS_KEY": "alfred-local-test-secret",
        "AWS_REGION": "us-east-1",
    }

    def provider_render_env(self) -> dict[str, str]:
        """Every provider's credential for render.py: the local provider's key (SigV4
        test credentials for Bedrock)."""
        env = {name: value for name, value in os.environ.items() if not name.startswith(PROVIDER_ENV_PREFIXES)}
        env.update(
            OPENAI_API_KEY=self.provider_key,
            AZURE_OPENAI_API_KEY=self.provider_key,
            ANTHROPIC_API_KEY=self.provider_key,
            GEMINI_API_KEY=self.provider_key,
            VLLM_API_KEY=self.provider_key,
            **self.AWS_TEST_CREDENTIALS,
        )
        return env

    def provider_render_args(self) -> list[str]:
        """render.py flags pointing every provider at the one local provider (Ollama and
        vLLM at its `/ollama` and `/vllm` mounts)."""
        base = self.provider_url
        return [
            "--openai-base-url", base,
            "--azure-base-url", base,
            "--anthropic-base-url", base,
            "--gemini-base-url", base,
            "--bedrock-base-url", base,
            "--ollama-base-url", f"{base}/ollama",
            "--vllm-base-url", f"{base}/vllm",
        ]

    def render_envoy_config(self) -> None:
        env = dict(self.provider_render_env(), ALFRED_FILTER_TOKEN=self.filter_token)
        subprocess.run(
            [
                sys.executable, str(RENDER),
                "-o", str(self.workdir / "envoy.yaml"),
                "--wasm", str(FILTER_WASM),
                "--listen-address", "127.0.0.1",
                "--listen-port", str(self.envoy_port),
                "--admin-port", str(self.admin_port),
                "--control-plane", f"127.0.0.1:{self.cp_port}",
                "--proxy-id", f"e2e-{self.backend}",
                *self.provider_render_args(),
            ],
            env=env,
            check=True,
        )

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()

    def dead_processes(self) -> list[str]:
        return [f"{p.name} (exit {p.popen.returncode})" for p in self.processes if not p.alive()]

    def save_logs(self, destination: Path) -> None:
        destination.mkdir(parents=True, exist_ok=True)
        for path in self.workdir.glob("*.log"):
            shutil.copy(path, destination / path.name)
        config = self.workdir / "envoy.yaml"
        if config.exists():
            shutil.copy(config, destination / "envoy.yaml")

    def __enter__(self) -> "Stack":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---------------------------------------------------------------- helpers for tests

    def create_admin(self, email: str, name: str = "E2E Admin") -> dict:
        """`alfred create-admin --json` against this stack's database."""
        result = subprocess.run(
            [str(ALFRED_BIN), "create-admin", "--email", email, "--name", name, "--json"],
            env=self.cp_env(),
            cwd=self.workdir,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if result.returncode != 0:
            raise AssertionError(f"create-admin failed ({result.returncode}): {result.stderr}")
        return json.loads(result.stdout)

    def provider_stats(self) -> dict:
        response = requests.get(f"{self.provider_url}/_stats", timeout=5)
        response.raise_for_status()
        return response.json()

    def usage_records(self, user_id: int) -> list[dict] | None:
        """The user's usage records, oldest first, read from the SQLite database
        (read-only); None on PostgreSQL (the tests then check the quota totals only)."""
        if self.backend != "sqlite":
            return None
        path = self.workdir / self.database_url.removeprefix("sqlite://")
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
        connection.row_factory = sqlite3.Row
        try:
            rows = connection.execute(
                "SELECT request_id, provider, model, input_tokens, output_tokens, total_tokens, "
                "status, estimated FROM usage_records WHERE user_id = ? ORDER BY id",
                (user_id,),
            ).fetchall()
        finally:
            connection.close()
        return [dict(row, estimated=bool(row["estimated"])) for row in rows]

    def envoy_counter(self, name: str) -> int:
        response = requests.get(
            f"{self.admin_url}/stats", params={"filter": f"^{name}$", "format": "json"}, timeout=5
        )
        response.raise_for_status()
        for stat in response.json().get("stats", []):
            if stat.get("name") == name:
                return int(stat.get("value", 0))
        return 0


def postgres_database_url(base_url: str, database: str) -> str:
    parts = urllib.parse.urlsplit(base_url)
    return urllib.parse.urlunsplit(parts._replace(path="/" + database))


def psql(url: str, sql: str) -> None:
    subprocess.run(["psql", url, "-v", "ON_ERROR_STOP=1", "-q", "-c", sql], check=True, capture_output=True, timeout=60)
