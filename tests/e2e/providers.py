"""Every provider API Alfred meters, as the tests drive it: the official SDK clients
pointed at Alfred, raw requests in each API's wire format, and the expected usage from
the local provider's documented rule (tests/local-provider/README.md).

The SDKs find Alfred the way a user would configure them:

- openai: ``base_url=http://alfred:8000/v1`` (vLLM: ``…/vllm/v1``, Ollama's
  OpenAI-compatible API: ``…/ollama/v1``); Azure: ``AzureOpenAI(azure_endpoint=…)``.
- anthropic: ``base_url=http://alfred:8000``.
- google-genai: ``http_options=HttpOptions(base_url=http://alfred:8000)``.
- boto3 ``bedrock-runtime``: ``endpoint_url=http://alfred:8000``. botocore's own Bedrock
  bearer-token support (``AWS_BEARER_TOKEN_BEDROCK``) sends ``Authorization: Bearer`` only
  to an ``https://`` endpoint, so over plain http the tests send the unsigned request and
  add the header in a ``before-send`` event hook (:func:`bedrock_client`).
- ollama: ``Client(host=http://alfred:8000, headers={"Authorization": "Bearer tp-…"})``.
"""

from __future__ import annotations

import os

import anthropic
import boto3
import botocore
import ollama
import openai
from botocore.config import Config
from google import genai
from google.genai import types as genai_types

from helpers import REQUEST_TIMEOUT
from stack import Stack

HELLO = [{"role": "user", "content": "Hello!"}]
# One message "Hello!": 3 + 1 prompt tokens, the 24-word reply.
PROMPT, COMPLETION, TOTAL = 4, 24, 28
BEDROCK_MODEL = "anthropic.claude-3-5-haiku-20241022-v1:0"
GEMINI_MODEL = "gemini-2.0-flash"


# ---------------------------------------------------------------- SDK clients


def openai_client(stack: Stack, key: str, path: str = "/v1", **kwargs) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{stack.envoy_url}{path}", api_key=key, timeout=REQUEST_TIMEOUT, **kwargs)


def azure_client(stack: Stack, key: str) -> openai.AzureOpenAI:
    return openai.AzureOpenAI(
        azure_endpoint=stack.envoy_url, api_key=key, api_version="2024-10-21", timeout=REQUEST_TIMEOUT
    )


def anthropic_client(stack: Stack, key: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=stack.envoy_url, api_key=key, timeout=REQUEST_TIMEOUT)


def genai_client(stack: Stack, key: str, api_version: str | None = None) -> genai.Client:
    options = genai_types.HttpOptions(base_url=stack.envoy_url, timeout=REQUEST_TIMEOUT * 1000)
    if api_version:
        options.api_version = api_version
    return genai.Client(api_key=key, http_options=options)


def bedrock_client(stack: Stack, key: str):
    """boto3 ``bedrock-runtime`` at Alfred over http, default retry settings.

    Over https, ``AWS_BEARER_TOKEN_BEDROCK=tp-…`` alone is enough (botocore ≥ 1.39 sends
    ``Authorization: Bearer``); botocore refuses bearer auth on an http endpoint, hence
    the unsigned request plus this hook here.
    """
    client = boto3.client(
        "bedrock-runtime",
        endpoint_url=stack.envoy_url,
        region_name="us-east-1",
        aws_access_key_id="unused",
        aws_secret_access_key="unused",
        config=Config(signature_version=botocore.UNSIGNED, read_timeout=REQUEST_TIMEOUT),
    )

    def bearer(request, **_):
        request.headers["Authorization"] = f"Bearer {key}"

    client.meta.events.register("before-send.bedrock-runtime.*", bearer)
    return client


def ollama_client(stack: Stack, key: str) -> ollama.Client:
    return ollama.Client(host=stack.envoy_url, headers={"Authorization": f"Bearer {key}"}, timeout=REQUEST_TIMEOUT)


# ---------------------------------------------------------------- raw wire requests

# name → (path, auth headers builder, body builder, stream body builder or None).
# Streams are asked for the way each API does it (a body flag, a path, a query).


def _bearer(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


RAW_APIS = {
    "openai-chat": ("/v1/chat/completions", _bearer, {"model": "gpt-4o-mini", "messages": HELLO}),
    "openai-completions": ("/v1/completions", _bearer, {"model": "gpt-3.5-turbo-instruct", "prompt": "Hello!"}),
    "openai-responses": ("/v1/responses", _bearer, {"model": "gpt-4o-mini", "input": "Hello!"}),
    "azure-chat": (
        "/openai/deployments/my-gpt/chat/completions?api-version=2024-10-21",
        lambda key: {"api-key": key},
        {"messages": HELLO},
    ),
    "anthropic-messages": (
        "/v1/messages",
        lambda key: {"x-api-key": key, "anthropic-version": "2023-06-01"},
        {"model": "claude-haiku-4-5", "max_tokens": 1024, "messages": HELLO},
    ),
    "gemini-v1beta": (
        f"/v1beta/models/{GEMINI_MODEL}:generateContent",
        lambda key: {"x-goog-api-key": key},
        {"contents": [{"role": "user", "parts": [{"text": "Hello!"}]}]},
    ),
    "gemini-v1": (
        f"/v1/models/{GEMINI_MODEL}:generateContent",
        lambda key: {"x-goog-api-key": key},
        {"contents": [{"role": "user", "parts": [{"text": "Hello!"}]}]},
    ),
    "bedrock-converse": (
        f"/model/{BEDROCK_MODEL}/converse",
        _bearer,
        {"messages": [{"role": "user", "content": [{"text": "Hello!"}]}]},
    ),
    "ollama-chat": ("/api/chat", _bearer, {"model": "llama3.2", "messages": HELLO, "stream": False}),
    "ollama-generate": ("/api/generate", _bearer, {"model": "llama3.2", "prompt": "Hello!", "stream": False}),
    "ollama-openai": ("/ollama/v1/chat/completions", _bearer, {"model": "llama3.2", "messages": HELLO}),
    "vllm-openai": ("/vllm/v1/chat/completions", _bearer, {"model": "meta-llama/Llama-3.1-8B", "messages": HELLO}),
}


def raw_request(name: str, key: str, stream: bool) -> tuple[str, dict, dict]:
    """(path, headers, body) of API `name`, streaming or not."""
    path, headers, body = RAW_APIS[name]
    body = dict(body)
    if stream:
        if name.startswith("gemini"):
            path = path.replace(":generateContent", ":streamGenerateContent") + "?alt=sse"
        elif name == "bedrock-converse":
            path = path.replace("/converse", "/converse-stream")
        else:
            body["stream"] = True
    return path, headers(key), body


# Provider name Alfred records for each raw API.
RAW_PROVIDER = {
    "openai-chat": "openai", "openai-completions": "openai", "openai-responses": "openai",
    "azure-chat": "azure", "anthropic-messages": "anthropic", "gemini-v1beta": "gemini",
    "gemini-v1": "gemini", "bedrock-converse": "bedrock", "ollama-chat": "ollama",
    "ollama-generate": "ollama", "ollama-openai": "ollama", "vllm-openai": "vllm",
}


def unset_aws_env() -> dict[str, str]:
    """AWS variables that would change boto3's behaviour in the tests; removed from this
    process's environment for the test (returned so the caller can restore them)."""
    names = [n for n in os.environ if n.startswith("AWS_")]
    return {n: os.environ.pop(n) for n in names}
