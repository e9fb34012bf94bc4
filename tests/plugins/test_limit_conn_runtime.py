"""limit-conn on the data plane: concurrent requests per key, counted in access, released in log.

The fake upstream's ``X-Fake-Latency-Ms`` keeps requests in flight.  Redis tests use the server
at redis://127.0.0.1:6379/0 and fail, never skip, without it.
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

SLOW = {"X-Fake-Latency-Ms": "400"}


async def route(gateway: Gateway, route_id: str, limit: dict[str, Any]) -> None:
    body = {"uri": f"/{route_id}/*", "plugins": {"limit-conn": limit}}
    await gateway.put(f"routes/{route_id}", {"upstream": gateway.upstream(), **body})


def single(conn: int, burst: int, **extra: Any) -> dict[str, Any]:
    return {
        "conn": conn,
        "burst": burst,
        "default_conn_delay": 0.2,
        "key": "remote_addr",
        "only_use_default_delay": True,
        **extra,
    }


async def timed(gateway: Gateway, path: str, **headers: str) -> tuple[int, float]:
    started = time.monotonic()
    resp = await gateway.proxy.get(path, headers=headers)
    await resp.read()
    return resp.status, time.monotonic() - started


async def together(gateway: Gateway, path: str, n: int, **headers: str) -> list[tuple[int, float]]:
    return sorted(await asyncio.gather(*(timed(gateway, path, **headers) for _ in range(n))))


async def test_over_conn_is_rejected_and_released_after_the_response(gateway: Gateway) -> None:
    await route(gateway, "1", single(1, 0, rejected_code=429, rejected_msg="one at a time"))
    results = await together(gateway, "/1/a", 2, **SLOW)
    assert [status for status, _ in results] == [200, 429]
    assert results[1][1] < 0.35  # rejected at once, not after the other finished
    resp = await gateway.proxy.get("/1/a", headers=SLOW)
    assert resp.status == 200  # the first one's connection was released
    resp = await gateway.proxy.get("/1/a", headers={"X-Fake-Status": "500"})
    assert resp.status == 500
    assert (await timed(gateway, "/1/a"))[0] == 200  # released after an upstream error too


async def test_default_rejection_body(gateway: Gateway) -> None:
    await route(gateway, "1", single(1, 0))
    results = await asyncio.gather(
        gateway.proxy.get("/1/a", headers=SLOW), gateway.proxy.get("/1/a", headers=SLOW)
    )
    rejected = [resp for resp in results if resp.status == 503]
    assert len(rejected) == 1
    assert await rejected[0].json() == {"error_msg": "too many concurrent requests"}
    assert rejected[0].headers["Retry-After"] == "1"


async def test_burst_is_delayed(gateway: Gateway) -> None:
    await route(gateway, "1", single(1, 1))
    (first, took_first), (second, took_second), (third, _) = await together(
        gateway, "/1/a", 3, **SLOW
    )
    assert (first, second, third) == (200, 200, 503)
    assert took_first >= 0.4  # the upstream's 400 ms
    assert took_second >= 0.6  # 200 ms of delay first


async def test_the_delay_follows_the_latency_unless_only_default(gateway: Gateway) -> None:
    await route(gateway, "1", single(1, 1, default_conn_delay=0.01, only_use_default_delay=False))
    assert (await timed(gateway, "/1/a", **{"X-Fake-Latency-Ms": "400"}))[0] == 200
    # unit delay: (0.4 + 0.01) / 2, so the second of two concurrent requests waits ~0.2 s.
    (_, took_first), (_, took_second) = await together(gateway, "/1/a", 2)
    assert took_second >= 0.2 and took_first < took_second


async def test_each_key_counts_separately(gateway: Gateway) -> None:
    await route(gateway, "1", single(1, 0, key="http_x_user"))
    results = await asyncio.gather(
        timed(gateway, "/1/a", **SLOW, **{"X-User": "a"}),
        timed(gateway, "/1/a", **SLOW, **{"X-User": "b"}),
    )
    assert [status for status, _ in results] == [200, 200]


@pytest.fixture
async def redis_client() -> Any:
    client = aioredis.Redis.from_url("redis://127.0.0.1:6379/0")
    await client.ping()  # fails loudly when Redis is not there
    yield client
    await client.aclose()


async def test_redis_policy(gateway: Gateway, redis_client: aioredis.Redis) -> None:
    marker = f"test-{uuid.uuid4().hex}"
    limit = single(
        1,
        0,
        key_type="var_combination",
        key=f"{marker}-$remote_addr",
        policy="redis",
        redis_host="127.0.0.1",
    )
    try:
        await route(gateway, "1", limit)
        results = await together(gateway, "/1/a", 2, **SLOW)
        assert [status for status, _ in results] == [200, 503]
        # Released in the log phase, which may finish just after the client has its answer.
        deadline = time.monotonic() + 2
        while [key async for key in redis_client.scan_iter(match=f"llmgate:*{marker}*")]:
            assert time.monotonic() < deadline, "the connection count was not released"
            await asyncio.sleep(0.01)
        assert (await timed(gateway, "/1/a"))[0] == 200
    finally:
        async for stale in redis_client.scan_iter(match=f"llmgate:*{marker}*"):
            await redis_client.delete(stale)


async def test_redis_down_is_a_503_unless_degradation_is_allowed(gateway: Gateway) -> None:
    down = {"policy": "redis", "redis_host": "127.0.0.1", "redis_port": free_port()}
    await route(gateway, "1", single(1, 0, **down))
    resp = await gateway.proxy.get("/1/a")
    assert resp.status == 503
    assert await resp.json() == {"error_msg": "failed to limit conn"}
    await route(gateway, "2", single(1, 0, allow_degradation=True, **down))
    assert (await timed(gateway, "/2/a"))[0] == 200


async def test_rules_apply_several_limits_and_skip_unset_keys(gateway: Gateway) -> None:
    rules = [
        {"conn": 1, "burst": 0, "key": "user-$http_x_user"},
        {"conn": 2, "burst": 0, "key": "team-$http_x_team"},
    ]
    limit = {"default_conn_delay": 0.2, "only_use_default_delay": True, "rules": rules}
    await route(gateway, "1", limit)
    # One user: its own rule (conn 1) rejects the second request.
    one_user = await together(gateway, "/1/a", 2, **SLOW, **{"X-User": "u", "X-Team": "t"})
    assert [status for status, _ in one_user] == [200, 503]
    # Three users of one team: the team rule (conn 2) rejects the third.
    team = await asyncio.gather(
        *(timed(gateway, "/1/a", **SLOW, **{"X-User": u, "X-Team": "t"}) for u in "abc")
    )
    assert sorted(status for status, _ in team) == [200, 200, 503]
    # No variable set: no rule applies, nothing is limited.
    free = await together(gateway, "/1/a", 3, **SLOW)
    assert [status for status, _ in free] == [200, 200, 200]


async def test_rules_whose_keys_resolve_alike_keep_their_own_counters(gateway: Gateway) -> None:
    # Both keys resolve to "1": one shared counter held two slots for one request, so a lone
    # request was over "conn: 1" (APISIX shares it too; llmgate keeps them apart).
    rules = [
        {"conn": 1, "burst": 0, "key": "$http_x_user"},
        {"conn": 1, "burst": 0, "key": "$http_x_team"},
    ]
    limit = {"default_conn_delay": 0.2, "only_use_default_delay": True, "rules": rules}
    await route(gateway, "1", limit)
    status, _ = await timed(gateway, "/1/a", **{"X-User": "1", "X-Team": "1"})
    assert status == 200
