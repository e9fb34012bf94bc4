"""limit-req on the data plane: a leaky bucket that delays, or rejects, per key.

Redis tests use the server at redis://127.0.0.1:6379/0 and fail, never skip, without it.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest
import redis.asyncio as aioredis

from tests.harness import Gateway
from tests.processes import free_port


async def route(gateway: Gateway, route_id: str, limit: dict[str, Any]) -> None:
    body = {"uri": f"/{route_id}/*", "plugins": {"limit-req": limit}}
    await gateway.put(f"routes/{route_id}", {"upstream": gateway.upstream(), **body})


async def timed(gateway: Gateway, path: str, **headers: str) -> tuple[int, float]:
    started = time.monotonic()
    resp = await gateway.proxy.get(path, headers=headers)
    await resp.read()
    return resp.status, time.monotonic() - started


async def test_over_rate_without_burst_is_rejected(gateway: Gateway) -> None:
    await route(gateway, "1", {"rate": 1, "burst": 0, "key": "remote_addr"})
    assert (await timed(gateway, "/1/a"))[0] == 200
    resp = await gateway.proxy.get("/1/a")
    assert resp.status == 503
    assert await resp.json() == {"error_msg": "too many requests"}
    assert len(await gateway.fake_requests()) == 1


async def test_resaving_a_route_unchanged_keeps_its_bucket(gateway: Gateway) -> None:
    # As APISIX (limit-req.lua gen_limit_key: the resource and a digest of the plugin's config).
    limit = {"rate": 0.2, "burst": 0, "key": "remote_addr"}
    await route(gateway, "1", limit)
    assert (await timed(gateway, "/1/a"))[0] == 200
    await route(gateway, "1", limit)
    assert (await timed(gateway, "/1/a"))[0] == 503  # the bucket is still full for 5 s
    await route(gateway, "1", {**limit, "rate": 0.25})  # its own config changed: a new bucket
    assert (await timed(gateway, "/1/a"))[0] == 200


async def test_burst_is_delayed_then_rejected(gateway: Gateway) -> None:
    await route(gateway, "1", {"rate": 5, "burst": 1, "key": "remote_addr", "rejected_code": 429})
    results = sorted(await asyncio.gather(*(timed(gateway, "/1/a") for _ in range(3))))
    (first, took_first), (second, took_second), (third, took_third) = results
    assert first == second == 200 and third == 429
    assert took_second >= 0.2 and took_first < took_second  # one waited 1/rate
    assert took_third < 0.2  # rejected at once
    assert len(await gateway.fake_requests()) == 2


async def test_a_rejection_carries_the_configured_message(gateway: Gateway) -> None:
    limit = {"rate": 1, "burst": 0, "key": "remote_addr", "rejected_code": 429}
    await route(gateway, "1", {**limit, "rejected_msg": "slow down"})
    assert (await timed(gateway, "/1/a"))[0] == 200
    resp = await gateway.proxy.get("/1/a")
    assert resp.status == 429 and await resp.json() == {"error_msg": "slow down"}
    assert resp.headers["Retry-After"] == "1"  # one request drains from the bucket in 1/rate


async def test_nodelay_passes_the_burst_at_once(gateway: Gateway) -> None:
    await route(gateway, "1", {"rate": 1, "burst": 2, "key": "remote_addr", "nodelay": True})
    for _ in range(3):
        status, took = await timed(gateway, "/1/a")
        assert status == 200 and took < 0.5  # not the 1 s and 2 s of delay
    assert (await timed(gateway, "/1/a"))[0] == 503


async def test_each_key_has_its_own_bucket(gateway: Gateway) -> None:
    limit = {"rate": 1, "burst": 0, "key_type": "var_combination", "key": "$http_x_user"}
    await route(gateway, "1", limit)
    assert (await timed(gateway, "/1/a", **{"X-User": "a"}))[0] == 200
    assert (await timed(gateway, "/1/a", **{"X-User": "a"}))[0] == 503
    assert (await timed(gateway, "/1/a", **{"X-User": "b"}))[0] == 200
    assert (await timed(gateway, "/1/a"))[0] == 200  # no user: the client address
    assert (await timed(gateway, "/1/a"))[0] == 503


@pytest.fixture
async def redis_key() -> Any:
    client = aioredis.Redis.from_url("redis://127.0.0.1:6379/0")
    await client.ping()  # fails loudly when Redis is not there
    key = f"test-{uuid.uuid4().hex}"
    yield key
    async for stale in client.scan_iter(match=f"llmgate:*{key}*"):
        await client.delete(stale)
    await client.aclose()


async def test_redis_policy(gateway: Gateway, redis_key: str) -> None:
    limit = {
        # 2/s: the third request is refused unless the three arrive 0.5 s apart, which a
        # loaded machine did to 5/s (0.2 s)
        "rate": 2,
        "burst": 1,
        "key_type": "var_combination",
        "key": f"{redis_key}-$remote_addr",
        "policy": "redis",
        "redis_host": "127.0.0.1",
    }
    await route(gateway, "1", limit)
    results = sorted(await asyncio.gather(*(timed(gateway, "/1/a") for _ in range(3))))
    assert [status for status, _ in results] == [200, 200, 503]
    assert results[1][1] >= 0.5 and results[0][1] < results[1][1]


async def test_redis_down_is_a_503_unless_degradation_is_allowed(gateway: Gateway) -> None:
    down = {"policy": "redis", "redis_host": "127.0.0.1", "redis_port": free_port()}
    await route(gateway, "1", {"rate": 1, "burst": 0, "key": "remote_addr", **down})
    resp = await gateway.proxy.get("/1/a")
    assert resp.status == 503
    assert await resp.json() == {"error_msg": "failed to limit req"}
    limit = {"rate": 1, "burst": 0, "key": "remote_addr", "allow_degradation": True, **down}
    await route(gateway, "2", limit)
    assert (await timed(gateway, "/2/a"))[0] == 200
