"""Issue 4 end to end, with real parts: one control plane, TWO Envoy processes (each
``--concurrency 2``, own ``--base-id`` and ``proxy_id``, the compiled filter), the local
provider. See ``multi_proxy.py`` for the processes and ``docs/overspend.md`` for the
overspend bound checked here.

What makes each test fail:

- overspend: the ledger charges more than ``quota + in_flight × (U − 1)``, or less than
  ``quota − in_flight × max(estimate − U, 0)``; the ledger differs from what the provider
  served; a client gets anything but 200 or 429 ``insufficient_quota``.
- restart: after the control plane is SIGKILL-ed mid-load and restarted, the ledger
  (sum of ``used_tokens``) differs from the tokens the provider served by even one token
  (a lost batch, or a retried batch charged twice), or the filters dropped a record, or a
  request fails with anything but 503 ``governance_unavailable`` during the outage.
- revocation/suspension: a proxy still serves a revoked key (401 ``invalid_api_key``
  expected) or a suspended user (403 ``user_suspended``) 5 s after the admin call.
- stopping proxy: a proxy drained after serving has not reported the usage it queued
  within the report delay, so the ledger stays short of what the provider served.
"""

from __future__ import annotations

import threading
import time
from contextlib import ExitStack

import pytest
import requests

from helpers import REPORTED_WITHIN_S, create_user, new_admin, quota
from multi_proxy import (
    HELLO_BODY,
    HELLO_TOKENS,
    USAGE_LOG_LEVEL,
    LoadGenerator,
    admin_headers,
    estimate_for,
    multi_stack,
    used_by_user,
    wait_until,
)

pytestmark = pytest.mark.multi_proxy


@pytest.fixture
def make_stack(request, tmp_path):
    """``make_stack(backend="sqlite", **options)`` → a started MultiProxyStack, stopped
    (process groups killed) after the test, logs in tests/e2e/artifacts/ on failure."""
    with ExitStack() as stacks:
        yield lambda backend="sqlite", **options: stacks.enter_context(
            multi_stack(request, tmp_path, backend, **options)
        )


def chat_on(proxy, key: str, timeout: float = 20) -> requests.Response:
    return requests.post(
        f"{proxy.envoy_url}/v1/chat/completions",
        data=HELLO_BODY,
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        timeout=timeout,
    )


def error_code(response: requests.Response) -> str | None:
    try:
        error = response.json().get("error")
    except ValueError:
        return None
    return error.get("code") if isinstance(error, dict) else None


# ---------------------------------------------------------------------------- 1. overspend

OVERSPEND_CLIENTS = 64


@pytest.mark.parametrize(
    ("default_estimate_tokens", "quota_tokens"),
    [
        # render.py's default: estimate 256 + 71/4 → 274 ≥ 28 used, so only requests
        # admitted on a lease's last few tokens use more than they reserved. The quota
        # is large enough for the lower bound (quota − what in-flight reservations strand)
        # to mean something.
        (256, 20_000),
        # Under-estimating: 1 + 71/4 → 19 < 28 used, so EVERY request in flight uses
        # 9 tokens more than it reserved; nothing can be stranded, so spent ≥ quota.
        (1, 3_000),
    ],
    ids=["estimate-274-above-usage", "estimate-19-below-usage"],
)
def test_overspend_with_64_clients_on_two_proxies_stays_within_the_bound(
    make_stack, default_estimate_tokens, quota_tokens
):
    stack = make_stack(default_estimate_tokens=default_estimate_tokens)
    estimate = estimate_for(default_estimate_tokens)
    admin_key = new_admin(stack)
    user = create_user(stack, admin_key, personal_quota=quota_tokens, tag="overspend")
    key = user["api_key"]

    # 64 clients, half on each proxy, each sending until its first 429.
    clients = [(stack.proxies[i % len(stack.proxies)], key) for i in range(OVERSPEND_CLIENTS)]
    unexpected: list[str] = []

    def on_answer(index: int, status: int, body: dict) -> bool:
        if status == 200:
            return True
        code = (body.get("error") or {}).get("code") if isinstance(body.get("error"), dict) else None
        if (status, code) != (429, "insufficient_quota"):
            unexpected.append(f"client {index}: {status} {body}")
        return False

    started = time.monotonic()
    load = LoadGenerator(clients, on_answer, max_seconds=40).start()
    assert load.join(50), "clients still running after 50 s: the quota never ran out"
    load_seconds = time.monotonic() - started
    assert not load.errors(), load.errors()[:5]
    assert not unexpected, unexpected[:5]
    statuses = load.statuses()
    # Every client ended on exactly one 429.
    assert statuses[429] == OVERSPEND_CLIENTS, statuses
    assert set(statuses) == {200, 429}, statuses
    # Each success cost exactly the provider's documented 28 tokens.
    assert set(load.token_values()) == {HELLO_TOKENS}, load.token_values()
    served = load.total_tokens()
    assert served == statuses[200] * HELLO_TOKENS

    # The provider's side agrees with the clients'.
    provider = stack.provider_stats()
    assert provider["total_tokens_reported"] == served, provider
    assert provider["completed"] == statuses[200], provider

    # Usage settles (the filters' batches) to exactly what was served.
    settled = wait_until(lambda: quota(stack, key)["used_tokens"] == served, timeout=15)
    spent = quota(stack, key)["used_tokens"]
    assert settled, f"ledger {spent} never reached the {served} tokens the provider served"
    time.sleep(REPORTED_WITHIN_S)
    assert quota(stack, key)["used_tokens"] == spent, "usage changed after settling: charged twice?"

    # The bound (docs/overspend.md): spent ≤ quota + F × (U − 1), F = requests that can
    # be in flight at once (one per client), U = most tokens one request uses (28), 1 =
    # the least a request can reserve (it is admitted only while its lease has room).
    in_flight = OVERSPEND_CLIENTS
    worst_excess = HELLO_TOKENS - 1
    bound = in_flight * worst_excess
    # Below the quota, only what in-flight reservations could not use is stranded.
    stranded_max = in_flight * max(estimate - HELLO_TOKENS, 0)
    overspend = spent - quota_tokens
    print(
        f"\n[overspend] estimate={estimate} quota={quota_tokens} clients={OVERSPEND_CLIENTS} "
        f"proxies={len(stack.proxies)} requests_ok={statuses[200]} load_s={load_seconds:.1f} "
        f"peak_in_flight={load.peak_in_flight} spent={spent} overspend={overspend} "
        f"bound=+{bound} (= {in_flight} × ({HELLO_TOKENS} − 1)) lower=-{stranded_max} "
        f"waited={[stack.filter_stat(p, 'alfred_requests_waited_total') for p in stack.proxies]} "
        f"lease_fetches={[stack.filter_stat(p, 'alfred_lease_fetches_total') for p in stack.proxies]} "
        f"cas_failures={[stack.filter_stat(p, 'alfred_cas_failures_total') for p in stack.proxies]}"
    )
    assert load.peak_in_flight <= in_flight
    assert spent <= quota_tokens + bound, f"overspend {overspend} exceeds the bound {bound}"
    assert spent >= quota_tokens - stranded_max, (
        f"spent {spent} is more than {stranded_max} (in-flight reservations) below the quota {quota_tokens}"
    )
    assert stack.dropped_usage_records() == {p.proxy_id: 0 for p in stack.proxies}


# ---------------------------------------------------------------------------- 2. restart

RESTART_USERS = 4
RESTART_QUOTA = 50_000_000
# Small leases (at most 3,000 tokens per user per proxy), so that during the outage the
# proxies first serve from what their leases still hold, then run dry and answer 503.
RESTART_LEASE_TOKENS = 3_000


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_control_plane_killed_mid_load_and_restarted_loses_and_doubles_nothing(make_stack, backend):
    stack = make_stack(
        backend, lease_request_tokens=RESTART_LEASE_TOKENS, env_overrides={"RUST_LOG": USAGE_LOG_LEVEL}
    )
    admin_key = new_admin(stack)
    users = [create_user(stack, admin_key, RESTART_QUOTA, tag=f"restart{i}") for i in range(RESTART_USERS)]
    user_ids = [u["id"] for u in users]
    # Every user through every proxy: 8 clients.
    clients = [(proxy, u["api_key"]) for u in users for proxy in stack.proxies]

    disturbed_at: list[float] = []
    unexpected: list[str] = []

    def on_answer(index: int, status: int, body: dict) -> bool:
        if status == 200:
            return True
        code = (body.get("error") or {}).get("code") if isinstance(body.get("error"), dict) else None
        if not (disturbed_at and status == 503 and code == "governance_unavailable"):
            unexpected.append(f"client {index}: {status} {code} {str(body)[:200]}")
        return True

    load = LoadGenerator(clients, on_answer, pause_s=0.002, max_seconds=40).start()
    try:
        time.sleep(1.5)  # steady load, leases warm on both proxies
        # Freeze the control plane longer than the filters' 2 s call timeout: the batches
        # it already received are applied when it thaws, but were never acknowledged, so
        # the filters resend them — the control plane must count them once.
        disturbed_at.append(time.monotonic())
        stack.freeze_control_plane()
        time.sleep(3.0)
        stack.thaw_control_plane()
        time.sleep(1.5)
        kill = time.monotonic()
        stack.kill_control_plane()
        time.sleep(3.0)  # outage under load
        restart_began = time.monotonic()
        stack.restart_control_plane()
        restarted_at = time.monotonic()
        time.sleep(3.0)  # load after recovery
    finally:
        stack.thaw_control_plane()
        load.stop()
    assert load.join(30)
    assert not load.errors(), load.errors()[:5]
    assert not unexpected, unexpected[:5]

    timeline = [(t, s) for tally in load.tallies for (t, s) in tally.timeline]
    before = [s for t, s in timeline if t < disturbed_at[0]]
    outage = [s for t, s in timeline if kill <= t < restart_began]
    after = [s for t, s in timeline if t >= restarted_at + 1.5]
    served = load.total_tokens()
    provider = stack.provider_stats()

    # Ledger == what the provider served, once the filters' retried batches land.
    def ledger() -> int:
        return sum(used_by_user(stack, admin_key, user_ids).values())

    settled = wait_until(lambda: ledger() == provider["total_tokens_reported"], timeout=30, interval=0.25)
    charged = ledger()
    time.sleep(2.0)  # more ticks, more retries: nothing may be charged twice
    charged_later = ledger()
    batches = stack.usage_batches_logged()
    print(
        f"\n[restart/{backend}] usage batches applied={sum(b.get('applied', 0) for b in batches)} "
        f"duplicates={sum(b.get('duplicates', 0) for b in batches)} in {len(batches)} batches; "
        f"before_freeze={len(before)} (200s {before.count(200)}) "
        f"outage={len(outage)} (200s {outage.count(200)}, 503s {outage.count(503)}) "
        f"after_restart={len(after)} (200s {after.count(200)}) statuses={dict(load.statuses())} "
        f"provider_total_tokens={provider['total_tokens_reported']} client_tally={served} "
        f"ledger={charged} ledger_2s_later={charged_later} "
        f"dropped={stack.dropped_usage_records()}"
    )
    assert settled, f"ledger {charged} ≠ provider {provider['total_tokens_reported']} after 30 s"
    assert charged_later == charged == provider["total_tokens_reported"]
    assert served == provider["total_tokens_reported"], (served, provider)
    assert provider["aborted"] == 0, provider
    assert stack.dropped_usage_records() == {p.proxy_id: 0 for p in stack.proxies}
    # The scenario really happened: traffic before, leases served during the outage, and
    # traffic recovered after the restart.
    assert before.count(200) > 0 and after.count(200) > 0, (len(before), len(after))
    assert outage.count(200) > 0, "no request was served from the unexpired leases during the outage"
    assert set(after) == {200}, "requests still refused 1.5 s after the control plane came back"


# ---------------------------------------------------------------------------- 3. revocation

REFUSAL_DEADLINE_S = 5.0


def test_revoked_key_and_suspended_user_are_refused_on_every_proxy_within_5s(make_stack):
    stack = make_stack()
    admin_key = new_admin(stack)
    revoked = create_user(stack, admin_key, 1_000_000, tag="revoked")
    suspended = create_user(stack, admin_key, 1_000_000, tag="suspended")

    # Warm leases for both users on both proxies.
    for proxy in stack.proxies:
        for user in (revoked, suspended):
            for _ in range(3):
                response = chat_on(proxy, user["api_key"])
                assert response.status_code == 200, response.text
                assert response.json()["usage"]["total_tokens"] == HELLO_TOKENS

    changed_at: dict[str, float] = {}
    change_ready = threading.Event()
    results: dict[tuple[str, str], dict] = {}
    cases = [
        (proxy, "revoked", revoked["api_key"], 401, "invalid_api_key") for proxy in stack.proxies
    ] + [(proxy, "suspended", suspended["api_key"], 403, "user_suspended") for proxy in stack.proxies]

    def poll(proxy, what: str, key: str, status: int, code: str) -> None:
        result = results.setdefault((proxy.proxy_id, what), {"served_after_change": 0, "other": []})
        change_ready.wait(30)
        t0 = changed_at[what]
        deadline = t0 + REFUSAL_DEADLINE_S + 3.0  # look a little longer, to report the delay
        while time.monotonic() < deadline:
            response = chat_on(proxy, key, timeout=10)
            now = time.monotonic()
            if response.status_code == status and error_code(response) == code:
                result["delay"] = now - t0
                # Refused for good: the next answers are refusals too.
                result["then"] = [(r.status_code, error_code(r)) for r in (chat_on(proxy, key) for _ in range(3))]
                return
            if response.status_code == 200:
                result["served_after_change"] += 1
            else:
                result["other"].append((response.status_code, response.text[:200]))
            time.sleep(0.05)

    threads = [threading.Thread(target=poll, args=case, daemon=True) for case in cases]
    for thread in threads:
        thread.start()

    changed_at["revoked"] = time.monotonic()
    response = requests.delete(
        f"{stack.envoy_url}/v1/admin/users/{revoked['id']}/keys", headers=admin_headers(admin_key), timeout=10
    )
    assert response.status_code == 200, response.text
    assert response.json()["revoked"] >= 1, response.text
    changed_at["suspended"] = time.monotonic()
    response = requests.put(
        f"{stack.envoy_url}/v1/admin/users/{suspended['id']}",
        headers=admin_headers(admin_key),
        json={"status": "suspended"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "suspended", response.text
    change_ready.set()
    for thread in threads:
        thread.join(30)

    summary = {
        f"{proxy_id}/{what}": (round(r["delay"], 2) if "delay" in r else None, r["served_after_change"])
        for (proxy_id, what), r in sorted(results.items())
    }
    print(f"\n[revocation] delay_s, requests_served_meanwhile per proxy/user: {summary}")
    for proxy, what, _key, status, code in cases:
        result = results[(proxy.proxy_id, what)]
        assert not result["other"], (proxy.proxy_id, what, result["other"][:3])
        assert "delay" in result, f"{proxy.proxy_id}: {what} still served {REFUSAL_DEADLINE_S + 3} s after the change"
        assert result["delay"] <= REFUSAL_DEADLINE_S, (proxy.proxy_id, what, result["delay"])
        assert result["then"] == [(status, code)] * 3, (proxy.proxy_id, what, result["then"])


def test_a_proxy_drained_before_it_stops_has_reported_all_its_usage(make_stack):
    """Records wait up to ALFRED_REPORT_INTERVAL_MS (1 s) for a fuller batch. The stop
    procedure of docs/lease-protocol.md (drain the listeners, wait the report delay,
    then SIGTERM) must leave nothing unreported: with no more traffic, the queued
    records still go, and the ledger, read through the other proxy, equals what the
    provider served."""
    stack = make_stack()
    admin_key = new_admin(stack)
    user = create_user(stack, admin_key, 1_000_000, tag="stopping")
    leaving = stack.proxies[1]
    before = stack.provider_stats()
    for _ in range(20):
        response = chat_on(leaving, user["api_key"])
        assert response.status_code == 200, response.text
    served = stack.provider_stats()["total_tokens_reported"] - before["total_tokens_reported"]
    assert served == 20 * HELLO_TOKENS
    assert quota(stack, user["api_key"])["used_tokens"] < served, (
        "already reported before the drain: the test would prove nothing"
    )

    drain = requests.post(f"{leaving.admin_url}/drain_listeners?graceful", timeout=5)
    assert drain.status_code == 200, drain.text
    settled = wait_until(
        lambda: quota(stack, user["api_key"])["used_tokens"] == served, timeout=REPORTED_WITHIN_S + 1
    )
    used = quota(stack, user["api_key"])["used_tokens"]
    assert settled, f"ledger {used} ≠ {served} served {REPORTED_WITHIN_S + 1} s into the drain"

    leaving.process.stop(timeout=10)
    stack.processes.remove(leaving.process)  # stopped on purpose, not died
    assert leaving.process.popen.returncode == 0, leaving.process.log_tail()
    assert quota(stack, user["api_key"])["used_tokens"] == served
