"""Upstream behaviour: retries, 502/504, balancing, pass_host, streaming."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter

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
