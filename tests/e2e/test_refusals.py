"""Requests Alfred refuses before anything reaches a provider."""

import openai
import pytest
import requests

from helpers import MODEL, assert_openai_error, chat, client, create_user, new_admin, quota, wait_for_used


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Bearer tp-0000000000000000000000000000000000000000"},  # well-formed, unknown
        {"Authorization": "Bearer tp-"},  # prefix only
        {"Authorization": "Bearer sk-not-an-alfred-key"},  # not a tp- key
        {"Authorization": "Basic dXNlcjpwYXNz"},  # wrong scheme
        {"X-API-Key": "tp-unknown-key-in-x-api-key"},
        {},  # no key at all
    ],
    ids=["unknown", "prefix-only", "not-tp", "basic-auth", "x-api-key-unknown", "missing"],
)
def test_unknown_or_malformed_key_is_401_and_not_forwarded(stack, headers):
    before = stack.provider_stats()
    response = chat(stack, None, headers=headers)
    assert_openai_error(response, 401, "invalid_api_key")
    assert stack.provider_stats()["requests"] == before["requests"]


def test_unknown_key_raises_the_sdk_authentication_error(stack):
    before = stack.provider_stats()
    with pytest.raises(openai.AuthenticationError) as raised:
        client(stack, "tp-unknown-but-well-formed-key-000000").chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "Hello!"}]
        )
    assert raised.value.status_code == 401
    assert raised.value.code == "invalid_api_key"
    assert stack.provider_stats()["requests"] == before["requests"]


def test_quota_exhausted_is_429_without_retries(stack):
    admin_key = new_admin(stack)
    user = create_user(stack, admin_key, personal_quota=20, tag="small")
    before = stack.provider_stats()

    first = client(stack, user["api_key"]).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Hello!"}]
    )
    assert first.usage.total_tokens == 28
    q = wait_for_used(stack, user["api_key"], 28)
    assert q["used_tokens"] == 28
    assert q["available_quota"] == 0

    refused = chat(stack, user["api_key"])
    error = assert_openai_error(refused, 429, "insufficient_quota")
    assert error["type"], error
    assert error.get("budget_scope") == "personal", error
    assert refused.headers.get("x-should-retry") == "false"
    retry_after = refused.headers.get("retry-after")
    assert retry_after is not None and retry_after.isdigit() and int(retry_after) > 0, refused.headers

    # The SDK, even allowed to retry, makes exactly one attempt and raises.
    completed = stack.envoy_counter("http.alfred.downstream_rq_completed")
    with pytest.raises(openai.RateLimitError) as raised:
        client(stack, user["api_key"], max_retries=2).chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "Hello!"}]
        )
    assert raised.value.code == "insufficient_quota"
    assert stack.envoy_counter("http.alfred.downstream_rq_completed") - completed == 1

    # Only the first request ever reached the provider; nothing more was charged.
    assert stack.provider_stats()["requests"] - before["requests"] == 1
    assert quota(stack, user["api_key"])["used_tokens"] == 28


def test_internal_routes_are_not_exposed(stack):
    before = stack.provider_stats()
    token_header = {"Authorization": "Bearer " + stack.filter_token}
    for method, path in [
        ("POST", "/internal/v1/leases"),
        ("POST", "/internal/v1/usage"),
        ("GET", "/internal/v1/leases"),
        ("GET", "/v2/anything"),
    ]:
        response = requests.request(method, stack.envoy_url + path, headers=token_header, json={}, timeout=10)
        assert response.status_code == 404, (path, response.status_code, response.text)
        assert response.json()["error"]["type"], response.text
    assert stack.provider_stats()["requests"] == before["requests"]


def test_control_plane_health_through_the_front_door(stack):
    assert requests.get(stack.envoy_url + "/healthz", timeout=10).status_code == 200
    assert requests.get(stack.envoy_url + "/readyz", timeout=10).status_code == 200
