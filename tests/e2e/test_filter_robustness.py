"""The filter under hostile or unusual input, inside real Envoy: it keeps serving.

A panic in the filter would kill the worker's VM and, with FAIL_CLOSED, refuse every
request of that worker; these requests are built to hit the paths where that could
happen (non-UTF-8 header values, huge values, a key in the query string).
"""

import socket

from helpers import chat, create_user, new_admin, wait_for_used


def raw_request(stack, head: bytes, body: bytes) -> bytes:
    host, port = stack.envoy_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(head + b"Content-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return data


def test_non_utf8_header_values_are_served_and_the_vm_survives(stack):
    admin_key = new_admin(stack)
    user = create_user(stack, admin_key, personal_quota=5000, tag="bytes")
    body = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Hello!"}]}'
    for _ in range(4):  # several times, so every worker VM sees one
        head = (
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: alfred\r\n"
            + b"Authorization: Bearer " + user["api_key"].encode() + b"\r\n"
            + b"X-Project-ID: \xff\xfeproj\r\nX-Priority: \xc3\r\nX-Privacy-Mode: \x80\r\n"
            + b"Content-Type: application/json\r\n"
        )
        response = raw_request(stack, head, body)
        assert response.startswith(b"HTTP/1.1 200"), response[:300]
    # The VMs are alive: ordinary requests keep working, and usage was counted.
    assert chat(stack, user["api_key"]).status_code == 200
    wait_for_used(stack, user["api_key"], 5 * 28)


def test_garbage_keys_and_huge_values_are_refused_not_crashing(stack):
    for value in ["Bearer tp-" + "a" * 20_000, "Bearer tp-\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9", "Bearer", ""]:
        response = chat(stack, None, headers={"Authorization": value})
        assert response.status_code == 401, (value[:20], response.status_code)
        assert response.json()["error"]["code"] == "invalid_api_key"


def test_key_in_query_string_is_used_and_never_forwarded(stack):
    admin_key = new_admin(stack)
    user = create_user(stack, admin_key, personal_quota=5000, tag="query")
    import requests

    response = requests.post(
        f"{stack.envoy_url}/v1/chat/completions?key={user['api_key']}",
        json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello!"}]},
        timeout=20,
    )
    assert response.status_code == 200, response.text
    assert stack.provider_stats()["leaked_client_keys"] == 0
    wait_for_used(stack, user["api_key"], 28)
