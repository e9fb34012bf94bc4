"""limit-count on the data plane: windows, keys, groups, headers, rejections, reloads, Redis.

Redis tests use the server at redis://127.0.0.1:6379/0 and fail, never skip, without it.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from llmgate.runtime.redis_counters import target_from_url
from tests.harness import Gateway
from tests.processes import free_port, redis_sentinel

SEED = {
    "count": 2,
    "time_window": 60,
    "rejected_code": 403,
    "rejected_msg": "Las solicitudes son demasiado frecuentes, por favor inténtalo de nuevo más tarde.",
    "key_type": "var",
    "key": "remote_addr",
}


async def route(gateway: Gateway, route_id: str, limit: dict[str, Any], **extra: Any) -> None:
    body = {"uri": f"/{route_id}/*", "plugins": {"limit-count": limit}, **extra}
    await gateway.put(f"routes/{route_id}", {"upstream": gateway.upstream(), **body})


async def statuses(gateway: Gateway, path: str, n: int, **headers: str) -> list[int]:
    out = []
    for _ in range(n):
        resp = await gateway.proxy.get(path, headers=headers)
        await resp.read()
        out.append(resp.status)
    return out


async def test_seed_blog_config_passes_two_then_rejects(gateway: Gateway) -> None:
    await gateway.put("plugin_configs/1", {"plugins": {"limit-count": SEED}})
    await gateway.put(
        "routes/1", {"uri": "/openai/*", "plugin_config_id": "1", "upstream": gateway.upstream()}
    )
    for remaining in ("1", "0"):
        resp = await gateway.proxy.post("/openai/product/desc", json={"prompt": "x"})
        assert resp.status == 200
        assert resp.headers["X-RateLimit-Limit"] == "2"
        assert resp.headers["X-RateLimit-Remaining"] == remaining
        assert resp.headers["X-RateLimit-Reset"] == "60"
    resp = await gateway.proxy.post("/openai/product/desc", json={"prompt": "x"})
    assert resp.status == 403
    assert await resp.json() == {"error_msg": SEED["rejected_msg"]}
    assert resp.headers["Content-Type"] == "application/json"
    assert resp.headers["X-RateLimit-Limit"] == "2"
    assert resp.headers["X-RateLimit-Remaining"] == "0"
    assert 0 < int(resp.headers["X-RateLimit-Reset"]) <= 60
    # llmgate's: a rejection says when to retry (the seed's 403 too): the window's end.
    assert resp.headers["Retry-After"] == resp.headers["X-RateLimit-Reset"]
    assert len(await gateway.fake_requests()) == 2


async def test_defaults_503_json_and_headers_can_be_hidden(gateway: Gateway) -> None:
    await route(gateway, "1", {"count": 1, "time_window": 60})
    await route(gateway, "2", {"count": 1, "time_window": 60, "show_limit_quota_header": False})
    assert (await gateway.proxy.get("/1/a")).status == 200
    resp = await gateway.proxy.get("/1/a")
    assert resp.status == 503
    assert await resp.json() == {"error_msg": "too many requests"}
    resp = await gateway.proxy.get("/2/a")
    assert resp.status == 200 and "X-RateLimit-Limit" not in resp.headers
    resp = await gateway.proxy.get("/2/a")
    assert resp.status == 503 and "X-RateLimit-Remaining" not in resp.headers


async def test_var_key_counts_each_value_and_falls_back_to_the_client(gateway: Gateway) -> None:
    await route(gateway, "1", {"count": 1, "time_window": 60, "key": "http_x_user"})
    assert await statuses(gateway, "/1/a", 2, **{"X-User": "alice"}) == [200, 503]
    assert await statuses(gateway, "/1/a", 2, **{"X-User": "bob"}) == [200, 503]
    # No header and an empty one: both counted as the client address, so one window.
    assert await statuses(gateway, "/1/a", 1) == [200]
    assert await statuses(gateway, "/1/a", 1, **{"X-User": ""}) == [503]


async def test_var_combination_key(gateway: Gateway) -> None:
    limit = {
        "count": 1,
        "time_window": 60,
        "key_type": "var_combination",
        "key": "$http_x_org/$http_x_user",
    }
    await route(gateway, "1", limit)
    assert await statuses(gateway, "/1/a", 2, **{"X-Org": "o", "X-User": "u1"}) == [200, 503]
    assert await statuses(gateway, "/1/a", 1, **{"X-Org": "o", "X-User": "u2"}) == [200]
    assert await statuses(gateway, "/1/a", 1, **{"X-User": "u2"}) == [200]  # "/u2"
    # Neither variable set: the client address.
    assert await statuses(gateway, "/1/a", 2) == [200, 503]


async def test_constant_key_is_one_counter_per_route(gateway: Gateway) -> None:
    limit = {"count": 2, "time_window": 60, "key_type": "constant", "key": "all"}
    await route(gateway, "1", limit)
    await route(gateway, "2", limit)
    assert await statuses(gateway, "/1/a", 1, **{"X-Real-IP": "1.1.1.1"}) == [200]
    assert await statuses(gateway, "/1/a", 2, **{"X-Real-IP": "2.2.2.2"}) == [200, 503]
    assert await statuses(gateway, "/2/a", 2) == [200, 200]


async def test_group_shares_one_counter_across_routes(gateway: Gateway) -> None:
    limit = {"count": 3, "time_window": 60, "group": "team"}
    await route(gateway, "1", limit)
    await route(gateway, "2", limit)
    await route(gateway, "3", {"count": 3, "time_window": 60})
    assert await statuses(gateway, "/1/a", 2) == [200, 200]
    assert await statuses(gateway, "/2/a", 2) == [200, 503]
    assert await statuses(gateway, "/3/a", 1) == [200]


async def test_reloads_keep_the_counter_until_its_own_config_changes(gateway: Gateway) -> None:
    limit = {"count": 2, "time_window": 60}
    await route(gateway, "1", limit)
    assert await statuses(gateway, "/1/a", 1) == [200]
    await route(gateway, "2", {"count": 5, "time_window": 60})  # another route
    await route(gateway, "1", limit, plugins={"limit-count": limit, "request-id": {}})
    assert await statuses(gateway, "/1/a", 2) == [200, 503]  # same window: 1 left
    await route(gateway, "1", {**limit, "rejected_code": 429})  # its own config: reset
    assert await statuses(gateway, "/1/a", 3) == [200, 200, 429]


async def test_resaving_a_route_unchanged_keeps_its_window(gateway: Gateway) -> None:
    # APISIX keys the counter on the resource and a digest of the plugin's own config
    # (limit-count/init.lua gen_limit_key: resource_key .. conf_version(conf)), not on the
    # resource's modifiedIndex: the same PUT again counts on in the same window.
    limit = {"count": 2, "time_window": 60}
    await route(gateway, "1", limit)
    assert await statuses(gateway, "/1/a", 3) == [200, 200, 503]
    await route(gateway, "1", limit)
    assert await statuses(gateway, "/1/a", 1) == [503]
    await gateway.put("plugin_configs/7", {"plugins": {"limit-count": limit}})
    pc = {"uri": "/pc/*", "plugin_config_id": "7", "upstream": gateway.upstream()}
    await gateway.put("routes/2", pc)
    assert await statuses(gateway, "/pc/a", 3) == [200, 200, 503]
    await gateway.put("plugin_configs/7", {"plugins": {"limit-count": limit}})
    await gateway.put("routes/2", pc)
    assert await statuses(gateway, "/pc/a", 1) == [503]


async def test_window_expiry_lets_requests_through_again(gateway: Gateway) -> None:
    await route(gateway, "1", {"count": 1, "time_window": 1})
    assert await statuses(gateway, "/1/a", 2) == [200, 503]
    await asyncio.sleep(1.05)
    assert await statuses(gateway, "/1/a", 2) == [200, 503]


async def test_sliding_window(gateway: Gateway) -> None:
    await route(gateway, "1", {"count": 2, "time_window": 3600, "window_type": "sliding"})
    resp = await gateway.proxy.get("/1/a")
    assert resp.status == 200 and resp.headers["X-RateLimit-Remaining"] == "1"
    assert 0 < int(resp.headers["X-RateLimit-Reset"]) <= 3600
    assert await statuses(gateway, "/1/a", 3) == [200, 503, 503]


async def test_count_from_a_variable(gateway: Gateway) -> None:
    await route(gateway, "1", {"count": "$http_x_count", "time_window": 60})
    assert await statuses(gateway, "/1/a", 3, **{"X-Count": "2"}) == [200, 200, 503]
    resp = await gateway.proxy.get("/1/a", headers={"X-Count": "lots"})
    assert resp.status == 400
    assert "count resolved to 'lots'" in (await resp.json())["error_msg"]
    await route(
        gateway, "2", {"count": "$http_x_count", "time_window": 60, "allow_degradation": True}
    )
    assert await statuses(gateway, "/2/a", 1) == [200]


async def test_rules_count_several_windows_with_prefixed_headers(gateway: Gateway) -> None:
    rules = [
        {"count": 3, "time_window": 60, "key": "$http_x_user"},
        {"count": 1, "time_window": 60, "key": "$http_x_model", "header_prefix": "model"},
    ]
    await route(gateway, "1", {"rules": rules})
    resp = await gateway.proxy.get("/1/a", headers={"X-User": "u", "X-Model": "m"})
    assert resp.status == 200
    assert resp.headers["X-1-RateLimit-Remaining"] == "2"
    assert resp.headers["X-model-RateLimit-Remaining"] == "0"
    resp = await gateway.proxy.get("/1/a", headers={"X-User": "u", "X-Model": "m"})
    assert resp.status == 503
    # A rule whose variables are unset does not apply.
    resp = await gateway.proxy.get("/1/a", headers={"X-User": "u"})
    assert resp.status == 200 and "X-model-RateLimit-Limit" not in resp.headers
    assert resp.headers["X-1-RateLimit-Remaining"] == "0"
    assert await statuses(gateway, "/1/a", 1) == [200]  # no rule applies


async def test_rules_whose_keys_resolve_alike_keep_their_own_counters(gateway: Gateway) -> None:
    # Both keys resolve to "1": one shared counter counted each request twice, and the short
    # window reported the long one's reset (APISIX shares it too; llmgate keeps them apart).
    rules = [
        {"count": 1, "time_window": 60, "key": "$http_x_user"},
        {"count": 5, "time_window": 10, "key": "$http_x_team"},
    ]
    await route(gateway, "1", {"rules": rules})
    resp = await gateway.proxy.get("/1/a", headers={"X-User": "1", "X-Team": "1"})
    assert resp.status == 200
    assert resp.headers["X-1-RateLimit-Remaining"] == "0"
    assert resp.headers["X-2-RateLimit-Remaining"] == "4"
    assert resp.headers["X-2-RateLimit-Reset"] == "10"
    resp = await gateway.proxy.get("/1/a", headers={"X-User": "2", "X-Team": "1"})
    assert resp.status == 200 and resp.headers["X-2-RateLimit-Remaining"] == "3"


@pytest.fixture
async def redis_key() -> Any:
    client = aioredis.Redis.from_url("redis://127.0.0.1:6379/0")
    await client.ping()  # fails loudly when Redis is not there
    key = f"test-{uuid.uuid4().hex}"
    yield key
    async for stale in client.scan_iter(match=f"llmgate:*{key}*"):
        await client.delete(stale)
    await client.aclose()


@pytest.mark.parametrize("policy", ["redis", "redis-cluster"])
async def test_redis_policy(gateway: Gateway, redis_key: str, policy: str) -> None:
    servers = (
        {"redis_host": "127.0.0.1"}
        if policy == "redis"
        else {"redis_cluster_nodes": ["127.0.0.1:6379"], "redis_cluster_name": "c"}
    )
    limit = {
        "count": 2,
        "time_window": 60,
        "key_type": "constant",
        "key": redis_key,
        "policy": policy,
        **servers,
    }
    await route(gateway, "1", limit)
    resp = await gateway.proxy.get("/1/a")
    assert resp.status == 200 and resp.headers["X-RateLimit-Remaining"] == "1"
    assert await statuses(gateway, "/1/a", 2) == [200, 503]


async def test_redis_policy_resaving_a_route_unchanged_keeps_its_window(
    gateway: Gateway, redis_key: str
) -> None:
    # The counter's Redis key is built from what is stored (the route's id and a digest of the
    # plugin's config), so every node sharing the Redis counts in the same key, before and after.
    limit = {
        "count": 2,
        "time_window": 60,
        "key_type": "constant",
        "key": redis_key,
        "policy": "redis",
        "redis_host": "127.0.0.1",
    }
    await route(gateway, "1", limit)
    assert await statuses(gateway, "/1/a", 3) == [200, 200, 503]
    await route(gateway, "1", limit)
    assert await statuses(gateway, "/1/a", 1) == [503]
    await route(gateway, "1", {**limit, "count": 3})  # its own config changed: a new window
    assert await statuses(gateway, "/1/a", 4) == [200, 200, 200, 503]


async def test_policy_redis_without_host_counts_in_the_default_redis(
    gateway: Gateway, redis_key: str
) -> None:
    """``LLMGATE_REDIS_URL`` (``services.redis_default``) is where ``policy: redis`` counts
    when the plugin names no ``redis_host``; the fields the plugin sets override the URL's."""
    limit = {"count": 2, "time_window": 60, "key_type": "constant", "policy": "redis"}
    # No default Redis on this node: the route does not compile, and stands in as a 503.
    await route(gateway, "1", {**limit, "key": redis_key})
    resp = await gateway.proxy.get("/1/a")
    assert resp.status == 503
    assert "LLMGATE_REDIS_URL" in gateway.loader.current.problems["routes/1"]

    gateway.services.redis_default = target_from_url("redis://127.0.0.1:6379/0")
    await route(gateway, "1", {**limit, "key": redis_key})
    assert await statuses(gateway, "/1/a", 3) == [200, 200, 503]
    client = aioredis.Redis.from_url("redis://127.0.0.1:6379/0")
    try:
        assert [key async for key in client.scan_iter(match=f"llmgate:*{redis_key}*")]
    finally:
        await client.aclose()
    # The plugin's own redis_database overrides the URL's: a fresh count in database 1.
    await route(gateway, "2", {**limit, "key": redis_key, "redis_database": 1})
    assert await statuses(gateway, "/2/a", 1) == [200]
    client = aioredis.Redis.from_url("redis://127.0.0.1:6379/1")
    try:
        stale = [key async for key in client.scan_iter(match=f"llmgate:*{redis_key}*")]
        assert stale
        await client.delete(*stale)
    finally:
        await client.aclose()


async def test_redis_sentinel_policy_counts_in_the_master(
    gateway: Gateway, redis_key: str, tmp_path: Path
) -> None:
    """``policy: redis-sentinel``: a real sentinel names the master (the Redis on 6379)."""
    master = f"llmgate-{redis_key}"
    with redis_sentinel(tmp_path, master) as port:
        limit = {
            "count": 2,
            "time_window": 60,
            "key_type": "constant",
            "key": redis_key,
            "policy": "redis-sentinel",
            "redis_sentinels": [{"host": "127.0.0.1", "port": port}],
            "redis_master_name": master,
            "redis_connect_timeout": 500,
            "redis_read_timeout": 500,
        }
        await route(gateway, "1", limit)
        assert await statuses(gateway, "/1/a", 3) == [200, 200, 503]
        # A master the sentinels do not know: the counters cannot be reached.
        await route(gateway, "2", {**limit, "redis_master_name": "nobody"})
        resp = await gateway.proxy.get("/2/a")
        assert resp.status == 503
        assert await resp.json() == {"error_msg": "failed to limit count"}
        # Sentinel credentials are sent to the sentinel: a wrong one cannot count.
        await route(gateway, "3", {**limit, "sentinel_username": "x", "sentinel_password": "y"})
        assert (await gateway.proxy.get("/3/a")).status == 503
    # Every sentinel gone: a 503 within the connect timeout, never a hang (a new client: the
    # first one's connection to the master still works, as it should).
    started = asyncio.get_running_loop().time()
    await route(gateway, "4", {**limit, "redis_read_timeout": 400})
    assert (await gateway.proxy.get("/4/a")).status == 503
    assert asyncio.get_running_loop().time() - started < 3


async def test_redis_down_is_a_503_unless_degradation_is_allowed(gateway: Gateway) -> None:
    down = {"policy": "redis", "redis_host": "127.0.0.1", "redis_port": free_port()}
    await route(gateway, "1", {"count": 2, "time_window": 60, **down, "redis_timeout": 200})
    resp = await gateway.proxy.get("/1/a")
    assert resp.status == 503
    assert await resp.json() == {"error_msg": "failed to limit count"}
    assert await gateway.fake_requests() == []
    await route(gateway, "2", {"count": 2, "time_window": 60, **down, "allow_degradation": True})
    resp = await gateway.proxy.get("/2/a")
    assert resp.status == 200 and "X-RateLimit-Limit" not in resp.headers
