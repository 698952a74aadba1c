"""What the benchmark scripts share: free ports, the Envoy binary, readiness waits and
child processes that are always stopped. Standard library only."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def envoy_binary() -> str:
    """$ENVOY_BIN (as the e2e tests), else the project's .venv, else `envoy` on PATH."""
    for candidate in (os.environ.get("ENVOY_BIN"), os.path.join(ROOT, ".venv", "bin", "envoy"), shutil.which("envoy")):
        if candidate and os.path.exists(candidate):
            return candidate
    sys.exit("no envoy binary: run scripts/bootstrap.sh or set ENVOY_BIN")


def wait_http(url: str, timeout: float = 60.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except Exception:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


class Procs:
    """Child processes, each in its own process group (logs in `workdir`), always stopped."""

    def __init__(self, workdir: str):
        self.workdir = workdir
        self.procs: list[subprocess.Popen] = []

    def start(self, name: str, args: list[str], env: dict | None = None) -> subprocess.Popen:
        with open(os.path.join(self.workdir, f"{name}.log"), "ab") as log:
            p = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True, cwd=ROOT)
        self.procs.append(p)
        return p

    def stop(self, p: subprocess.Popen) -> None:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        if p in self.procs:
            self.procs.remove(p)

    def stop_all(self) -> None:
        for p in reversed(list(self.procs)):
            self.stop(p)
