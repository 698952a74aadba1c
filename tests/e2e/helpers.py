"""What the tests compute independently of the gateway, and small HTTP helpers."""

from __future__ import annotations

import time
import uuid

import openai
import requests

from stack import Stack

# The local provider's documented usage rule (tests/local-provider/src/usage.rs):
#   prompt_tokens     = sum over messages of (3 + whitespace-separated words of the text)
#   completion_tokens = words of the fixed reply, cut to max_completion_tokens/max_tokens
REPLY_TEXT = (
    "Hello from the Alfred local provider — this reply is deterministic: "
    "café, naïve, 東京 and 🚀 are here so that parsers meet multi-byte characters."
)
REPLY_WORDS = REPLY_TEXT.split()
MODEL = "gpt-4o-mini"
# Generous for a loaded 2-core CI machine; a healthy request takes milliseconds.
REQUEST_TIMEOUT = 20
# A record reaches the control plane within the filter's report interval (1 s, for a
# batch that is not full) plus one tick (0.2 s): waits that must outlast any report use
# this.
REPORTED_WITHIN_S = 1.5


def expected_usage(messages: list[dict], max_tokens: int | None = None) -> tuple[int, int, int]:
    prompt = sum(3 + len(str(m.get("content", "")).split()) for m in messages)
    completion = len(REPLY_WORDS) if max_tokens is None else min(max_tokens, len(REPLY_WORDS))
    return prompt, completion, prompt + completion


def unique_email(tag: str) -> str:
    return f"{tag}-{uuid.uuid4().hex[:10]}@example.com"


def create_user(stack: Stack, admin_key: str, personal_quota: int, tag: str = "user") -> dict:
    response = requests.post(
        f"{stack.envoy_url}/v1/admin/users",
        headers={"X-API-Key": admin_key},
        json={"email": unique_email(tag), "name": f"E2E {tag}", "personal_quota": personal_quota},
        timeout=10,
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["api_key"].startswith("tp-"), body
    return body


def new_admin(stack: Stack) -> str:
    admin = stack.create_admin(unique_email("admin"))
    assert admin["api_key"].startswith("tp-")
    return admin["api_key"]


def client(stack: Stack, key: str, **kwargs) -> openai.OpenAI:
    kwargs.setdefault("max_retries", 0)
    return openai.OpenAI(base_url=f"{stack.envoy_url}/v1", api_key=key, timeout=REQUEST_TIMEOUT, **kwargs)


def quota(stack: Stack, key: str) -> dict:
    response = requests.get(
        f"{stack.envoy_url}/v1/users/me/quota", headers={"Authorization": f"Bearer {key}"}, timeout=10
    )
    assert response.status_code == 200, response.text
    return response.json()


def wait_for_used(stack: Stack, key: str, used: int, timeout: float = 5.0) -> dict:
    """Usage is reported within REPORTED_WITHIN_S: poll until it shows."""
    deadline = time.monotonic() + timeout
    current = quota(stack, key)
    while current["used_tokens"] != used and time.monotonic() < deadline:
        time.sleep(0.1)
        current = quota(stack, key)
    return current


def assert_stable(stack: Stack, key: str, expected: dict, seconds: float = REPORTED_WITHIN_S) -> None:
    """Nothing is charged twice: once any report could have landed, the numbers are unchanged."""
    time.sleep(seconds)
    assert quota(stack, key) == expected


def assert_openai_error(response: requests.Response, status: int, code: str) -> dict:
    assert response.status_code == status, f"{response.status_code}: {response.text}"
    assert response.headers.get("content-type", "").startswith("application/json"), response.headers
    body = response.json()
    error = body["error"]
    assert isinstance(error["message"], str) and error["message"], body
    assert isinstance(error["type"], str) and error["type"], body
    assert error["code"] == code, body
    return error


def chat(stack: Stack, key: str | None, body: dict | None = None, headers: dict | None = None) -> requests.Response:
    all_headers = {} if key is None else {"Authorization": f"Bearer {key}"}
    all_headers.update(headers or {})
    payload = body or {"model": MODEL, "messages": [{"role": "user", "content": "Hello!"}]}
    return requests.post(f"{stack.envoy_url}/v1/chat/completions", json=payload, headers=all_headers, timeout=REQUEST_TIMEOUT)
