"""The call options and overrides ai-proxy and ai-proxy-multi share, at run time: each field's
effect on what the provider (the fake) receives, for both plugins."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.processes import fake_upstream_process

CHAT = {"messages": [{"role": "user", "content": "Who is Pikachu?"}]}


async def llm_route(gateway, plugin: str, target: dict[str, Any], **options: Any) -> None:  # type: ignore[no-untyped-def]
    """Route ``/chat`` through ``plugin`` with one provider ``target`` and call ``options``."""
    target = {
        "provider": "openai-compatible",
        "auth": {"header": {"Authorization": "Bearer sk-test"}},
        "override": {"endpoint": f"http://{gateway.fake_address}/v1/chat/completions"},
        **target,
    }
    if plugin == "ai-proxy":
        conf = {**target, **options}
    else:
        conf = {"instances": [{"name": "only", "weight": 1, **target}], **options}
    await gateway.put("routes/1", {"uri": "/chat", "plugins": {plugin: conf}})


PLUGINS = pytest.mark.parametrize("plugin", ["ai-proxy", "ai-proxy-multi"])


@PLUGINS
async def test_override_request_body_fills_in_or_forces(gateway, plugin: str) -> None:  # type: ignore[no-untyped-def]
    endpoint = f"http://{gateway.fake_address}/v1/chat/completions"
    request_body = {"openai-chat": {"user": "gateway", "temperature": 0.5}}
    override = {"endpoint": endpoint, "request_body": request_body}
    await llm_route(gateway, plugin, {"override": override})
    resp = await gateway.proxy.post("/chat", json={**CHAT, "user": "client"})
    assert resp.status == 200, await resp.text()
    (seen,) = await gateway.fake_requests()
    assert seen["body"]["user"] == "client"  # the client's field wins...
    assert seen["body"]["temperature"] == 0.5  # ... what it left out is filled in
    await gateway.clear_fake()
    forced = {**override, "request_body_force_override": True}
    await llm_route(gateway, plugin, {"override": forced})
    assert (await gateway.proxy.post("/chat", json={**CHAT, "user": "client"})).status == 200
    (seen,) = await gateway.fake_requests()
    assert seen["body"]["user"] == "gateway"  # ... unless forced


@PLUGINS
async def test_override_llm_options_max_tokens_always_wins(gateway, plugin: str) -> None:  # type: ignore[no-untyped-def]
    endpoint = f"http://{gateway.fake_address}/v1/chat/completions"
    override = {"endpoint": endpoint, "llm_options": {"max_tokens": 7}}
    await llm_route(gateway, plugin, {"override": override})
    assert (await gateway.proxy.post("/chat", json={**CHAT, "max_tokens": 500})).status == 200
    (seen,) = await gateway.fake_requests()
    assert seen["body"]["max_tokens"] == 7


@PLUGINS
async def test_timeout_bounds_a_slow_provider(gateway, plugin: str) -> None:  # type: ignore[no-untyped-def]
    await llm_route(gateway, plugin, {}, timeout=100)
    slow = {"X-Fake-Latency-Ms": "1500"}
    resp = await gateway.proxy.post("/chat", json=CHAT, headers=slow)
    assert resp.status in (502, 504), await resp.text()
    await llm_route(gateway, plugin, {}, timeout=10000)
    assert (await gateway.proxy.post("/chat", json=CHAT, headers=slow)).status == 200


@PLUGINS
async def test_max_req_body_size_refuses_larger_bodies(gateway, plugin: str) -> None:  # type: ignore[no-untyped-def]
    await llm_route(gateway, plugin, {}, max_req_body_size=200)
    big = {"messages": [{"role": "user", "content": "x" * 500}]}
    resp = await gateway.proxy.post("/chat", json=big)
    assert 400 <= resp.status < 500, await resp.text()
    assert await gateway.fake_requests() == []
    assert (await gateway.proxy.post("/chat", json=CHAT)).status == 200


@pytest.fixture(scope="module")
def tls_fake() -> Iterator[int]:
    """A ``llmgate fake-upstream`` process: it answers TLS on its port, with a certificate no
    public CA signed."""
    with fake_upstream_process() as port:
        yield port


@PLUGINS
async def test_ssl_verify_checks_the_providers_certificate(
    gateway, plugin: str, tls_fake: int
) -> None:  # type: ignore[no-untyped-def]
    https = {"override": {"endpoint": f"https://127.0.0.1:{tls_fake}/v1/chat/completions"}}
    await llm_route(gateway, plugin, https)  # ssl_verify defaults to true
    assert (await gateway.proxy.post("/chat", json=CHAT)).status == 502
    await llm_route(gateway, plugin, https, ssl_verify=False)
    resp = await gateway.proxy.post("/chat", json=CHAT)
    assert resp.status == 200, await resp.text()


@PLUGINS
async def test_keepalive_false_closes_each_connection(gateway, plugin: str) -> None:  # type: ignore[no-untyped-def]
    await llm_route(gateway, plugin, {}, keepalive=False)
    for _ in range(2):
        assert (await gateway.proxy.post("/chat", json=CHAT)).status == 200
    assert [r["headers"]["connection"] for r in await gateway.fake_requests()] == ["close"] * 2


@PLUGINS
async def test_auth_query_is_added_to_the_providers_url(gateway, plugin: str) -> None:  # type: ignore[no-untyped-def]
    auth = {"header": {"Authorization": "Bearer sk-test"}, "query": {"api_key": "k1"}}
    await llm_route(gateway, plugin, {"auth": auth})
    assert (await gateway.proxy.post("/chat?client=1", json=CHAT)).status == 200
    (seen,) = await gateway.fake_requests()
    assert seen["query"] == "api_key=k1"  # the provider's own, never the client's


@PLUGINS
async def test_keepalive_pool_and_keepalive_timeout_shape_the_providers_pool(
    gateway, plugin: str
) -> None:  # type: ignore[no-untyped-def]
    # They become the pool's keepalive_pool.size and idle_timeout, whose effect on connections
    # the upstream client's tests show (tests/proxy/test_client.py).
    await llm_route(gateway, plugin, {}, keepalive_pool=3, keepalive_timeout=2500)
    assert (await gateway.proxy.post("/chat", json=CHAT)).status == 200
    route = gateway.loader.current.router.match("POST", None, "/chat").payload
    (instance,) = route.chain.plugins
    targets = [instance.target] if plugin == "ai-proxy" else list(instance.targets)
    for target in targets:
        pool = target.pool.spec.keepalive_pool
        assert (pool.size, pool.idle_timeout) == (3, 2.5)
