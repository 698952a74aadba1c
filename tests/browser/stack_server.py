"""Starts the real gateway for the browser tests and keeps it up until stdin closes.

Control plane (serving the built dashboard from DASHBOARD_DIR), local provider and
Envoy with the compiled filter, on free loopback ports — the end-to-end tests' Stack
(tests/e2e/stack.py). Creates the first admin, then prints one JSON line:

    {"url": "http://127.0.0.1:PORT", "admin": {"id": 1, "api_key": "tp-…"}, "workdir": "…"}

and waits. When stdin reaches EOF (the test runner exits or closes it) or on SIGTERM,
every process is stopped and the temporary directory removed. Backend: SQLite, or
PostgreSQL with ALFRED_BROWSER_POSTGRES_URL (a role with CREATEDB; a fresh database).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests/e2e"))

from stack import Stack, missing_artifacts, postgres_database_url, psql  # noqa: E402

DASHBOARD_DIR = Path(os.environ.get("DASHBOARD_DIR", ROOT / "dashboard/dist")).resolve()


def main() -> int:
    missing = missing_artifacts()
    if missing:
        print(f"missing build outputs: {', '.join(missing)} (run the release builds first)", file=sys.stderr)
        return 2
    if not (DASHBOARD_DIR / "index.html").exists():
        print(f"the dashboard is not built: no {DASHBOARD_DIR}/index.html (cd dashboard && npm ci && npm run build)", file=sys.stderr)
        return 2

    workdir = Path(tempfile.mkdtemp(prefix="alfred-browser-"))
    pg_base = os.environ.get("ALFRED_BROWSER_POSTGRES_URL")
    pg_name = None
    if pg_base:
        pg_name = f"alfred_browser_{secrets.token_hex(4)}"
        psql(pg_base, f'CREATE DATABASE "{pg_name}"')
        database_url, backend = postgres_database_url(pg_base, pg_name), "postgres"
    else:
        database_url, backend = f"sqlite:///{workdir}/alfred.db", "sqlite"  # four slashes: absolute

    stack = Stack(
        workdir=workdir,
        database_url=database_url,
        backend=backend,
        env_overrides={
            "DASHBOARD_DIR": str(DASHBOARD_DIR),
            "SESSION_SECRET": secrets.token_hex(32),
            # Transfers above 1,000 tokens wait for approval: the test sends one below
            # (completed at once) and one above (approved in the dashboard).
            "TRANSFER_APPROVAL_THRESHOLD": "1000",
        },
    )

    def stop(*_args) -> None:
        stack.stop()
        if os.environ.get("ALFRED_BROWSER_KEEP_LOGS"):
            stack.save_logs(Path(os.environ["ALFRED_BROWSER_KEEP_LOGS"]))
        if pg_base and pg_name:
            try:
                psql(pg_base, f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)')
            except Exception as e:  # noqa: BLE001 - cleanup must go on
                print(f"could not drop {pg_name}: {e}", file=sys.stderr)
        shutil.rmtree(workdir, ignore_errors=True)

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        stack.start()
        admin = stack.create_admin("admin@company.com", "Admin User")
        print(json.dumps({"url": stack.envoy_url, "admin": admin, "workdir": str(workdir), "backend": backend}), flush=True)
        sys.stdin.read()  # until the runner closes stdin or exits
    except SystemExit:
        pass  # SIGTERM: stop below
    except BaseException as e:  # noqa: BLE001 - report, clean up, exit non-zero
        print(f"stack failed: {e}", file=sys.stderr)
        for process in stack.processes:
            print(f"--- {process.name}\n{process.log_tail()}", file=sys.stderr)
        stop()
        return 1
    stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
