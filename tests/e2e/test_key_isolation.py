"""The client key never reaches the provider; the provider credential is swapped in."""

import pytest

from helpers import MODEL, chat, create_user, new_admin, wait_for_used


@pytest.mark.parametrize("header", ["Authorization", "X-API-Key"])
def test_provider_sees_its_credential_never_the_client_key(stack, header):
    admin_key = new_admin(stack)
    user = create_user(stack, admin_key, personal_quota=5000, tag="isolation")
    value = f"Bearer {user['api_key']}" if header == "Authorization" else user["api_key"]
    response = chat(stack, None, headers={header: value})
    assert response.status_code == 200, response.text
    assert response.json()["usage"]["total_tokens"] == 28

    stats = stack.provider_stats()
    assert stats["leaked_client_keys"] == 0
    seen = stats["last_headers"]
    # The provider was started with --expect-key: a 200 already proves the swap; the
    # header record shows it from the provider's side.
    assert seen["auth"]["authorization"] == {"starts_with_tp": False, "matches_expected": True}
    assert "x-api-key" not in seen["names"]
    wait_for_used(stack, user["api_key"], 28)


def test_alfred_headers_are_stripped_before_the_provider(stack):
    admin_key = new_admin(stack)
    user = create_user(stack, admin_key, personal_quota=5000, tag="strip")
    response = chat(
        stack,
        user["api_key"],
        headers={"X-Privacy-Mode": "strict", "X-Priority": "normal", "X-Project-ID": "project-123"},
    )
    assert response.status_code == 200, response.text
    stats = stack.provider_stats()
    names = stats["last_headers"]["names"]
    for name in ("x-privacy-mode", "x-priority", "x-project-id"):
        assert name not in names, names
    # Privacy mode asks OpenAI not to store the exchange.
    assert stats["last_body"]["store"] is False
    assert stats["last_body"]["model"] == MODEL
    wait_for_used(stack, user["api_key"], 28)
