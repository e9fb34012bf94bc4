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


async def test_an_upstreams_5xx_is_marked_as_the_upstreams(gateway) -> None:  # type: ignore[no-untyped-def]
    # APISIX sets X-APISIX-Upstream-Status ($upstream_status) when the upstream answered 5xx,
    # so that a client can tell the upstream's error from the gateway's own; a 4xx or a 2xx
    # answer carries none.
    await gateway.put("routes/1", {"uri": "/v1/*", "upstream": gateway.upstream()})
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    resp = await gateway.proxy.post(
        "/v1/chat/completions", json=body, headers={"X-Fake-Status": "503"}
    )
    assert resp.status == 503
    assert resp.headers.getall("X-APISIX-Upstream-Status") == ["503"]
    for status in ("404", "429"):
        resp = await gateway.proxy.post(
            "/v1/chat/completions", json=body, headers={"X-Fake-Status": status}
        )
        assert resp.status == int(status)
        assert "X-APISIX-Upstream-Status" not in resp.headers
    resp = await gateway.proxy.post("/v1/chat/completions", json=body)
    assert resp.status == 200
    assert "X-APISIX-Upstream-Status" not in resp.headers


async def test_a_failed_upstream_try_is_marked_too(gateway) -> None:  # type: ignore[no-untyped-def]
    # nginx's $upstream_status holds the failed try's 502 (refused) or 504 (timed out), so
    # APISIX marks those answers too; a route with no upstream to try gets no mark.
    from tests.processes import free_port

    dead = {"type": "roundrobin", "nodes": {f"127.0.0.1:{free_port()}": 1}, "retries": 0}
    await gateway.put("routes/1", {"uri": "/dead", "upstream": dead})
    resp = await gateway.proxy.get("/dead")
    assert resp.status == 502
    assert resp.headers.getall("X-APISIX-Upstream-Status") == ["502"]
    slow = gateway.upstream(timeout={"connect": 1, "send": 1, "read": 0.2}, retries=0)
    await gateway.put("routes/2", {"uri": "/slow", "upstream": slow})
    resp = await gateway.proxy.get("/slow", headers={"X-Fake-Latency-Ms": "1000"})
    assert resp.status == 504
    assert resp.headers.getall("X-APISIX-Upstream-Status") == ["504"]
    assert await resp.json() == {"error_msg": "504 Gateway Timeout"}
    await gateway.put("plugin_configs/1", {"plugins": {"cors": {}}})
    await gateway.put("routes/3", {"uri": "/none", "plugin_config_id": "1"})
    resp = await gateway.proxy.get("/none")
    assert resp.status == 503  # APISIX: missing upstream configuration in Route or Service
    assert "X-APISIX-Upstream-Status" not in resp.headers
