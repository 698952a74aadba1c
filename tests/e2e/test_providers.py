"""Every provider, streamed and not, through real Envoy: the official SDKs get what the
provider sent, the ledger records exactly the usage the provider reported (quota totals
and, on SQLite, the one usage record per request), no client key reaches the provider,
quota exhaustion raises each SDK's own exception after one request with default retry
settings, and a stream the client abandons is still charged (marked estimated).
"""

from __future__ import annotations

import time

import anthropic
import botocore.exceptions
import ollama
import openai
import pytest
import requests
from google.genai import errors as genai_errors

from helpers import REPLY_TEXT, REPORTED_WITHIN_S, REQUEST_TIMEOUT, create_user, new_admin, quota, wait_for_used
from providers import (
    BEDROCK_MODEL,
    COMPLETION,
    GEMINI_MODEL,
    HELLO,
    PROMPT,
    RAW_APIS,
    RAW_PROVIDER,
    TOTAL,
    anthropic_client,
    azure_client,
    bedrock_client,
    genai_client,
    ollama_client,
    openai_client,
    raw_request,
)

ENVOY_REQUESTS = "http.alfred.downstream_rq_total"


@pytest.fixture(scope="module")
def admin_key(sqlite_stack):
    return new_admin(sqlite_stack)


@pytest.fixture
def user(stack, admin_key):
    return create_user(stack, admin_key, 100_000, "provider")


def charged_exactly(stack, user, provider: str, calls: list, expected: int) -> list:
    """Runs `calls`, each one request of `expected` tokens; checks the provider reported
    that, the quota shows it, the records say it (SQLite), and nothing leaked."""
    before = stack.provider_stats()
    results = [call() for call in calls]
    after = stack.provider_stats()
    total = expected * len(calls)
    assert after["completed"] - before["completed"] == len(calls)
    assert after["total_tokens_reported"] - before["total_tokens_reported"] == total
    assert after["leaked_client_keys"] == 0
    q = wait_for_used(stack, user["api_key"], total)
    assert q["used_tokens"] == total, q
    records = stack.usage_records(user["id"])
    if records is not None:
        assert [(r["provider"], r["total_tokens"], r["estimated"]) for r in records] == [
            (provider, expected, False)
        ] * len(calls), records
    # Nothing is charged twice: once any report could have landed, nothing changed.
    time.sleep(REPORTED_WITHIN_S)
    assert quota(stack, user["api_key"])["used_tokens"] == total
    return results


# ---------------------------------------------------------------- OpenAI family


def test_openai_chat_responses_and_completions(stack, user):
    client = openai_client(stack, user["api_key"])
    chat, response, streamed, completion = charged_exactly(
        stack,
        user,
        "openai",
        [
            lambda: client.chat.completions.create(model="gpt-4o-mini", messages=HELLO),
            lambda: client.responses.create(model="gpt-4o-mini", input="Hello!"),
            lambda: _final_response(client),
            lambda: client.completions.create(model="gpt-3.5-turbo-instruct", prompt="Hello!"),
        ],
        TOTAL,
    )
    assert chat.choices[0].message.content == REPLY_TEXT
    assert (chat.usage.prompt_tokens, chat.usage.completion_tokens) == (PROMPT, COMPLETION)
    assert response.output_text == REPLY_TEXT
    assert (response.usage.input_tokens, response.usage.output_tokens) == (PROMPT, COMPLETION)
    assert streamed.output_text == REPLY_TEXT and streamed.usage.total_tokens == TOTAL
    assert completion.choices[0].text == REPLY_TEXT and completion.usage.total_tokens == TOTAL


def _final_response(client):
    with client.responses.stream(model="gpt-4o-mini", input="Hello!") as stream:
        return stream.get_final_response()


def test_openai_embeddings(stack, user):
    client = openai_client(stack, user["api_key"])
    # Embeddings cost the input's words: 3 + 2.
    (result,) = charged_exactly(
        stack, user, "openai",
        [lambda: client.embeddings.create(model="text-embedding-3-small", input=["Hello there world", "again now"])],
        5,
    )
    assert [d.index for d in result.data] == [0, 1] and len(result.data[0].embedding) == 8
    assert result.usage.prompt_tokens == 5


@pytest.mark.parametrize("include_usage", [False, True])
def test_openai_chat_stream(stack, user, include_usage):
    client = openai_client(stack, user["api_key"])
    kwargs = {"stream_options": {"include_usage": True}} if include_usage else {}

    def run():
        return list(client.chat.completions.create(model="gpt-4o-mini", messages=HELLO, stream=True, **kwargs))

    (chunks,) = charged_exactly(stack, user, "openai", [run], TOTAL)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == REPLY_TEXT
    usage = [c.usage for c in chunks if c.usage is not None]
    assert [u.total_tokens for u in usage] == ([TOTAL] if include_usage else [])


def test_azure_openai(stack, user):
    client = azure_client(stack, user["api_key"])
    (chat, chunks) = charged_exactly(
        stack, user, "azure",
        [
            lambda: client.chat.completions.create(model="my-gpt-deployment", messages=HELLO),
            lambda: list(client.chat.completions.create(model="my-gpt-deployment", messages=HELLO, stream=True)),
        ],
        TOTAL,
    )
    assert chat.choices[0].message.content == REPLY_TEXT and chat.usage.total_tokens == TOTAL
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == REPLY_TEXT
    assert stack.provider_stats()["last_headers"]["auth"] == {
        "api-key": {"starts_with_tp": False, "matches_expected": True}
    }


@pytest.mark.parametrize("name,path", [("vllm", "/vllm/v1"), ("ollama", "/ollama/v1")])
def test_openai_compatible_self_hosted(stack, user, name, path):
    client = openai_client(stack, user["api_key"], path)
    chat, chunks = charged_exactly(
        stack, user, name,
        [
            lambda: client.chat.completions.create(model="llama-3.1-8b", messages=HELLO),
            lambda: list(client.chat.completions.create(model="llama-3.1-8b", messages=HELLO, stream=True)),
        ],
        TOTAL,
    )
    assert chat.usage.total_tokens == TOTAL
    assert [c.usage for c in chunks if c.usage is not None] == [], "the client did not ask for usage"
    auth = stack.provider_stats()["last_headers"]["auth"]
    if name == "vllm":  # VLLM_API_KEY is set in the tests
        assert auth == {"authorization": {"starts_with_tp": False, "matches_expected": True}}
    else:  # keyless in-mesh Ollama: no credential at all
        assert auth == {}


# ---------------------------------------------------------------- Anthropic


def test_anthropic_messages_and_stream(stack, user):
    client = anthropic_client(stack, user["api_key"])

    def stream():
        with client.messages.stream(model="claude-haiku-4-5", max_tokens=1024, messages=HELLO) as s:
            text = "".join(s.text_stream)
            return text, s.get_final_message()

    message, (text, final) = charged_exactly(
        stack, user, "anthropic",
        [lambda: client.messages.create(model="claude-haiku-4-5", max_tokens=1024, messages=HELLO), stream],
        TOTAL,
    )
    assert message.content[0].text == REPLY_TEXT
    assert (message.usage.input_tokens, message.usage.output_tokens) == (PROMPT, COMPLETION)
    assert text == REPLY_TEXT
    assert (final.usage.input_tokens, final.usage.output_tokens) == (PROMPT, COMPLETION)


# ---------------------------------------------------------------- Gemini


@pytest.mark.parametrize("api_version", [None, "v1"])
def test_gemini_generate_and_stream(stack, user, api_version):
    client = genai_client(stack, user["api_key"], api_version)
    response, chunks = charged_exactly(
        stack, user, "gemini",
        [
            lambda: client.models.generate_content(model=GEMINI_MODEL, contents="Hello!"),
            lambda: list(client.models.generate_content_stream(model=GEMINI_MODEL, contents="Hello!")),
        ],
        TOTAL,
    )
    assert response.text == REPLY_TEXT
    meta = response.usage_metadata
    assert (meta.prompt_token_count, meta.candidates_token_count, meta.total_token_count) == (PROMPT, COMPLETION, TOTAL)
    assert "".join(c.text or "" for c in chunks) == REPLY_TEXT
    assert chunks[-1].usage_metadata.total_token_count == TOTAL


# ---------------------------------------------------------------- Bedrock


def test_bedrock_converse_and_stream(stack, user):
    client = bedrock_client(stack, user["api_key"])
    messages = [{"role": "user", "content": [{"text": "Hello!"}]}]

    def stream():
        return list(client.converse_stream(modelId=BEDROCK_MODEL, messages=messages)["stream"])

    response, events = charged_exactly(
        stack, user, "bedrock",
        [lambda: client.converse(modelId=BEDROCK_MODEL, messages=messages), stream],
        TOTAL,
    )
    assert response["output"]["message"]["content"][0]["text"] == REPLY_TEXT
    assert response["usage"] == {"inputTokens": PROMPT, "outputTokens": COMPLETION, "totalTokens": TOTAL}
    text = "".join(e["contentBlockDelta"]["delta"]["text"] for e in events if "contentBlockDelta" in e)
    assert text == REPLY_TEXT
    assert events[-1]["metadata"]["usage"]["totalTokens"] == TOTAL
    # Envoy signed the request (SigV4) after Alfred swapped the client's bearer key out.
    assert stack.provider_stats()["last_headers"]["auth"] == {
        "authorization": {"starts_with_tp": False, "matches_expected": True}
    }


# ---------------------------------------------------------------- Ollama


def test_ollama_chat_stream_and_generate(stack, user):
    client = ollama_client(stack, user["api_key"])
    chat, parts, generated = charged_exactly(
        stack, user, "ollama",
        [
            lambda: client.chat(model="llama3.2", messages=HELLO),
            lambda: list(client.chat(model="llama3.2", messages=HELLO, stream=True)),
            lambda: client.generate(model="llama3.2", prompt="Hello!"),
        ],
        TOTAL,
    )
    assert chat.message.content == REPLY_TEXT
    assert (chat.prompt_eval_count, chat.eval_count) == (PROMPT, COMPLETION)
    assert "".join(p.message.content for p in parts) == REPLY_TEXT
    assert (parts[-1].prompt_eval_count, parts[-1].eval_count) == (PROMPT, COMPLETION)
    assert generated.response == REPLY_TEXT
    assert stack.provider_stats()["last_headers"]["auth"] == {}


# ---------------------------------------------------------------- every wire format, odd chunks


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("api", sorted(RAW_APIS))
def test_every_format_split_at_odd_bytes_is_charged_exactly(stack, user, api, stream):
    """Bodies cut into 7-byte writes (events and UTF-8 characters split) still give the
    exact usage, for every API, streamed or not."""
    path, headers, body = raw_request(api, user["api_key"], stream)
    headers["x-local-provider-chunk-bytes"] = "7"

    def call():
        response = requests.post(f"{stack.envoy_url}{path}", json=body, headers=headers, timeout=REQUEST_TIMEOUT)
        assert response.status_code == 200, response.text
        return response

    (response,) = charged_exactly(stack, user, RAW_PROVIDER[api], [call], TOTAL)
    if not stream:
        assert REPLY_TEXT.encode() in response.content


# ---------------------------------------------------------------- quota exhaustion


def _exhaust_openai(stack, key):
    openai_client(stack, key).chat.completions.create(model="gpt-4o-mini", messages=HELLO)


def _exhaust_anthropic(stack, key):
    anthropic_client(stack, key).messages.create(model="claude-haiku-4-5", max_tokens=64, messages=HELLO)


def _exhaust_gemini(stack, key):
    client = genai_client(stack, key)
    client.models.generate_content(model=GEMINI_MODEL, contents="Hello!")


def _exhaust_bedrock(stack, key):
    bedrock_client(stack, key).converse(modelId=BEDROCK_MODEL, messages=[{"role": "user", "content": [{"text": "Hello!"}]}])


def _exhaust_ollama(stack, key):
    ollama_client(stack, key).chat(model="llama3.2", messages=HELLO)


def _exhaust_azure(stack, key):
    azure_client(stack, key).chat.completions.create(model="my-gpt-deployment", messages=HELLO)


def _is_bedrock_quota(err):
    # boto3's modelled bedrock-runtime error, with Bedrock's status for it (400: botocore
    # retries 429s), not retried.
    return (
        type(err).__name__ == "ServiceQuotaExceededException"
        and err.response["Error"]["Code"] == "ServiceQuotaExceededException"
        and err.response["ResponseMetadata"]["HTTPStatusCode"] == 400
        and err.response["ResponseMetadata"]["RetryAttempts"] == 0
        and err.response["ResponseMetadata"]["HTTPHeaders"]["x-should-retry"] == "false"
    )


EXHAUSTION = {
    "openai": (_exhaust_openai, openai.RateLimitError, lambda e: e.status_code == 429 and e.code == "insufficient_quota"),
    "azure": (_exhaust_azure, openai.RateLimitError, lambda e: e.status_code == 429),
    "anthropic": (_exhaust_anthropic, anthropic.RateLimitError, lambda e: e.status_code == 429),
    "gemini": (_exhaust_gemini, genai_errors.ClientError, lambda e: e.code == 429 and e.status == "RESOURCE_EXHAUSTED"),
    "bedrock": (_exhaust_bedrock, botocore.exceptions.ClientError, _is_bedrock_quota),
    "ollama": (_exhaust_ollama, ollama.ResponseError, lambda e: e.status_code == 429),
}


@pytest.mark.parametrize("sdk", sorted(EXHAUSTION))
def test_exhausted_quota_raises_the_sdks_rate_limit_error_after_one_request(stack, admin_key, sdk):
    call, error_type, check = EXHAUSTION[sdk]
    key = create_user(stack, admin_key, 0, f"exhausted-{sdk}")["api_key"]
    provider_before = stack.provider_stats()["requests"]
    envoy_before = stack.envoy_counter(ENVOY_REQUESTS)
    with pytest.raises(error_type) as caught:
        call(stack, key)  # each SDK with its default retry settings
    assert check(caught.value), repr(caught.value)
    assert stack.envoy_counter(ENVOY_REQUESTS) - envoy_before == 1, "the SDK retried"
    assert stack.provider_stats()["requests"] == provider_before, "a refused request reached the provider"


# ---------------------------------------------------------------- abandoned streams


def wait_for_charge(stack, key, timeout=10.0) -> int:
    deadline = time.monotonic() + timeout
    used = quota(stack, key)["used_tokens"]
    while used == 0 and time.monotonic() < deadline:
        time.sleep(0.1)
        used = quota(stack, key)["used_tokens"]
    return used


# Anthropic and Gemini streams report usage before the end (`message_start`, running
# `usageMetadata`): a cut stream's report is only a floor, so the filter marks it
# estimated and charges at least the text it saw.
STREAMING_APIS = [
    "anthropic-messages",
    "bedrock-converse",
    "gemini-v1beta",
    "ollama-chat",
    "openai-chat",
    "openai-responses",
]


@pytest.mark.parametrize("api", STREAMING_APIS)
def test_stream_abandoned_by_the_client_is_charged_and_marked_estimated(stack, user, api):
    path, headers, body = raw_request(api, user["api_key"], stream=True)
    # A long, slow reply: the client hangs up after the first bytes, long before the end.
    headers.update({"x-local-provider-reply-words": "400", "x-local-provider-delay-ms": "20"})
    with requests.post(f"{stack.envoy_url}{path}", json=body, headers=headers, stream=True, timeout=REQUEST_TIMEOUT) as r:
        assert r.status_code == 200
        next(r.iter_content(chunk_size=64))
    used = wait_for_charge(stack, user["api_key"])
    assert 0 < used < 400 + 10, used
    records = stack.usage_records(user["id"])
    if records is not None:
        assert len(records) == 1 and records[0]["estimated"] is True, records
        assert records[0]["total_tokens"] == used


def test_openai_sdk_stream_closed_early_is_charged(stack, user):
    client = openai_client(stack, user["api_key"], default_headers={
        "x-local-provider-reply-words": "400", "x-local-provider-delay-ms": "20"})
    stream = client.chat.completions.create(model="gpt-4o-mini", messages=HELLO, stream=True)
    first = next(iter(stream))
    assert first.choices[0].delta.role == "assistant"
    stream.close()
    used = wait_for_charge(stack, user["api_key"])
    assert used > 0
    records = stack.usage_records(user["id"])
    if records is not None:
        assert [r["estimated"] for r in records] == [True]
