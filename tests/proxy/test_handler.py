"""The proxy handler: routing, forwarding, headers, errors."""

from __future__ import annotations


async def test_unmatched_path_is_404(gateway) -> None:  # type: ignore[no-untyped-def]
    resp = await gateway.proxy.get("/nothing")
    assert resp.status == 404
    assert await resp.json() == {"error_msg": "404 Route Not Found"}


async def test_forwards_path_query_headers_and_body(gateway) -> None:  # type: ignore[no-untyped-def]
    await gateway.put("routes/1", {"uri": "/anything/*", "upstream": gateway.upstream()})
    resp = await gateway.proxy.post(
        "/anything/a%20b?x=1&y=2", data=b"hello", headers={"X-Custom": "v", "Connection": "close"}
    )
    assert resp.status == 200
    echo = await resp.json()
    assert echo["method"] == "POST"
    assert echo["query"] == "x=1&y=2"
    assert echo["body"] == "hello"
    headers = echo["headers"]
    assert headers["x-custom"] == "v"
    assert headers["x-forwarded-for"] == "127.0.0.1"
    assert headers["x-real-ip"] == "127.0.0.1"
    assert headers["x-forwarded-proto"] == "http"
    assert "connection" not in headers or headers["connection"] != "close"


async def test_methods_filter(gateway) -> None:  # type: ignore[no-untyped-def]
    await gateway.put(
        "routes/1", {"uri": "/m", "methods": ["POST"], "upstream": gateway.upstream()}
    )
    assert (await gateway.proxy.get("/m")).status == 404
    assert (await gateway.proxy.post("/m", data=b"{}")).status == 200


async def test_expect_100_continue_is_answered_by_the_gateway(gateway) -> None:  # type: ignore[no-untyped-def]
    import asyncio

    await gateway.put("routes/1", {"uri": "/anything/*", "upstream": gateway.upstream()})
    reader, writer = await asyncio.open_connection(gateway.proxy.host, gateway.proxy.port)
    writer.write(
        b"POST /anything/e HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
    )
    await writer.drain()
    interim = await asyncio.wait_for(reader.readline(), 2)  # not after curl's 1 s wait
    assert interim.startswith(b"HTTP/1.1 100")
    await reader.readline()
    writer.write(b"hello")
    await writer.drain()
    status = await asyncio.wait_for(reader.readline(), 5)
    assert status.startswith(b"HTTP/1.1 200")
    writer.close()
    echo = [r for r in await gateway.fake_requests() if r["path"] == "/anything/e"][-1]
    assert echo["body"] == "hello" and "expect" not in echo["headers"]
