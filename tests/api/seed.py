"""Seeds a fresh control plane so schemathesis reaches past the 404s: a member and a
team admin in a team, completed and pending transfers, pending quota requests, a lease
and usage records. Ids are small (1–6), the ones tests/api/schemathesis.toml biases path
parameters towards.

    python tests/api/seed.py URL ADMIN_KEY FILTER_TOKEN

The control plane must run with TRANSFER_APPROVAL_THRESHOLD=1000 (pending transfers).
"""

from __future__ import annotations

import hashlib
import sys

import requests


def main() -> None:
    url, admin_key, filter_token = sys.argv[1:4]
    s = requests.Session()
    s.headers["X-API-Key"] = admin_key

    def call(method: str, path: str, expect: int, key: str | None = None, **kwargs) -> dict | list:
        headers = {"X-API-Key": key} if key else {}
        response = s.request(method, url + path, headers=headers, timeout=10, **kwargs)
        if response.status_code != expect:
            sys.exit(f"seed: {method} {path} answered {response.status_code}, not {expect}: {response.text}")
        return response.json()

    member = call("POST", "/v1/admin/users", 201, json={"email": "member@example.com", "name": "Member", "personal_quota": 1_000_000})
    lead = call("POST", "/v1/admin/users", 201, json={"email": "lead@example.com", "name": "Lead", "personal_quota": 10_000})
    team = call("POST", "/v1/admin/teams", 201, json={"name": "Seed team", "description": "seeded", "common_pool": 50_000})
    call("POST", f"/v1/admin/teams/{team['id']}/members/{member['id']}", 200)
    call("POST", f"/v1/admin/teams/{team['id']}/members/{lead['id']}?is_admin=true", 200)

    for amount in (10, 5_000, 6_000, 7_000):  # the first completes, the others wait for approval
        call("POST", "/v1/users/me/transfer", 201, key=member["api_key"],
             json={"recipient_email": "lead@example.com", "amount": amount, "reason": "seed"})
    for amount in (100, 200, 300):
        call("POST", "/v1/users/me/quota-requests", 201, key=member["api_key"], json={"amount": amount, "reason": "seed"})

    internal = {"Authorization": f"Bearer {filter_token}"}
    key_hash = hashlib.sha256(member["api_key"].encode()).hexdigest()
    lease = requests.post(url + "/internal/v1/leases", headers=internal, timeout=10,
                          json={"key_hash": key_hash, "proxy_id": "seed-proxy", "requested_tokens": 500})
    if lease.status_code != 200 or lease.json().get("decision") != "granted":
        sys.exit(f"seed: lease answered {lease.status_code}: {lease.text}")
    records = [
        {"request_id": f"seed-{i}", "lease_id": lease.json()["lease_id"], "user_id": member["id"],
         "provider": "openai", "model": "gpt-4o-mini", "input_tokens": 10, "output_tokens": 5, "total_tokens": 15}
        for i in range(3)
    ]
    usage = requests.post(url + "/internal/v1/usage", headers=internal, timeout=10,
                          json={"proxy_id": "seed-proxy", "records": records})
    if usage.status_code != 200:
        sys.exit(f"seed: usage answered {usage.status_code}: {usage.text}")
    print(f"seed: users {member['id']}, {lead['id']}; team {team['id']}; 4 transfers, 3 quota requests, 3 usage records")


if __name__ == "__main__":
    main()
