"""consumer-restriction at run time: APISIX's whitelist, blacklist and per-method rules."""

from __future__ import annotations

from typing import Any

import pytest

KEYS = {"jack": "key-jack", "rose": "key-rose", "tom": "key-tom"}


async def setup(gateway, restriction: dict[str, Any], **route: Any) -> None:  # type: ignore[no-untyped-def]
    # jack's group (a consumer's group_id must name one, as in APISIX).
    await gateway.put("consumer_groups/gold", {"plugins": {}})
    for name, key in KEYS.items():
        consumer: dict[str, Any] = {"username": name, "plugins": {"key-auth": {"key": key}}}
        if name == "jack":
            consumer["group_id"] = "gold"
        await gateway.put("consumers", consumer)
    await gateway.put(
        "routes/1",
        {
            "uri": "/anything/*",
            "plugins": {"key-auth": {}, "consumer-restriction": restriction},
            "upstream": gateway.upstream(),
            **route,
        },
    )


async def call(gateway, who: str, method: str = "GET") -> tuple[int, Any]:  # type: ignore[no-untyped-def]
    resp = await gateway.proxy.request(method, "/anything/x", headers={"apikey": KEYS[who]})
    return resp.status, await resp.json()


async def test_whitelist(gateway) -> None:  # type: ignore[no-untyped-def]
    await setup(gateway, {"whitelist": ["jack"]})
    assert (await call(gateway, "jack"))[0] == 200
    assert await call(gateway, "rose") == (403, {"message": "The consumer_name is forbidden."})


async def test_blacklist(gateway) -> None:  # type: ignore[no-untyped-def]
    await setup(gateway, {"blacklist": ["jack"]})
    assert await call(gateway, "jack") == (403, {"message": "The consumer_name is forbidden."})
    assert (await call(gateway, "rose"))[0] == 200


async def test_blacklist_beats_whitelist(gateway) -> None:  # type: ignore[no-untyped-def]
    await setup(gateway, {"whitelist": ["jack", "rose"], "blacklist": ["jack"]})
    assert (await call(gateway, "jack"))[0] == 403
    assert (await call(gateway, "rose"))[0] == 200
    assert (await call(gateway, "tom"))[0] == 403


async def test_rejected_code_and_msg(gateway) -> None:  # type: ignore[no-untyped-def]
    await setup(gateway, {"blacklist": ["jack"], "rejected_code": 401, "rejected_msg": "go away"})
    assert await call(gateway, "jack") == (401, {"message": "go away"})


@pytest.mark.parametrize(
    ("who", "method", "status"),
    [
        pytest.param("jack", "POST", 200, id="listed-method"),
        pytest.param("jack", "GET", 200, id="listed-method-2"),
        pytest.param("jack", "DELETE", 403, id="unlisted-method"),
        pytest.param("rose", "PUT", 403, id="first-entry-decides"),
        pytest.param("rose", "DELETE", 403, id="unlisted-method-2"),
        pytest.param("tom", "DELETE", 200, id="consumer-not-listed-entry-without-user-ignored"),
    ],
)
async def test_allowed_by_methods(gateway, who: str, method: str, status: int) -> None:  # type: ignore[no-untyped-def]
    await setup(
        gateway,
        {
            "allowed_by_methods": [
                {"user": "jack", "methods": ["POST", "GET"]},
                {"user": "rose", "methods": ["GET"]},
                {"user": "rose", "methods": ["PUT"]},
                {"methods": ["DELETE"]},
            ]
        },
    )
    got, body = await call(gateway, who, method)
    assert got == status
    if status == 403:
        assert body == {"message": "The consumer_name is forbidden."}


async def test_entry_without_methods_allows_none(gateway) -> None:  # type: ignore[no-untyped-def]
    """APISIX fails with a 500 on such an entry; llmgate lets that consumer use no method."""
    await setup(gateway, {"allowed_by_methods": [{"user": "tom"}]})
    assert (await call(gateway, "tom"))[0] == 403
    assert (await call(gateway, "jack"))[0] == 200


async def test_whitelisted_skips_method_rules(gateway) -> None:  # type: ignore[no-untyped-def]
    await setup(
        gateway,
        {"whitelist": ["jack"], "allowed_by_methods": [{"user": "jack", "methods": ["POST"]}]},
    )
    assert (await call(gateway, "jack", "DELETE"))[0] == 200
    assert (await call(gateway, "rose", "POST"))[0] == 403


async def test_without_a_consumer(gateway) -> None:  # type: ignore[no-untyped-def]
    await gateway.put(
        "routes/1",
        {
            "uri": "/anything/*",
            "plugins": {"consumer-restriction": {"whitelist": ["jack"]}},
            "upstream": gateway.upstream(),
        },
    )
    resp = await gateway.proxy.get("/anything/x")
    assert resp.status == 401
    assert await resp.json() == {
        "message": "The request is rejected, please check the consumer_name for this request"
    }
    assert await gateway.fake_requests() == []


async def test_consumer_group_id(gateway) -> None:  # type: ignore[no-untyped-def]
    await setup(gateway, {"type": "consumer_group_id", "whitelist": ["gold"]})
    assert (await call(gateway, "jack"))[0] == 200
    status, body = await call(gateway, "rose")  # in no group at all
    assert status == 401
    assert body == {
        "message": "The request is rejected, please check the consumer_group_id for this request"
    }


async def test_route_id(gateway) -> None:  # type: ignore[no-untyped-def]
    await setup(gateway, {"type": "route_id", "blacklist": ["1"]})
    assert await call(gateway, "jack") == (403, {"message": "The route_id is forbidden."})


async def test_service_id_of_a_route_without_a_service(gateway) -> None:  # type: ignore[no-untyped-def]
    await setup(gateway, {"type": "service_id", "whitelist": ["1"]})
    status, body = await call(gateway, "jack")
    assert status == 401
    assert body["message"].endswith("check the service_id for this request")


async def test_service_id(gateway) -> None:  # type: ignore[no-untyped-def]
    await gateway.put("services/s1", {"upstream": gateway.upstream()})
    await setup(gateway, {"type": "service_id", "whitelist": ["s1"]}, service_id="s1")
    assert (await call(gateway, "jack"))[0] == 200
    await setup(gateway, {"type": "service_id", "blacklist": ["s1"]}, service_id="s1")
    assert await call(gateway, "jack") == (403, {"message": "The service_id is forbidden."})


async def test_services_a_consumer_may_use(gateway) -> None:  # type: ignore[no-untyped-def]
    """APISIX's example: a consumer's own restriction names the services it may reach."""
    await gateway.put("services/s1", {"upstream": gateway.upstream()})
    await gateway.put("services/s2", {"upstream": gateway.upstream()})
    await gateway.put(
        "consumers",
        {
            "username": "jack",
            "plugins": {
                "key-auth": {"key": "key-jack"},
                "consumer-restriction": {"type": "service_id", "whitelist": ["s1"]},
            },
        },
    )
    for route_id, service_id in (("1", "s1"), ("2", "s2")):
        await gateway.put(
            f"routes/{route_id}",
            {"uri": f"/{route_id}/*", "service_id": service_id, "plugins": {"key-auth": {}}},
        )
    headers = {"apikey": "key-jack"}
    assert (await gateway.proxy.get("/1/x", headers=headers)).status == 200
    resp = await gateway.proxy.get("/2/x", headers=headers)
    assert resp.status == 403
    assert await resp.json() == {"message": "The service_id is forbidden."}


async def test_restriction_on_a_consumer(gateway) -> None:  # type: ignore[no-untyped-def]
    """A consumer's own consumer-restriction runs once the consumer is known."""
    await gateway.put(
        "consumers",
        {
            "username": "jack",
            "plugins": {
                "basic-auth": {"username": "jack", "password": "pw"},
                "consumer-restriction": {
                    "allowed_by_methods": [{"user": "jack", "methods": ["GET"]}]
                },
            },
        },
    )
    await gateway.put(
        "routes/1",
        {"uri": "/anything/*", "plugins": {"basic-auth": {}}, "upstream": gateway.upstream()},
    )
    auth = {"Authorization": "Basic amFjazpwdw=="}  # jack:pw
    assert (await gateway.proxy.get("/anything/x", headers=auth)).status == 200
    resp = await gateway.proxy.post("/anything/x", headers=auth, data=b"{}")
    assert resp.status == 403
    assert await resp.json() == {"message": "The consumer_name is forbidden."}
