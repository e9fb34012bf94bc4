"""Upstream behaviour: retries, 502/504, balancing, pass_host, streaming."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections import Counter

from tests.net import TestCA
from tests.processes import free_port


async def test_refused_is_502_json(gateway) -> None:  # type: ignore[no-untyped-def]
    dead = f"127.0.0.1:{free_port()}"
    await gateway.put("routes/1", {"uri": "/x", "upstream": {"nodes": {dead: 1}}})
    resp = await gateway.proxy.get("/x")
    assert resp.status == 502
    assert resp.content_type == "application/json"
    assert await resp.json() == {"error_msg": "502 Bad Gateway"}


async def test_timeout_is_504_json(gateway) -> None:  # type: ignore[no-untyped-def]
    upstream = gateway.upstream(timeout={"connect": 1, "send": 1, "read": 0.2}, retries=0)
    await gateway.put("routes/1", {"uri": "/slow", "upstream": upstream})
    resp = await gateway.proxy.get("/slow", headers={"X-Fake-Latency-Ms": "1000"})
    assert resp.status == 504
    assert await resp.json() == {"error_msg": "504 Gateway Timeout"}


async def test_retries_reach_the_next_node(gateway) -> None:  # type: ignore[no-untyped-def]
    dead = f"127.0.0.1:{free_port()}"
    nodes = [
        {"host": "127.0.0.1", "port": int(dead.split(":")[1]), "weight": 100},
        {"host": "127.0.0.1", "port": gateway.fake.port, "weight": 1},
    ]
    await gateway.put("routes/1", {"uri": "/r", "upstream": {"nodes": nodes, "retries": 1}})
    for _ in range(5):
        resp = await gateway.proxy.get("/r")
        assert resp.status == 200
    await gateway.put("routes/1", {"uri": "/r", "upstream": {"nodes": nodes, "retries": 0}})
    statuses = Counter([(await gateway.proxy.get("/r")).status for _ in range(10)])
    assert statuses[502] > 0  # without retries the dead node's share fails


async def test_upstream_statuses_are_relayed(gateway) -> None:  # type: ignore[no-untyped-def]
    await gateway.put("routes/1", {"uri": "/v1/*", "upstream": gateway.upstream()})
    resp = await gateway.proxy.post(
        "/v1/chat/completions", json={"messages": []}, headers={"X-Fake-Status": "429"}
    )
    assert resp.status == 429
    assert (await resp.json())["error"]["type"] == "rate_limit_error"


async def test_weighted_round_robin(gateway, aiohttp_server) -> None:  # type: ignore[no-untyped-def]
    from llmgate.fake_upstream import FakeSettings, build_app

    other = await aiohttp_server(build_app(FakeSettings()))
    nodes = {gateway.fake_address: 3, f"127.0.0.1:{other.port}": 1}
    await gateway.put("routes/1", {"uri": "/w", "upstream": {"nodes": nodes}})
    await gateway.clear_fake()
    for _ in range(8):
        assert (await gateway.proxy.get("/w")).status == 200
    assert len(await gateway.fake_requests()) == 6


async def test_pass_host_modes(gateway) -> None:  # type: ignore[no-untyped-def]
    await gateway.put("routes/1", {"uri": "/h", "upstream": gateway.upstream(pass_host="node")})
    echo = await (await gateway.proxy.get("/h", headers={"Host": "client.example"})).json()
    assert echo["headers"]["host"] == gateway.fake_address
    await gateway.put(
        "routes/1",
        {
            "uri": "/h",
            "upstream": gateway.upstream(pass_host="rewrite", upstream_host="up.example"),
        },
    )
    echo = await (await gateway.proxy.get("/h", headers={"Host": "client.example"})).json()
    assert echo["headers"]["host"] == "up.example"
    await gateway.put("routes/1", {"uri": "/h", "upstream": gateway.upstream()})
    echo = await (await gateway.proxy.get("/h", headers={"Host": "client.example"})).json()
    assert echo["headers"]["host"] == "client.example"
    assert echo["headers"]["x-forwarded-host"] == "client.example"


async def test_the_tls_server_name_follows_pass_host(gateway, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """APISIX sends ``proxy_ssl_name $upstream_host``: with ``pass_host: rewrite`` the server
    name (and the name a verified certificate must carry) is ``upstream_host``, for a domain
    node too; otherwise a domain node's name, and none for an address (nginx sends no IP in
    SNI), ``upstream_host`` without ``rewrite`` having no effect."""
    cert, key = TestCA().issue("api.test", "localhost")
    (tmp_path / "cert.pem").write_text(cert)
    (tmp_path / "key.pem").write_text(key)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    names: list[str | None] = []
    context.sni_callback = lambda _sock, name, _context: names.append(name)  # type: ignore[assignment,misc,func-returns-value]

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=context)
    port = server.sockets[0].getsockname()[1]
    cases = [
        (f"localhost:{port}", {"pass_host": "rewrite", "upstream_host": "api.test"}, "api.test"),
        (f"localhost:{port}", {"pass_host": "node"}, "localhost"),
        (f"localhost:{port}", {}, "localhost"),
        (f"127.0.0.1:{port}", {"pass_host": "rewrite", "upstream_host": "api.test"}, "api.test"),
        (f"127.0.0.1:{port}", {"upstream_host": "api.test"}, None),
    ]
    try:
        for n, (node, fields, expected) in enumerate(cases):
            upstream = {"scheme": "https", "nodes": {node: 1}, **fields}
            await gateway.put(f"routes/{n}", {"uri": f"/sni{n}", "upstream": upstream})
            resp = await gateway.proxy.get(f"/sni{n}", headers={"Host": "client.test"})
            assert resp.status == 200, (node, fields)
            assert names[-1] == expected, (node, fields, names)
    finally:
        server.close()
        await server.wait_closed()


async def test_sse_arrives_incrementally(gateway) -> None:  # type: ignore[no-untyped-def]
    await gateway.put("routes/1", {"uri": "/v1/*", "upstream": gateway.upstream()})
    body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hello"}]}
    started = time.monotonic()
    resp = await gateway.proxy.post(
        "/v1/chat/completions", json=body, headers={"X-Fake-Stream-Delay-Ms": "100"}
    )
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/event-stream")
    arrivals = []
    async for chunk in resp.content.iter_any():
        arrivals.append((time.monotonic() - started, chunk))
    events = b"".join(c for _, c in arrivals).count(b"data: ")
    assert events > 5
    first, last = arrivals[0][0], arrivals[-1][0]
    # The first event reached us long before the upstream sent its last one.
    assert last - first > 0.1 * (events - 2)
    assert b"data: [DONE]" in arrivals[-1][1]


async def test_upstream_drop_mid_stream_is_contained(gateway) -> None:  # type: ignore[no-untyped-def]
    await gateway.put("routes/1", {"uri": "/v1/*", "upstream": gateway.upstream()})
    body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "x"}]}
    resp = await gateway.proxy.post(
        "/v1/chat/completions", json=body, headers={"X-Fake-Drop": "mid-stream"}
    )
    assert resp.status == 200
    with contextlib.suppress(Exception):  # the client sees the cut, as from the upstream
        await resp.read()
    # The gateway is fine afterwards.
    ok = await gateway.proxy.post("/v1/chat/completions", json={**body, "stream": False})
    assert ok.status == 200


async def test_concurrent_requests_share_the_pool(gateway) -> None:  # type: ignore[no-untyped-def]
    await gateway.put("routes/1", {"uri": "/c", "upstream": gateway.upstream()})
    results = await asyncio.gather(*(gateway.proxy.get("/c") for _ in range(50)))
    assert all(r.status == 200 for r in results)


async def test_plain_routes_to_llm_endpoints_are_accounted(gateway, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A route without an AI plugin (the seed blog's) still records the answer's token usage."""
    from llmgate.ai.call import LlmCall

    seen: list[LlmCall | None] = []

    class Recorder:
        def forwarding(self, ctx) -> None:  # type: ignore[no-untyped-def]
            pass

        def observe(self, ctx) -> None:  # type: ignore[no-untyped-def]
            seen.append(LlmCall.find(ctx))

    monkeypatch.setattr(gateway.services, "observers", (Recorder(),))
    await gateway.put("routes/1", {"uri": "/v1/*", "upstream": gateway.upstream()})
    body = {"model": "m", "messages": [{"role": "user", "content": "hello there"}]}
    reply = await (await gateway.proxy.post("/v1/chat/completions", json=body)).json()
    stream = await gateway.proxy.post(
        "/v1/chat/completions",
        json={**body, "stream": True, "stream_options": {"include_usage": True}},
    )
    await stream.read()
    await gateway.proxy.get("/v1/models")
    assert [c.usage.total_tokens if c and c.usage else None for c in seen] == [
        reply["usage"]["total_tokens"],
        reply["usage"]["total_tokens"],
        None,
    ]
    assert seen[0].protocol == "chat" and seen[1].stream and seen[0].model == "m"


async def test_chash_sends_one_key_to_one_node(gateway, aiohttp_server) -> None:  # type: ignore[no-untyped-def]
    from llmgate.fake_upstream import FakeSettings, build_app

    other = await aiohttp_server(build_app(FakeSettings()))
    nodes = {gateway.fake_address: 1, f"127.0.0.1:{other.port}": 1}
    for hash_on, key in (("header", "X-User"), ("vars_combinations", "$http_x_user-$uri")):
        upstream = {"type": "chash", "hash_on": hash_on, "key": key, "nodes": nodes}
        await gateway.put("routes/1", {"uri": "/h", "upstream": upstream})
        for user in ("alice", "bob", "carol", "dave"):
            await gateway.clear_fake()
            for _ in range(4):
                assert (await gateway.proxy.get("/h", headers={"X-User": user})).status == 200
            assert len(await gateway.fake_requests()) in (0, 4), (hash_on, user)


CHAT = {"messages": [{"role": "user", "content": "hi"}]}


async def _slow_and_fast(gateway, aiohttp_server, **upstream):  # type: ignore[no-untyped-def]
    """A route over a slow node (1.5 s a request) and the gateway's fake; both record."""
    from llmgate.fake_upstream import FakeSettings, build_app

    slow = await aiohttp_server(build_app(FakeSettings(latency_ms=1500)))
    nodes = [
        {"host": "127.0.0.1", "port": slow.port, "weight": 1},
        {"host": "127.0.0.1", "port": gateway.fake.port, "weight": 1},
    ]
    conf = {"nodes": nodes, "timeout": {"connect": 1, "send": 1, "read": 0.3}, **upstream}
    await gateway.put("routes/1", {"uri": "/*", "upstream": conf})
    await gateway.clear_fake()
    return slow


def _recorded(server) -> int:  # type: ignore[no-untyped-def]
    from llmgate.fake_upstream.app import STATE

    return len(server.app[STATE].requests)


async def test_a_post_is_never_sent_twice(gateway, aiohttp_server) -> None:  # type: ignore[no-untyped-def]
    slow = await _slow_and_fast(gateway, aiohttp_server, retries=1)
    statuses = Counter()
    for _ in range(4):
        resp = await gateway.proxy.post("/v1/chat/completions", json=CHAT)
        statuses[resp.status] += 1
    deliveries = _recorded(slow) + len(await gateway.fake_requests())
    assert deliveries == 4
    assert statuses == {504: 2, 200: 2}  # round-robin: the slow node's POSTs time out


async def test_idempotent_requests_move_to_the_next_node(gateway, aiohttp_server) -> None:  # type: ignore[no-untyped-def]
    await _slow_and_fast(gateway, aiohttp_server, retries=1)
    for method in ("GET", "PUT", "DELETE", "GET"):
        resp = await gateway.proxy.request(method, "/anything")
        assert resp.status == 200, method


async def test_a_post_moves_on_when_it_was_not_sent(gateway) -> None:  # type: ignore[no-untyped-def]
    dead = free_port()
    nodes = [
        {"host": "127.0.0.1", "port": dead, "weight": 1},
        {"host": "127.0.0.1", "port": gateway.fake.port, "weight": 1},
    ]
    await gateway.put("routes/1", {"uri": "/*", "upstream": {"nodes": nodes, "retries": 1}})
    await gateway.clear_fake()
    for _ in range(4):
        resp = await gateway.proxy.post("/v1/chat/completions", json=CHAT)
        assert resp.status == 200  # refused: never sent, so it may go elsewhere
    assert len(await gateway.fake_requests()) == 4


async def test_retry_timeout_bounds_the_retries(gateway, aiohttp_server) -> None:  # type: ignore[no-untyped-def]
    from llmgate.fake_upstream import FakeSettings, build_app

    slow = [await aiohttp_server(build_app(FakeSettings(latency_ms=1500))) for _ in range(3)]
    nodes = {f"127.0.0.1:{s.port}": 1 for s in slow}
    upstream = {
        "nodes": nodes,
        "retries": 2,
        "retry_timeout": 0.5,
        "timeout": {"connect": 1, "send": 1, "read": 0.3},
    }
    await gateway.put("routes/1", {"uri": "/*", "upstream": upstream})
    resp = await gateway.proxy.get("/x")
    assert resp.status == 504
    assert sum(_recorded(s) for s in slow) == 2  # the third try was past retry_timeout


async def test_the_route_timeout_overrides_the_upstream_one(gateway) -> None:  # type: ignore[no-untyped-def]
    upstream = gateway.upstream(timeout={"connect": 5, "send": 5, "read": 5}, retries=0)
    route = {
        "uri": "/slow",
        "upstream": upstream,
        "timeout": {"connect": 1, "send": 1, "read": 0.3},
    }
    await gateway.put("routes/1", route)
    began = time.monotonic()
    resp = await gateway.proxy.get("/slow", headers={"X-Fake-Latency-Ms": "1500"})
    assert resp.status == 504
    assert time.monotonic() - began < 1.2
    del route["timeout"]
    await gateway.put("routes/1", route)
    resp = await gateway.proxy.get("/slow", headers={"X-Fake-Latency-Ms": "1000"})
    assert resp.status == 200  # the upstream's 5 s read timeout


async def test_passive_checks_take_a_dead_node_out(gateway) -> None:  # type: ignore[no-untyped-def]
    nodes = {f"127.0.0.1:{free_port()}": 1, gateway.fake_address: 1}
    checks = {
        "active": {"healthy": {"interval": 60}, "unhealthy": {"interval": 60}},
        "passive": {"unhealthy": {"tcp_failures": 2}},
    }
    upstream = {"nodes": nodes, "retries": 0, "checks": checks}
    await gateway.put("routes/1", {"uri": "/*", "upstream": upstream})
    statuses = [(await gateway.proxy.get("/x")).status for _ in range(24)]
    assert statuses.count(502) == 2  # two tcp failures, then never again
    assert statuses[-20:] == [200] * 20


async def test_checks_that_would_not_work_are_refused_with_400(gateway) -> None:  # type: ignore[no-untyped-def]
    for checks, field in (
        ({"passive": {}}, "active"),
        ({"active": {"http_path": "/x\r\nHost: evil"}}, "http_path"),
        ({"active": {}, "passive": {"type": "tcp"}}, "type"),
        ({"active": {"unknown": True}}, "unknown"),
    ):
        answer = await gateway.put("upstreams/1", gateway.upstream(checks=checks), 400)
        assert field in answer["error_msg"]
