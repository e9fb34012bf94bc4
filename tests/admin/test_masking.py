"""Secrets in stored plugin configs are masked for the viewer role in every GET and list."""

from __future__ import annotations

from typing import Any

import pytest

from llmgate.admin.auth import AdminKeys
from llmgate.admin.masking import MASK, masked
from llmgate.app import build_admin_app
from llmgate.credentials import SEALED_PREFIX, SSL_KEY_ENV
from tests.net import TestCA
from tests.support import ADMIN_KEY, VIEWER_KEY

PROVIDER_KEY = "sk-live-0123456789"
AI_PROXY = {
    "provider": "openai",
    "auth": {"header": {"Authorization": f"Bearer {PROVIDER_KEY}"}, "query": {"k": "q-secret"}},
    "options": {"model": "gpt-4o"},
}
AI_PROXY_MULTI = {
    "instances": [
        {
            "name": "a",
            "provider": "openai",
            "weight": 1,
            "auth": {"header": {"Authorization": f"Bearer {PROVIDER_KEY}"}},
        },
        {
            "name": "b",
            "provider": "openai",
            "weight": 1,
            "auth": {"header": {"Authorization": "Bearer $env://OPENAI_API_KEY"}},
        },
    ]
}


@pytest.fixture
async def client(aiohttp_client, sqlite_store):  # type: ignore[no-untyped-def]
    return await aiohttp_client(build_admin_app(sqlite_store, AdminKeys(ADMIN_KEY, VIEWER_KEY)))


async def _call(client, method: str, path: str, key: str, body: Any = None) -> tuple[int, Any]:  # type: ignore[no-untyped-def]
    resp = await client.request(
        method, f"/apisix/admin/{path}", json=body, headers={"X-API-KEY": key}
    )
    return resp.status, await resp.json()


async def test_viewer_never_sees_provider_keys(client) -> None:  # type: ignore[no-untyped-def]
    route = {"uri": "/chat", "plugins": {"ai-proxy": AI_PROXY}}
    assert (await _call(client, "PUT", "routes/1", ADMIN_KEY, route))[0] == 201
    multi = {"uri": "/multi", "plugins": {"ai-proxy-multi": AI_PROXY_MULTI}}
    assert (await _call(client, "PUT", "routes/2", ADMIN_KEY, multi))[0] == 201
    consumer = {"username": "jack", "plugins": {"key-auth": {"key": "jack-key"}}}
    assert (await _call(client, "PUT", "consumers", ADMIN_KEY, consumer))[0] == 201
    credential = {"plugins": {"basic-auth": {"username": "j", "password": "pw-123456"}}}
    status, _ = await _call(client, "PUT", "consumers/jack/credentials/c1", ADMIN_KEY, credential)
    assert status == 201

    for path in ("routes", "routes/1", "routes/2", "consumers", "consumers/jack/credentials"):
        status, body = await _call(client, "GET", path, VIEWER_KEY)
        assert status == 200
        text = str(body)
        assert PROVIDER_KEY not in text and "q-secret" not in text
        assert "sha256$" not in text and "$pbkdf2" not in text  # not even digests and hashes

    _, one = await _call(client, "GET", "routes/1", VIEWER_KEY)
    shown = one["value"]["plugins"]["ai-proxy"]
    assert shown["auth"] == {"header": {"Authorization": MASK}, "query": {"k": MASK}}
    assert shown["options"] == {"model": "gpt-4o"}  # only the secret fields
    _, two = await _call(client, "GET", "routes/2", VIEWER_KEY)
    instances = two["value"]["plugins"]["ai-proxy-multi"]["instances"]
    assert instances[0]["auth"]["header"]["Authorization"] == MASK
    # A reference names a variable, not a secret: shown as written.
    assert instances[1]["auth"]["header"]["Authorization"] == "Bearer $env://OPENAI_API_KEY"

    # The admin role sees what is stored.
    _, admin_view = await _call(client, "GET", "routes/1", ADMIN_KEY)
    assert admin_view["value"]["plugins"]["ai-proxy"] == AI_PROXY


async def test_viewer_never_sees_an_ssl_private_key(client, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv(SSL_KEY_ENV, "a test passphrase")
    cert, key = TestCA().issue("api.test")
    body = {"cert": cert, "key": key, "snis": ["api.test"]}
    assert (await _call(client, "PUT", "ssls/1", ADMIN_KEY, body))[0] == 201

    _, listed = await _call(client, "GET", "ssls", VIEWER_KEY)
    _, one = await _call(client, "GET", "ssls/1", VIEWER_KEY)
    for shown in (listed["list"][0]["value"], one["value"]):
        assert "key" not in shown  # not even the sealed form (no GET shows it, as APISIX)
        assert shown["cert"] == cert and shown["snis"] == ["api.test"]
    assert SEALED_PREFIX not in str(listed) + str(one)
    assert "PRIVATE KEY" not in str(listed) + str(one)

    _, admin_view = await _call(client, "GET", "ssls/1", ADMIN_KEY)
    assert "key" not in admin_view["value"]  # nor the admin's


def test_masked_leaves_values_without_secrets_alone() -> None:
    value = {"uri": "/a", "plugins": {"cors": {"allow_origins": "*"}, "unknown": {"key": "x"}}}
    assert masked(value) == value
    assert masked({"uri": "/a"}) == {"uri": "/a"}
    limit = {"plugins": {"limit-count": {"count": 1, "time_window": 1, "redis_password": "pw"}}}
    assert masked(limit)["plugins"]["limit-count"]["redis_password"] == MASK
    assert limit["plugins"]["limit-count"]["redis_password"] == "pw"  # not modified in place
    ssl = {"cert": "c", "key": "$llmgate-sealed$v1$abc", "snis": ["a.test"]}
    assert masked(ssl, ("key",)) == {**ssl, "key": MASK}
    assert masked({"cert": "c"}, ("key",)) == {"cert": "c"}  # an absent field stays absent
    upstream = {"scheme": "https", "tls": {"client_key": "$llmgate-sealed$v1$abc", "verify": True}}
    shown = masked(upstream, ("tls.client_key",))
    assert shown == {"scheme": "https", "tls": {"client_key": MASK, "verify": True}}
    assert masked({"scheme": "https"}, ("tls.client_key",)) == {"scheme": "https"}
