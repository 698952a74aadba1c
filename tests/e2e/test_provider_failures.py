"""What the provider does wrong reaches the client unchanged and costs nothing."""

import time

from helpers import REPORTED_WITHIN_S, chat, create_user, new_admin, quota


def test_provider_error_passes_through_and_is_not_charged(stack):
    admin_key = new_admin(stack)
    user = create_user(stack, admin_key, personal_quota=5000, tag="provider-error")
    before = stack.provider_stats()
    response = chat(stack, user["api_key"], headers={"x-local-provider-fail": "500"})
    assert response.status_code == 500, response.text
    assert response.json()["error"]["type"] == "server_error"
    after = stack.provider_stats()
    assert after["injected_failures"] - before["injected_failures"] == 1
    time.sleep(REPORTED_WITHIN_S)  # its record has been reported
    q = quota(stack, user["api_key"])
    assert q["used_tokens"] == 0
    assert q["available_quota"] == 5000
