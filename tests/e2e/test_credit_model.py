"""The credit model through the real stack: a team pool funds a member once their
personal quota is spent, X-Priority: critical overdraws past it (audited), and
transfers move credit between users and show in the admin history and its CSV."""

import csv
import io
import time

import requests

from helpers import MODEL, REPORTED_WITHIN_S, chat, create_user, new_admin, quota, unique_email

HELLO_TOKENS = 28  # what the local provider reports for the default "Hello!" chat


def _admin(stack, key, method, path, **kwargs):
    response = requests.request(
        method, f"{stack.envoy_url}{path}", headers={"X-API-Key": key}, timeout=10, **kwargs
    )
    assert response.status_code < 300, f"{method} {path}: {response.status_code} {response.text}"
    return response


def _settled(stack, key, timeout=10.0):
    """Polls the quota until two reads agree that are far enough apart for any report
    to have landed between them."""
    deadline = time.monotonic() + timeout
    last = quota(stack, key)
    while time.monotonic() < deadline:
        time.sleep(REPORTED_WITHIN_S)
        current = quota(stack, key)
        if current == last:
            return current
        last = current
    return last


def test_pool_after_personal_then_critical_overdraft(stack):
    admin_key = new_admin(stack)
    user = create_user(stack, admin_key, personal_quota=HELLO_TOKENS, tag="pool")
    team = _admin(stack, admin_key, "POST", "/v1/admin/teams",
                  json={"name": unique_email("team"), "common_pool": 1000}).json()
    _admin(stack, admin_key, "POST", f"/v1/admin/teams/{team['id']}/members/{user['id']}?is_admin=false")
    q = quota(stack, user["api_key"])
    # One active member: the whole pool per period, 10 % (100) per day.
    assert (q["available_quota"], q["team_pool_available"]) == (HELLO_TOKENS, 100)

    served = 0
    for _ in range(12):
        response = chat(stack, user["api_key"])
        if response.status_code != 200:
            assert response.status_code == 429, response.text
            assert response.json()["error"]["code"] == "insufficient_quota"
            break
        served += 1
    else:
        raise AssertionError("the pool's daily share never ran out")
    # Personal first, then the daily pool share: 28 + 100 tokens. A request admitted on
    # an estimate may overrun its reservation by less than one request
    # (docs/overspend.md); what it used past the grant is recorded as debt.
    assert 2 <= served <= (HELLO_TOKENS + 100) // HELLO_TOKENS + 1, served
    q = _settled(stack, user["api_key"])
    assert q["used_tokens"] == served * HELLO_TOKENS
    assert q["available_quota"] == 0
    assert q["team_pools"][0]["drawn_today"] <= 100
    assert q["debt"] == max(served * HELLO_TOKENS - (HELLO_TOKENS + 100), 0)

    # Critical requests overdraw, on their own lease; the use is audited.
    response = chat(stack, user["api_key"], headers={"X-Priority": "critical"})
    assert response.status_code == 200, response.text
    assert response.json()["usage"]["total_tokens"] == HELLO_TOKENS
    q = _settled(stack, user["api_key"])
    assert q["used_tokens"] == (served + 1) * HELLO_TOKENS
    assert q["overdraft_used"] >= HELLO_TOKENS
    audit = _admin(stack, admin_key, "GET", "/v1/admin/audit?action=overdraft.use").json()
    assert any(entry["target_id"] == str(user["id"]) for entry in audit), audit
    # Normal requests are still refused.
    assert chat(stack, user["api_key"]).status_code == 429

    ledger = _admin(stack, admin_key, "GET", "/v1/admin/ledger/check").json()
    assert ledger["clean"], ledger


def test_transfer_moves_credit_and_shows_in_history(stack):
    admin_key = new_admin(stack)
    ann = create_user(stack, admin_key, personal_quota=1000, tag="ann")
    bob = create_user(stack, admin_key, personal_quota=0, tag="bob")
    assert chat(stack, bob["api_key"]).status_code == 429

    response = requests.post(
        f"{stack.envoy_url}/v1/users/me/transfer",
        headers={"Authorization": f"Bearer {ann['api_key']}"},
        json={"recipient_email": bob["email"], "amount": 500, "reason": "Project deadline support"},
        timeout=10,
    )
    assert response.status_code == 201, response.text
    assert response.json()["status"] == "completed"
    assert quota(stack, bob["api_key"])["available_quota"] == 500
    assert quota(stack, ann["api_key"])["available_quota"] == 500

    # Bob can spend it once the refusal cached by the proxy is re-checked.
    deadline = time.monotonic() + 10
    while (status := chat(stack, bob["api_key"]).status_code) != 200 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert status == 200

    notes = requests.get(
        f"{stack.envoy_url}/v1/users/me/notifications",
        headers={"Authorization": f"Bearer {bob['api_key']}"}, timeout=10,
    ).json()
    assert notes[0]["kind"] == "transfer_received"

    csv_text = _admin(stack, admin_key, "GET", f"/v1/admin/transfers?user_id={ann['id']}&format=csv").text
    rows = list(csv.DictReader(io.StringIO(csv_text)))
    assert len(rows) == 1
    assert (rows[0]["sender_email"], rows[0]["recipient_email"], rows[0]["amount"], rows[0]["status"]) == (
        ann["email"], bob["email"], "500", "completed"
    )
