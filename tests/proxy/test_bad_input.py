"""Whatever a client sends, the gateway answers 4xx JSON (or relays), never a 5xx of its own."""

from __future__ import annotations

import asyncio

import pytest


@pytest.fixture
async def routes(gateway):  # type: ignore[no-untyped-def]
    await gateway.put("routes/plain", {"uri": "/plain/*", "upstream": gateway.upstream()})
    await gateway.put(
        "routes/cached",
        {
            "uri": "/cached",
            "upstream": gateway.upstream(),
            "plugins": {"proxy-cache": {"cache_strategy": "memory", "cache_method": ["POST"]}},
        },
    )
    await gateway.put(
        "routes/ai",
        {
            "uri": "/ai",
            "plugins": {
                "ai-proxy": {
                    "provider": "openai-compatible",
                    "auth": {"header": {"Authorization": "Bearer x"}},
                    "override": {"endpoint": f"http://{gateway.fake_address}/v1/chat/completions"},
                }
            },
        },
    )
    return gateway


async def test_oversize_body_read_by_a_plugin_is_413(routes) -> None:  # type: ignore[no-untyped-def]
    big = b"x" * (17 * 1024 * 1024)
    resp = await routes.proxy.post("/ai", data=big, headers={"Content-Type": "application/json"})
    assert resp.status == 413
    assert (await resp.json())["error"]["message"] == "request body too large"


@pytest.mark.parametrize(
    ("path", "body", "headers"),
    [
        ("/ai", b"", {"Content-Type": "application/json"}),
        ("/ai", b"{not json", {"Content-Type": "application/json"}),
        ("/ai", b"[1,2]", {"Content-Type": "application/json"}),
        ("/ai", b'{"messages": 5}', {"Content-Type": "application/json"}),
        ("/ai", b"\xff\xfe\x00", {"Content-Type": "application/json"}),
        ("/ai", b"a=b", {"Content-Type": "text/plain"}),
    ],
)
async def test_bad_llm_bodies_are_4xx_json(routes, path, body, headers) -> None:  # type: ignore[no-untyped-def]
    resp = await routes.proxy.post(path, data=body, headers=headers)
    assert 400 <= resp.status < 500, await resp.text()
    assert resp.content_type == "application/json"
    assert (await resp.json())["error"]["type"] == "invalid_request_error"


async def test_raw_garbage_never_gets_a_5xx(routes) -> None:  # type: ignore[no-untyped-def]
    host, port = routes.proxy.host, routes.proxy.port
    requests = [
        b"GET /plain/%zz%00 HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /plain/a HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 7000 + b"\r\n\r\n",
        b"POST /cached HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nab",
        b"GET /plain/\xff\xfe HTTP/1.1\r\nHost: \xff\r\n\r\n",
        b"BREW /plain/a HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /plain/a HTTP/1.1\r\nHost: x\r\nAuthorization: Basic \xff\xff\r\n\r\n",
    ]
    for raw in requests:
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(raw)
        await writer.drain()
        if raw.startswith(b"POST /cached"):
            writer.write_eof()
        try:
            status_line = await asyncio.wait_for(reader.readline(), 5)
        finally:
            writer.close()
        if status_line:  # a closed connection is fine too
            status = int(status_line.split()[1])
            assert status < 500, (raw[:60], status_line)
