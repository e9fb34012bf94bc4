"""Random client input against routes using every request-side plugin: never a gateway 5xx."""

from __future__ import annotations

import random

import pytest

GARBAGE_BODIES = [
    b"",
    b"{",
    b"[]",
    b"null",
    b'{"messages": null}',
    b'{"messages": [{"role": 1, "content": {"a": 1}}]}',
    b'{"prompt": ["a", 2, null], "stream": "yes"}',
    b'{"input": {"x": 1}, "model": 5}',
    b'{"template_name": 7}',
    b'{"stream": true, "messages": [{"role": "user", "content": "hi"}]}',
    b"\xff\xfe\xfd",
    b"a=b&c=d",
]
HEADERS = [
    {},
    {"Authorization": "Basic !!!"},
    {"Authorization": "Bearer "},
    {"Authorization": "Basic dTpw"},
    {"apikey": "k1"},
    {"apikey": "k1 k2"},
    {"Content-Type": "application/json"},
    {"Content-Type": "text/plain; charset=bogus"},
    {"Origin": "http://evil.example"},
    {"X-Request-Id": "x" * 300},
    {"Cache-Control": "no-cache, max-age=abc"},
]


@pytest.fixture
async def routes(gateway):  # type: ignore[no-untyped-def]
    fake = f"http://{gateway.fake_address}/v1/chat/completions"
    await gateway.put(
        "consumers",
        {"username": "u", "plugins": {"basic-auth": {"username": "u", "password": "p"}}},
    )
    await gateway.put("consumers", {"username": "k", "plugins": {"key-auth": {"key": "k1"}}})
    await gateway.put(
        "routes/ai",
        {
            "uri": "/ai/*",
            "plugins": {
                "key-auth": {},
                "ai-prompt-guard": {"deny_patterns": ["forbidden"]},
                "ai-prompt-template": {
                    "templates": [
                        {
                            "name": "t",
                            "template": {
                                "model": "m",
                                "messages": [{"role": "user", "content": "{{prompt}}"}],
                            },
                        }
                    ]
                },
                "ai-prompt-decorator": {"prepend": [{"role": "system", "content": "be brief"}]},
                "ai-proxy": {
                    "provider": "openai-compatible",
                    "auth": {"header": {"Authorization": "Bearer x"}},
                    "override": {"endpoint": fake},
                },
                "ai-rate-limiting": {"limit": 1000000, "time_window": 60},
                "cors": {},
                "request-id": {},
            },
        },
    )
    await gateway.put(
        "routes/plain",
        {
            "uri": "/plain/*",
            "upstream": gateway.upstream(),
            "plugins": {
                "basic-auth": {},
                "limit-count": {"count": 100000, "time_window": 60},
                "limit-req": {"rate": 10000, "burst": 10000, "key": "remote_addr"},
                "limit-conn": {
                    "conn": 1000,
                    "burst": 1000,
                    "default_conn_delay": 0.01,
                    "key": "remote_addr",
                },
                "proxy-rewrite": {
                    "regex_uri": ["^/plain/(.*)", "/anything/$1"],
                    "headers": {"set": {"X-A": "$arg_a"}},
                },
                "proxy-cache": {"cache_strategy": "memory", "cache_method": ["GET", "POST"]},
                "response-rewrite": {"headers": {"set": {"X-B": "$http_x_b"}}},
                "consumer-restriction": {"whitelist": ["u"]},
            },
        },
    )
    return gateway


async def test_random_requests_never_get_a_gateway_5xx(routes) -> None:  # type: ignore[no-untyped-def]
    rng = random.Random(20261121)
    paths = ["/ai/v1/chat/completions", "/ai/x", "/plain/a?a=1", "/plain/%zz", "/plain/", "/nope"]
    methods = ["GET", "POST", "PUT", "OPTIONS", "DELETE", "PURGE", "HEAD"]
    statuses = []
    for _ in range(300):
        headers = dict(rng.choice(HEADERS))
        headers.update(rng.choice(HEADERS))
        if rng.random() < 0.5:
            headers["Authorization"] = "Basic dTpw"  # u:p
        resp = await routes.proxy.request(
            rng.choice(methods), rng.choice(paths), data=rng.choice(GARBAGE_BODIES), headers=headers
        )
        await resp.read()
        statuses.append(resp.status)
        assert resp.status < 500, (resp.status, await resp.text())
    assert 200 in statuses and 401 in statuses and 400 in statuses
