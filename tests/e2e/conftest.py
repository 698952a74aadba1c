"""Fixtures for the end-to-end tests: whole gateways made of real processes.

- ``sqlite_stack`` (session): control plane on a fresh SQLite file, local provider,
  Envoy with the compiled filter.
- ``postgres_stack`` (session): the same on a fresh PostgreSQL database created for the
  session; skipped, loudly, when ``ALFRED_TEST_POSTGRES_URL`` is unset.
- ``any_stack``: parametrised over both, for the flows that must hold on each backend.

After every test the autouse ``stack_guard`` checks, on every running stack, that no
client key reached the provider and that no process died; when a test fails, the logs of
every process (and the rendered Envoy config) are copied to ``tests/e2e/artifacts/``.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
from pathlib import Path

import pytest

from stack import Stack, StartError, missing_artifacts, postgres_database_url, psql

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
RUNNING: dict[str, Stack] = {}


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


def _artifact_dir(name: str) -> Path:
    return ARTIFACTS / re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def _require_built() -> None:
    missing = missing_artifacts()
    if missing:
        pytest.fail(
            "end-to-end tests need the release builds, missing: "
            + ", ".join(missing)
            + " (cargo build --release -p alfred-control-plane -p alfred-local-provider; "
            "cargo build --release --target wasm32-wasip1 -p alfred-filter)",
            pytrace=False,
        )


def _start(stack: Stack) -> Stack:
    try:
        stack.start()
    except StartError:
        stack.save_logs(_artifact_dir(f"startup-{stack.backend}"))
        raise
    RUNNING[stack.backend] = stack
    return stack


@pytest.fixture(scope="session")
def sqlite_stack(tmp_path_factory):
    _require_built()
    workdir = tmp_path_factory.mktemp("stack-sqlite")
    # The control plane runs in workdir, so the default-style relative path lands there.
    stack = _start(Stack(workdir, "sqlite://./alfred.db", "sqlite"))
    yield stack
    RUNNING.pop("sqlite", None)
    stack.stop()


@pytest.fixture(scope="session")
def postgres_stack(tmp_path_factory):
    base = os.environ.get("ALFRED_TEST_POSTGRES_URL")
    if not base:
        pytest.skip("ALFRED_TEST_POSTGRES_URL is unset: the PostgreSQL variant is SKIPPED")
    if not shutil.which("psql"):
        pytest.skip("psql not found: cannot create a fresh PostgreSQL database; PostgreSQL variant SKIPPED")
    _require_built()
    database = f"alfred_e2e_{secrets.token_hex(4)}"
    psql(base, f'CREATE DATABASE "{database}"')
    workdir = tmp_path_factory.mktemp("stack-postgres")
    try:
        stack = _start(Stack(workdir, postgres_database_url(base, database), "postgres"))
        yield stack
        RUNNING.pop("postgres", None)
        stack.stop()
    finally:
        psql(base, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgres"])
def any_stack(request) -> Stack:
    return request.getfixturevalue(f"{request.param}_stack")


@pytest.fixture
def stack(sqlite_stack) -> Stack:
    return sqlite_stack


@pytest.fixture(autouse=True)
def stack_guard(request):
    yield
    failed = any(
        getattr(request.node, f"rep_{when}", None) is not None and getattr(request.node, f"rep_{when}").failed
        for when in ("setup", "call")
    )
    problems = []
    for backend, stack in list(RUNNING.items()):
        dead = stack.dead_processes()
        if dead:
            problems.append(f"{backend}: process died: {', '.join(dead)}")
        else:
            leaked = stack.provider_stats()["leaked_client_keys"]
            if leaked:
                problems.append(f"{backend}: {leaked} request(s) reached the provider with a client key")
        if failed or problems:
            stack.save_logs(_artifact_dir(request.node.nodeid) / backend)
    assert not problems, "; ".join(problems)
