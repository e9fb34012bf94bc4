"""``_meta`` at run time, on route, plugin_config and consumer plugins alike: ``filter`` gates a
plugin per request, ``disable`` takes it out, ``priority`` reorders the chain,
``error_response`` replaces the body of its errors."""

from __future__ import annotations

from typing import Any

TRUSTED = {"headers": {"set": {"X-Trusted": "yes"}}}
INTERNAL = [["arg_internal", "==", "1"]]


async def echoed_headers(gateway, path: str, **kwargs: Any) -> dict[str, str]:  # type: ignore[no-untyped-def]
    resp = await gateway.proxy.get(path, **kwargs)
    assert resp.status == 200, await resp.text()
    return (await resp.json())["headers"]


async def test_filter_gates_a_route_plugin(gateway) -> None:  # type: ignore[no-untyped-def]
    rewrite = {**TRUSTED, "_meta": {"filter": INTERNAL}}
    await gateway.put(
        "routes/1",
        {
            "uri": "/anything/*",
            "plugins": {"proxy-rewrite": rewrite},
            "upstream": gateway.upstream(),
        },
    )
    assert (await echoed_headers(gateway, "/anything/a?internal=1"))["x-trusted"] == "yes"
    assert "x-trusted" not in await echoed_headers(gateway, "/anything/a?internal=2")
    assert "x-trusted" not in await echoed_headers(gateway, "/anything/a")


async def test_filter_gates_a_plugin_config_plugin(gateway) -> None:  # type: ignore[no-untyped-def]
    rewrite = {**TRUSTED, "_meta": {"filter": [["http_x_team", "in", ["a", "b"]]]}}
    await gateway.put("plugin_configs/1", {"plugins": {"proxy-rewrite": rewrite}})
    await gateway.put(
        "routes/1", {"uri": "/anything/*", "plugin_config_id": "1", "upstream": gateway.upstream()}
    )
    headers = await echoed_headers(gateway, "/anything/a", headers={"X-Team": "b"})
    assert headers["x-trusted"] == "yes"
    assert "x-trusted" not in await echoed_headers(gateway, "/anything/a", headers={"X-Team": "c"})


async def test_filter_gates_a_plugin_in_every_phase(gateway) -> None:  # type: ignore[no-untyped-def]
    # response-rewrite works in header_filter and body_filter: gated there too.
    rewrite = {"body": "rewritten", "headers": {"X-Rewritten": "1"}, "_meta": {"filter": INTERNAL}}
    await gateway.put(
        "routes/1",
        {
            "uri": "/anything/*",
            "plugins": {"response-rewrite": rewrite},
            "upstream": gateway.upstream(),
        },
    )
    resp = await gateway.proxy.get("/anything/a?internal=1")
    assert await resp.text() == "rewritten" and resp.headers["X-Rewritten"] == "1"
    resp = await gateway.proxy.get("/anything/a")
    assert "X-Rewritten" not in resp.headers
    assert (await resp.json())["path"] == "/anything/a"


async def test_consumer_plugins_honour_meta(gateway) -> None:  # type: ignore[no-untyped-def]
    await gateway.put(
        "consumers",
        {
            "username": "jack",
            "plugins": {
                "key-auth": {"key": "jack-key"},
                "proxy-rewrite": {**TRUSTED, "_meta": {"filter": INTERNAL}},
                # Disabled on the consumer: the route's limit-count no longer applies to jack.
                "limit-count": {"count": 1, "time_window": 60, "_meta": {"disable": True}},
            },
        },
    )
    await gateway.put("consumers", {"username": "jill", "plugins": {"key-auth": {"key": "jill"}}})
    limit = {"count": 1, "time_window": 60, "rejected_code": 429}
    await gateway.put(
        "routes/1",
        {
            "uri": "/anything/*",
            "plugins": {"key-auth": {}, "limit-count": limit},
            "upstream": gateway.upstream(),
        },
    )
    jack = {"apikey": "jack-key"}
    assert (await echoed_headers(gateway, "/anything/a?internal=1", headers=jack))[
        "x-trusted"
    ] == "yes"
    assert "x-trusted" not in await echoed_headers(gateway, "/anything/a", headers=jack)
    assert (await gateway.proxy.get("/anything/a", headers=jack)).status == 200  # 4th: no limit
    jill = {"apikey": "jill"}
    assert (await gateway.proxy.get("/anything/a", headers=jill)).status == 200
    assert (await gateway.proxy.get("/anything/a", headers=jill)).status == 429


async def test_disable_takes_a_route_plugin_out(gateway) -> None:  # type: ignore[no-untyped-def]
    await gateway.put("plugin_configs/1", {"plugins": {"key-auth": {}}})
    await gateway.put(
        "routes/1",
        {
            "uri": "/anything/*",
            "plugin_config_id": "1",
            # The route's own (disabled) key-auth replaces the plugin_config's.
            "plugins": {"key-auth": {"_meta": {"disable": True}}},
            "upstream": gateway.upstream(),
        },
    )
    assert (await gateway.proxy.get("/anything/a")).status == 200
    await gateway.put(
        "routes/1",
        {"uri": "/anything/*", "plugin_config_id": "1", "upstream": gateway.upstream()},
    )
    assert (await gateway.proxy.get("/anything/a")).status == 401


async def test_priority_reorders_the_chain(gateway) -> None:  # type: ignore[no-untyped-def]
    async def preflight(key_auth: dict[str, Any]) -> int:
        await gateway.put(
            "routes/1",
            {
                "uri": "/anything/*",
                "plugins": {"cors": {}, "key-auth": key_auth},
                "upstream": gateway.upstream(),
            },
        )
        return (await gateway.proxy.options("/anything/a")).status

    # cors (4000) answers the preflight before key-auth (2500) asks for a key...
    assert await preflight({}) == 200
    # ... unless key-auth is moved in front of it.
    assert await preflight({"_meta": {"priority": 5000}}) == 401


async def test_error_response_replaces_the_plugins_error_body(gateway) -> None:  # type: ignore[no-untyped-def]
    await gateway.put(
        "routes/1",
        {
            "uri": "/anything/*",
            "plugins": {"key-auth": {"_meta": {"error_response": "go away"}}},
            "upstream": gateway.upstream(),
        },
    )
    resp = await gateway.proxy.get("/anything/a")
    assert resp.status == 401
    assert await resp.text() == "go away"
    assert resp.headers["WWW-Authenticate"] == 'apikey realm="key"'  # other headers kept
    await gateway.put(
        "routes/1",
        {
            "uri": "/anything/*",
            "plugins": {"key-auth": {"_meta": {"error_response": {"error": "denied"}}}},
            "upstream": gateway.upstream(),
        },
    )
    resp = await gateway.proxy.get("/anything/a")
    assert resp.status == 401 and await resp.json() == {"error": "denied"}
