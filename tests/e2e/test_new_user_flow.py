"""The guide's quick start, end to end: admin → user → OpenAI SDK → quota."""

import pytest

from helpers import (
    MODEL,
    REPLY_TEXT,
    assert_stable,
    client,
    create_user,
    expected_usage,
    new_admin,
    wait_for_used,
)


def test_new_user_flow(any_stack):
    stack = any_stack
    admin_key = new_admin(stack)
    user = create_user(stack, admin_key, personal_quota=5000, tag="newuser")
    assert user["personal_quota"] == 5000
    before = stack.provider_stats()

    messages = [{"role": "user", "content": "Hello!"}]
    response = client(stack, user["api_key"]).chat.completions.create(model=MODEL, messages=messages)

    # What the provider reported, checked against the documented rule.
    assert response.choices[0].message.content == REPLY_TEXT
    assert response.model == MODEL
    prompt, completion, total = expected_usage(messages)
    assert (response.usage.prompt_tokens, response.usage.completion_tokens) == (prompt, completion)
    assert response.usage.total_tokens == total == 28

    after = stack.provider_stats()
    assert after["requests"] - before["requests"] == 1
    assert after["completed"] - before["completed"] == 1
    assert after["total_tokens_reported"] - before["total_tokens_reported"] == response.usage.total_tokens

    q = wait_for_used(stack, user["api_key"], response.usage.total_tokens)
    assert q["used_tokens"] == response.usage.total_tokens
    assert q["personal_quota"] == 5000
    assert q["available_quota"] == 5000 - response.usage.total_tokens
    assert_stable(stack, user["api_key"], q)


def test_second_request_is_charged_too(stack):
    admin_key = new_admin(stack)
    user = create_user(stack, admin_key, personal_quota=5000, tag="twice")
    sdk = client(stack, user["api_key"])
    totals = []
    for words in ("one", "two words here"):
        r = sdk.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": words}], max_tokens=5)
        totals.append(r.usage.total_tokens)
    assert totals == [3 + 1 + 5, 3 + 3 + 5]
    q = wait_for_used(stack, user["api_key"], sum(totals))
    assert q["used_tokens"] == 20
    assert q["available_quota"] == 4980
    assert_stable(stack, user["api_key"], q)


def test_responses_carry_alfred_headers(stack):
    admin_key = new_admin(stack)
    user = create_user(stack, admin_key, personal_quota=5000, tag="headers")
    raw = client(stack, user["api_key"]).chat.completions.with_raw_response.create(
        model=MODEL, messages=[{"role": "user", "content": "Hello!"}]
    )
    assert raw.headers.get("x-alfred-request-id"), dict(raw.headers)
    remaining = raw.headers.get("x-alfred-quota-remaining")
    assert remaining is not None and remaining.isdigit(), dict(raw.headers)
    assert int(remaining) <= 5000
    assert raw.parse().usage.total_tokens == 28


@pytest.mark.parametrize("include_usage", [False, True])
def test_streaming_is_charged_exactly(stack, include_usage):
    admin_key = new_admin(stack)
    user = create_user(stack, admin_key, personal_quota=5000, tag="stream")
    before = stack.provider_stats()
    kwargs = {"stream_options": {"include_usage": True}} if include_usage else {}
    stream = client(stack, user["api_key"]).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Stream to me"}], stream=True, **kwargs
    )
    chunks = list(stream)
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert content == REPLY_TEXT
    usage_chunks = [c for c in chunks if c.usage is not None]
    # The filter asks the provider for usage; the client sees a usage chunk only if it asked.
    if include_usage:
        assert len(usage_chunks) == 1 and usage_chunks[0].choices == []
        assert usage_chunks[0].usage.total_tokens == 3 + 3 + 24
    else:
        assert usage_chunks == []
    after = stack.provider_stats()
    assert after["last_body"]["stream_options"]["include_usage"] is True
    reported = after["total_tokens_reported"] - before["total_tokens_reported"]
    assert reported == 30
    q = wait_for_used(stack, user["api_key"], reported)
    assert q["used_tokens"] == 30
    assert q["available_quota"] == 5000 - 30
    assert_stable(stack, user["api_key"], q)


def test_streaming_cut_into_odd_chunks_is_charged_exactly(stack):
    """7-byte writes cut SSE events and multi-byte characters across boundaries."""
    admin_key = new_admin(stack)
    user = create_user(stack, admin_key, personal_quota=5000, tag="chunks")
    sdk = client(stack, user["api_key"], default_headers={"x-local-provider-chunk-bytes": "7"})
    chunks = list(
        sdk.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "split me"}], stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == REPLY_TEXT
    assert [c.usage.total_tokens for c in chunks if c.usage is not None] == [3 + 2 + 24]
    q = wait_for_used(stack, user["api_key"], 29)
    assert q["used_tokens"] == 29
    assert_stable(stack, user["api_key"], q)
