"""Live reload: a change is served at once; requests in flight keep their snapshot."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from tests.processes import free_port


async def test_in_flight_stream_survives_a_config_change(gateway) -> None:  # type: ignore[no-untyped-def]
    await gateway.put("routes/1", {"uri": "/v1/*", "upstream": gateway.upstream()})
    body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "long"}]}
    resp = await gateway.proxy.post(
        "/v1/chat/completions", json=body, headers={"X-Fake-Stream-Delay-Ms": "40"}
    )
    assert resp.status == 200
    first = await resp.content.readany()
    assert first.startswith(b"data: ")
    # Point the route at a dead node, then delete it, while the stream is running.
    dead = {"nodes": {f"127.0.0.1:{free_port()}": 1}}
    await gateway.put("routes/1", {"uri": "/v1/*", "upstream": dead})
    await gateway.delete("routes/1")
    rest = await resp.content.read()
    assert rest.rstrip().endswith(b"data: [DONE]")
    after = await gateway.proxy.post("/v1/chat/completions", json=body)
    assert after.status == 404


async def test_reload_is_triggered_by_admin_writes_in_process(gateway) -> None:  # type: ignore[no-untyped-def]
    resp = await gateway.admin.put(
        "/apisix/admin/routes/1", json={"uri": "/fresh", "upstream": gateway.upstream()}
    )
    assert resp.status == 201
    # No explicit reload: the commit notification wakes the loader.
    for _ in range(100):
        if (await gateway.proxy.get("/fresh")).status == 200:
            break
        await asyncio.sleep(0.01)
    else:
        raise AssertionError("the change was not live within 1 s")


async def test_unchanged_upstream_keeps_its_pool(gateway) -> None:  # type: ignore[no-untyped-def]
    await gateway.put("upstreams/1", gateway.upstream())
    await gateway.put("routes/1", {"uri": "/a", "upstream_id": "1"})
    pool = gateway.loader.current.router.match("GET", None, "/a").payload.upstream
    await gateway.put("routes/2", {"uri": "/b", "upstream_id": "1"})
    again = gateway.loader.current.router.match("GET", None, "/a").payload.upstream
    assert again is pool  # keep-alive connections survive unrelated changes


async def test_disabled_route_is_not_served(gateway) -> None:  # type: ignore[no-untyped-def]
    await gateway.put("routes/1", {"uri": "/d", "status": 0, "upstream": gateway.upstream()})
    assert (await gateway.proxy.get("/d")).status == 404


def _state_of(snapshot) -> dict[str, object]:  # type: ignore[no-untyped-def]
    """Every slot of a snapshot (mappings copied, so a write into one shows)."""
    return {
        name: dict(value) if isinstance(value, Mapping) else value
        for name in type(snapshot).__slots__
        for value in [getattr(snapshot, name)]
    }


async def test_serving_never_writes_into_the_snapshot(gateway) -> None:  # type: ignore[no-untyped-def]
    # A consumer whose plugins are merged over the route's on every request it makes.
    await gateway.put(
        "consumers/jack",
        {
            "username": "jack",
            "plugins": {
                "key-auth": {"key": "jack-key"},
                "proxy-rewrite": {"headers": {"set": {"X-Who": "jack"}}},
            },
        },
    )
    await gateway.put(
        "routes/1", {"uri": "/w", "plugins": {"key-auth": {}}, "upstream": gateway.upstream()}
    )
    await gateway.loader.sync()
    snapshot = gateway.loader.current
    before = _state_of(snapshot)
    route = snapshot.router.match("GET", None, "/w").payload
    chain = route.chain
    for _ in range(3):
        assert (await gateway.proxy.get("/w", headers={"apikey": "jack-key"})).status == 200
    assert (await gateway.proxy.get("/w")).status == 401
    assert gateway.loader.current is snapshot
    after = _state_of(snapshot)
    assert after.keys() == before.keys()
    assert all(after[key] is before[key] or after[key] == before[key] for key in before), [
        key for key in before if not (after[key] is before[key] or after[key] == before[key])
    ]
    assert route.chain is chain and snapshot.consumers["jack"].chain.plugins
    assert gateway.loader._in_flight == {}  # every request left its snapshot
