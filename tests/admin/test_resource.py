"""The generic CRUD: envelopes, status codes, ids, PATCH, DELETE and references."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

UPSTREAM = {"type": "roundrobin", "nodes": {"127.0.0.1:1980": 1}}
ROUTE = {"uri": "/hello", "upstream_id": "1"}


async def put(admin, path: str, body: Any) -> tuple[int, Any]:  # type: ignore[no-untyped-def]
    resp = await admin.put(f"/apisix/admin/{path}", json=body)
    return resp.status, await resp.json()


async def get(admin, path: str) -> tuple[int, Any]:  # type: ignore[no-untyped-def]
    resp = await admin.get(f"/apisix/admin/{path}")
    return resp.status, await resp.json()


async def test_put_creates_then_replaces(admin) -> None:  # type: ignore[no-untyped-def]
    status, body = await put(admin, "upstreams/1", UPSTREAM)
    assert status == 201
    assert body["key"] == "/apisix/upstreams/1"
    value = body["value"]
    assert value["id"] == "1" and value["nodes"] == UPSTREAM["nodes"]
    assert isinstance(value["create_time"], int) and isinstance(value["update_time"], int)
    status, body2 = await put(admin, "upstreams/1", {**UPSTREAM, "name": "x"})
    assert status == 200
    assert body2["value"]["create_time"] == value["create_time"]
    assert body2["value"]["name"] == "x"


async def test_no_defaults_are_written(admin) -> None:  # type: ignore[no-untyped-def]
    await put(admin, "upstreams/1", UPSTREAM)
    status, body = await put(admin, "routes/1", ROUTE)
    assert status == 201
    assert set(body["value"]) == {"uri", "upstream_id", "id", "create_time", "update_time"}
    _, got = await get(admin, "routes/1")
    assert set(got["value"]) == set(body["value"])


async def test_get_one_and_list_envelopes(admin) -> None:  # type: ignore[no-untyped-def]
    await put(admin, "upstreams/1", UPSTREAM)
    await put(admin, "routes/1", ROUTE)
    await put(admin, "routes/1", {**ROUTE, "name": "renamed"})
    status, body = await get(admin, "routes/1")
    assert status == 200
    assert body["key"] == "/apisix/routes/1"
    assert body["createdIndex"] == 2 and body["modifiedIndex"] == 3
    assert body["value"]["name"] == "renamed"
    status, listing = await get(admin, "routes")
    assert status == 200 and listing["total"] == 1
    assert listing["list"][0] == body


async def test_unknown_id_is_404(admin) -> None:  # type: ignore[no-untyped-def]
    for method in ("get", "delete", "patch"):
        resp = await admin.request(method, "/apisix/admin/routes/nope", json={"uri": "/x"})
        assert resp.status == 404, method
        assert await resp.json() == {"message": "Key not found"}


async def test_unsupported_resource_type(admin) -> None:  # type: ignore[no-untyped-def]
    status, body = await get(admin, "nothings/1")
    assert status == 404 and body == {"error_msg": "Unsupported resource type: nothings"}


async def test_post_generates_an_id(admin) -> None:  # type: ignore[no-untyped-def]
    resp = await admin.post("/apisix/admin/upstreams", json=UPSTREAM)
    assert resp.status == 201
    body = await resp.json()
    new_id = body["value"]["id"]
    assert body["key"] == f"/apisix/upstreams/{new_id}"
    resp2 = await admin.post("/apisix/admin/upstreams", json=UPSTREAM)
    assert (await resp2.json())["value"]["id"] != new_id
    status, got = await get(admin, f"upstreams/{new_id}")
    assert status == 200 and got["value"]["nodes"] == UPSTREAM["nodes"]


@pytest.mark.parametrize(
    ("path", "kind"), [("plugin_configs", "plugin config"), ("consumers", "consumer")]
)
async def test_post_not_allowed(admin, path: str, kind: str) -> None:  # type: ignore[no-untyped-def]
    resp = await admin.post(f"/apisix/admin/{path}", json={"plugins": {}})
    assert resp.status == 405
    assert await resp.json() == {"error_msg": f"not supported `POST` method for {kind}"}


async def test_post_with_an_id_is_refused(admin) -> None:  # type: ignore[no-untyped-def]
    resp = await admin.post("/apisix/admin/upstreams", json={**UPSTREAM, "id": "7"})
    assert resp.status == 400
    assert await resp.json() == {"error_msg": "wrong upstream id, do not need it"}


async def test_put_ids(admin) -> None:  # type: ignore[no-untyped-def]
    status, body = await put(admin, "upstreams", UPSTREAM)
    assert (status, body) == (400, {"error_msg": "missing upstream id"})
    status, body = await put(admin, "upstreams/1", {**UPSTREAM, "id": "2"})
    assert (status, body) == (400, {"error_msg": "wrong upstream id"})
    status, body = await put(admin, "upstreams", {**UPSTREAM, "id": "9"})
    assert status == 201 and body["key"] == "/apisix/upstreams/9"
    status, body = await put(admin, "upstreams/1", {**UPSTREAM, "id": 1})
    assert status == 201  # an integer id equal to the path's is fine
    status, body = await put(admin, "upstreams/bad%20id", UPSTREAM)
    assert status == 400
    assert body["error_msg"].startswith('invalid configuration: property "id" validation failed')
    status, body = await put(admin, "routes/" + "a" * 65, {"uri": "/a", "upstream": UPSTREAM})
    assert status == 400 and '"id"' in body["error_msg"]
    # APISIX's id rule: 64 characters at most, which the store holds (SQLite and PostgreSQL).
    longest = "a" * 64
    for kind, conf in (
        ("upstreams", UPSTREAM),
        ("services", {"upstream_id": longest}),
        ("routes", {"uri": "/a", "upstream_id": longest, "service_id": longest}),
    ):
        status, body = await put(admin, f"{kind}/{longest}", conf)
        assert status == 201, (kind, body)
        status, body = await get(admin, f"{kind}/{longest}")
        assert (status, body["key"]) == (200, f"/apisix/{kind}/{longest}")


@pytest.mark.parametrize("body_id", [0, -1, 1.5, True, ""])
async def test_an_id_taken_from_the_body_must_be_a_valid_id(admin, body_id) -> None:  # type: ignore[no-untyped-def]
    # APISIX checks the body's id against its id schema (a string of [a-zA-Z0-9-_.], or an
    # integer from 1) when the path has none: ``{"id": 1.5}`` must not become route "1.5".
    status, body = await put(admin, "upstreams", {**UPSTREAM, "id": body_id})
    assert status == 400, body
    assert body["error_msg"].startswith('invalid configuration: property "id"'), body
    status, body = await get(admin, "upstreams")
    assert body == {"list": [], "total": 0}
    # With an id in the path, the path's id is the one checked (and an equal body id is fine).
    status, body = await put(admin, "upstreams/7", {**UPSTREAM, "id": 7})
    assert status == 201


async def test_invalid_json_and_oversize_bodies(admin) -> None:  # type: ignore[no-untyped-def]
    resp = await admin.put("/apisix/admin/upstreams/1", data=b'{"nodes": ')
    assert resp.status == 400
    assert (await resp.json())["error_msg"].startswith("invalid request body: ")
    big = {"nodes": {"127.0.0.1:1": 1}, "desc": "x" * (1024 * 1024 * 2)}
    resp = await admin.put("/apisix/admin/upstreams/1", json=big)
    assert resp.status == 400
    assert "greater than the maximum size" in (await resp.json())["error_msg"]
    resp = await admin.put("/apisix/admin/upstreams/1", data=b"")
    assert resp.status == 400
    assert await resp.json() == {"error_msg": "missing configurations"}
    resp = await admin.put("/apisix/admin/upstreams/1", data=b"[1, 2]")
    assert resp.status == 400
    assert (await resp.json())["error_msg"].startswith("invalid configuration")


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        ("routes/1", {"uri": 1, "upstream_id": "1"}, 'property "uri" validation failed'),
        ("routes/1", {"uri": "/a", "upstream_id": "1", "foo": 1}, "found foo"),
        (
            "routes/1",
            {"uri": "/a", "methods": ["FETCH"], "upstream": UPSTREAM},
            '"methods" validation failed: failed to validate item 1',
        ),
        ("routes/1", {"uri": "/a", "priority": "1", "upstream": UPSTREAM}, '"priority"'),
        ("routes/1", {"uri": "/a", "status": 3, "upstream": UPSTREAM}, '"status"'),
        ("routes/1", {"uri": "/a", "host": "a b", "upstream": UPSTREAM}, '"host"'),
        (
            "routes/1",
            {"uri": "/a", "upstream": {"nodes": {"h:1": "x"}}},
            '"upstream" validation failed: property "nodes"',
        ),
        ("upstreams/1", {"nodes": {"h:1": 1}, "type": "random"}, '"type"'),
        ("upstreams/1", {"nodes": {"h:1": 1}, "scheme": "ftp"}, '"scheme"'),
        ("upstreams/1", {"nodes": {"h:1": -1}}, '"nodes'),
        (
            "upstreams/1",
            {"nodes": [{"host": "h", "port": 70000, "weight": 1}]},
            '"nodes" validation failed: object matches none of the required',  # anyOf, as APISIX
        ),
        ("upstreams/1", {"nodes": {"h:1": 1}, "retries": -1}, '"retries"'),
        (
            "upstreams/1",
            {"nodes": {"h:1": 1}, "timeout": {"connect": 1}},
            '"timeout" validation failed: property "send" is required',
        ),
        ("upstreams/1", {"nodes": {"h:99999": 1}}, "invalid port '99999'"),
        ("upstreams/1", {"nodes": {"127.0.0.1:\u0663": 1}}, "invalid port '\u0663'"),
        ("upstreams/1", {"nodes": {"h:\u00b2": 1}}, "invalid port '\u00b2'"),
        ("upstreams/1", {"nodes": {"h:": 1}}, "invalid port ''"),
        ("upstreams/1", {"nodes": {"::\u0663": 1}}, "invalid node address"),
        ("upstreams/1", {"nodes": {"h\u0663:80": 1}}, "invalid node address"),
        ("upstreams/1", {"nodes": {"[::1]:\u0663": 1}}, "invalid port '\u0663'"),
        ("routes/1", {"uri": "/a", "upstream": {"nodes": {"h:\u0663": 1}}}, "invalid port"),
        ("upstreams/1", {"nodes": {"h:1": 1}, "pass_host": "rewrite"}, "upstream_host"),
        ("upstreams/1", {"nodes": {"h:1": 1}, "type": "chash"}, "missing key"),
        ("upstreams/1", {"type": "roundrobin"}, '"nodes" is required'),
        ("plugin_configs/1", {}, '"plugins" is required'),
        ("consumers", {"username": "a b"}, '"username"'),
        ("consumers", {"plugins": {}}, '"username" is required'),
    ],
)
async def test_schema_errors_name_the_property(admin, path, body, message) -> None:  # type: ignore[no-untyped-def]
    status, answer = await put(admin, path, body)
    assert status == 400, answer
    assert answer["error_msg"].startswith("invalid configuration: "), answer
    assert message in answer["error_msg"], answer


async def test_route_needs_uri_and_a_target(admin) -> None:  # type: ignore[no-untyped-def]
    status, body = await put(admin, "routes/1", {"upstream": UPSTREAM})
    assert status == 400 and "matches none" in body["error_msg"]
    status, body = await put(admin, "routes/1", {"uri": "/a"})
    assert status == 400 and "upstream" in body["error_msg"]
    status, body = await put(admin, "routes/1", {"uri": "/a", "uris": ["/b"], "upstream": UPSTREAM})
    assert status == 400
    status, body = await put(
        admin, "routes/1", {"uri": "/a", "host": "a.com", "hosts": ["b.com"], "upstream": UPSTREAM}
    )
    assert status == 400 and "only one of host or hosts" in body["error_msg"]


async def test_route_without_uri_or_uris_reads_as_apisix(admin) -> None:  # type: ignore[no-untyped-def]
    # APISIX's route schema: allOf[1] is oneOf(required uri, required uris) (t/admin/schema-validate.t).
    message = "allOf 1 failed: value should match only one schema, but matches none"
    status, body = await put(admin, "routes/1", {"upstream": UPSTREAM})
    assert (status, body) == (400, {"error_msg": f"invalid configuration: {message}"})
    # schema/validate answers what a PUT would (docs/compatibility.md).
    resp = await admin.post("/apisix/admin/schema/validate/routes", json={"upstream": UPSTREAM})
    assert (resp.status, await resp.json()) == (
        400,
        {"error_msg": f"invalid configuration: {message}"},
    )


async def test_timestamps_are_forbidden_on_put(admin) -> None:  # type: ignore[no-untyped-def]
    status, body = await put(admin, "upstreams/1", {**UPSTREAM, "create_time": 1})
    assert status == 400
    assert body == {"error_msg": "the property is forbidden:  create_time"}


async def test_unknown_plugin_and_bad_plugin_config(admin) -> None:  # type: ignore[no-untyped-def]
    route = {"uri": "/a", "upstream": UPSTREAM}
    status, body = await put(admin, "routes/1", {**route, "plugins": {"nope": {}}})
    assert (status, body) == (400, {"error_msg": "unknown plugin [nope]"})
    status, body = await put(
        admin, "routes/1", {**route, "plugins": {"limit-count": {"count": "x", "time_window": 60}}}
    )
    assert status == 400
    assert body["error_msg"].startswith(
        "failed to check the configuration of plugin limit-count err: "
    )
    assert "count" in body["error_msg"]
    status, body = await put(
        admin, "plugin_configs/1", {"plugins": {"limit-count": {"time_window": 60}}}
    )
    assert status == 400
    assert body["error_msg"].startswith(
        "failed to check the configuration of plugin limit-count err: "
    )
    status, body = await put(admin, "routes/1", {**route, "plugins": {"basic-auth": "yes"}})
    assert (
        status == 400 and body["error_msg"] == 'invalid plugin conf "yes" for plugin [basic-auth]'
    )


@pytest.mark.parametrize(
    ("path", "stored", "body"),
    [
        (
            "routes/1",
            "routes/1",
            {
                "uri": "/a",
                "upstream": UPSTREAM,
                "plugins": {"proxy-rewrite": {"headers": {"X-K": "$env://LLMGATE_ADMIN_KEY"}}},
            },
        ),
        (
            "consumers",
            "consumers/u",
            {"username": "u", "plugins": {"key-auth": {"key": "$env://LLMGATE_ADMIN_KEY"}}},
        ),
        (
            "plugin_configs/1",
            "plugin_configs/1",
            {"plugins": {"cors": {"expose_headers": "$env://LLMGATE_X"}}},
        ),
    ],
)
async def test_env_refs_to_the_gateways_own_variables_are_refused(
    admin, path, stored, body
) -> None:  # type: ignore[no-untyped-def]
    status, answer = await put(admin, path, body)
    assert status == 400
    assert "$env://LLMGATE_" in answer["error_msg"]
    assert "cannot be read" in answer["error_msg"]
    assert (await get(admin, stored))[0] == 404


async def test_missing_references(admin) -> None:  # type: ignore[no-untyped-def]
    status, body = await put(admin, "routes/1", {"uri": "/a", "upstream_id": "9"})
    assert (status, body) == (
        400,
        {"error_msg": "failed to fetch upstream info by upstream id [9], response code: 404"},
    )
    status, body = await put(
        admin, "routes/1", {"uri": "/a", "upstream": UPSTREAM, "plugin_config_id": 4}
    )
    assert (status, body) == (
        400,
        {
            "error_msg": "failed to fetch plugin config info by plugin config id [4], "
            "response code: 404"
        },
    )


async def test_rejected_write_changes_nothing(admin, store) -> None:  # type: ignore[no-untyped-def]
    await put(admin, "upstreams/1", UPSTREAM)
    before = await store.revision()
    status, _ = await put(admin, "upstreams/1", {"nodes": "broken"})
    assert status == 400
    assert await store.revision() == before
    _, got = await get(admin, "upstreams/1")
    assert got["value"]["nodes"] == UPSTREAM["nodes"]


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("consumers", {"username": "jack", "labels": None}, "labels"),
        ("routes/1", {**ROUTE, "desc": None}, "desc"),
        ("upstreams/1", {**UPSTREAM, "name": None}, "name"),
        ("services/1", {"upstream_id": "1", "plugins": None}, "plugins"),
        ("routes/2", {"uri": "/a", "upstream": {**UPSTREAM, "timeout": None}}, "upstream.timeout"),
        ("consumer_groups/1", {"plugins": {}, "labels": None}, "labels"),
    ],
)
async def test_a_null_field_is_refused_not_stored(admin, path: str, body: Any, field: str) -> None:  # type: ignore[no-untyped-def]
    """As APISIX ("wrong type ... got userdata"): a stored null was echoed in every GET,
    against the OpenAPI document's own schema (``labels`` is an object).  PATCH's null still
    deletes a field."""
    await put(admin, "upstreams/1", UPSTREAM)
    status, got = await put(admin, path, body)
    assert status == 400
    assert got == {
        "error_msg": f'invalid configuration: property "{field}" validation failed: '
        "wrong type: got null"
    }
    key = "consumers/jack" if path == "consumers" else path
    if path != "upstreams/1":
        assert (await get(admin, key))[0] == 404
    resp = await admin.patch("/apisix/admin/upstreams/1", json={"desc": "d"})
    assert resp.status == 200
    resp = await admin.patch("/apisix/admin/upstreams/1", json={"desc": None})
    assert resp.status == 200 and "desc" not in (await resp.json())["value"]


async def test_delete(admin) -> None:  # type: ignore[no-untyped-def]
    await put(admin, "upstreams/abc", UPSTREAM)
    resp = await admin.delete("/apisix/admin/upstreams/abc")
    assert resp.status == 200
    assert await resp.json() == {"deleted": "1", "key": "/apisix/upstreams/abc"}
    status, _ = await get(admin, "upstreams/abc")
    assert status == 404
    resp = await admin.delete("/apisix/admin/upstreams")
    assert resp.status == 400 and await resp.json() == {"error_msg": "missing upstream id"}


async def test_a_nul_in_an_id_is_not_found_not_a_store_outage(admin) -> None:  # type: ignore[no-untyped-def]
    # No id holds a NUL (PUT refuses it) and PostgreSQL cannot even compare one: it answered
    # 503 "store unavailable" and logged an outage.
    for method, path in (
        ("GET", "routes/a%00b"),
        ("DELETE", "upstreams/%00"),
        ("PATCH", "services/%00"),
        ("GET", "consumers/%00/credentials"),
        ("PUT", "consumers/%00/credentials/c1"),
    ):
        resp = await admin.request(method, f"/apisix/admin/{path}", json={"desc": "x"})
        assert resp.status < 500, (method, path, await resp.text())
        assert await resp.json()


async def test_delete_referenced_upstream_and_plugin_config(admin) -> None:  # type: ignore[no-untyped-def]
    await put(admin, "upstreams/1", UPSTREAM)
    await put(admin, "plugin_configs/1", {"plugins": {}})
    await put(admin, "routes/1", {**ROUTE, "plugin_config_id": 1})
    resp = await admin.delete("/apisix/admin/upstreams/1")
    assert resp.status == 400
    assert await resp.json() == {
        "error_msg": "can not delete this upstream, route [1] is still using it now"
    }
    resp = await admin.delete("/apisix/admin/plugin_configs/1")
    assert resp.status == 400
    assert await resp.json() == {
        "error_msg": "can not delete this plugin config, route [1] is still using it now"
    }
    assert (await get(admin, "upstreams/1"))[0] == 200
    resp = await admin.delete("/apisix/admin/upstreams/1?force=true")
    assert resp.status == 200
    resp = await admin.delete("/apisix/admin/plugin_configs/1?force=true")
    assert resp.status == 200
    assert (await get(admin, "upstreams/1"))[0] == 404


async def test_patch_merges(admin) -> None:  # type: ignore[no-untyped-def]
    await put(
        admin,
        "routes/1",
        {
            "uri": "/a",
            "methods": ["GET", "POST"],
            "desc": "old",
            "upstream": {
                "nodes": {"127.0.0.1:1": 1, "127.0.0.1:2": 1},
                "timeout": {"connect": 1, "send": 1, "read": 1},
            },
        },
    )
    resp = await admin.patch(
        "/apisix/admin/routes/1",
        json={
            "methods": ["PUT"],
            "desc": None,
            "upstream": {"nodes": {"127.0.0.1:2": None, "127.0.0.1:3": 5}, "timeout": {"read": 9}},
        },
    )
    assert resp.status == 200
    value = (await resp.json())["value"]
    assert value["methods"] == ["PUT"]  # arrays replace
    assert "desc" not in value  # null deletes
    assert value["upstream"]["nodes"] == {"127.0.0.1:1": 1, "127.0.0.1:3": 5}  # objects merge
    assert value["upstream"]["timeout"] == {"connect": 1, "send": 1, "read": 9}
    assert (await get(admin, "routes/1"))[1]["value"] == value


async def test_patch_sub_path(admin) -> None:  # type: ignore[no-untyped-def]
    await put(
        admin,
        "routes/1",
        {
            "uri": "/a",
            "upstream": UPSTREAM,
            "plugins": {"limit-count": {"count": 1, "time_window": 60}},
        },
    )
    resp = await admin.patch(
        "/apisix/admin/routes/1/plugins/limit-count", json={"count": 5, "time_window": 30}
    )
    assert resp.status == 200
    value = (await resp.json())["value"]
    assert value["plugins"]["limit-count"] == {"count": 5, "time_window": 30}
    resp = await admin.patch("/apisix/admin/routes/1/uri", json="/b")
    assert resp.status == 200 and (await resp.json())["value"]["uri"] == "/b"
    resp = await admin.patch("/apisix/admin/routes/1/methods", json=["GET"])
    assert (await resp.json())["value"]["methods"] == ["GET"]


@pytest.mark.parametrize(("levels", "body"), [(70, "v"), (250, "v"), (30, None)])
async def test_a_sub_path_patch_nests_no_deeper_than_a_body_may(
    admin, levels: int, body: Any
) -> None:  # type: ignore[no-untyped-def]
    """A body is refused past 64 levels, but a sub-path adds its own: 250 levels under an
    open plugin config were stored, and every later list of routes was a 500 (the JSON
    encoder's recursion limit, reached with the envelope's levels)."""
    if body is None:
        body = {}
        for _ in range(40):
            body = {"x": body}  # 30 path levels + 41 of body
    await put(admin, "routes/1", {"uri": "/a", "upstream": UPSTREAM, "plugins": {"key-auth": {}}})
    path = "/apisix/admin/routes/1/plugins/key-auth/" + "x/" * levels + "y"
    resp = await admin.patch(path, json=body)
    assert resp.status == 400, await resp.text()
    assert await resp.json() == {"error_msg": "invalid configuration: nested deeper than 64 levels"}
    resp = await admin.get("/apisix/admin/routes")
    assert resp.status == 200
    assert (await resp.json())["list"][0]["value"]["plugins"] == {"key-auth": {}}


async def test_patch_invalid_result_is_rejected(admin) -> None:  # type: ignore[no-untyped-def]
    await put(admin, "routes/1", {"uri": "/a", "upstream": UPSTREAM})
    resp = await admin.patch("/apisix/admin/routes/1", json={"uri": 5})
    assert resp.status == 400
    resp = await admin.patch("/apisix/admin/routes/1/plugins/limit-count", json={"count": "x"})
    assert resp.status == 400
    resp = await admin.patch("/apisix/admin/routes/1/uri/deeper", json="x")
    assert resp.status == 400
    resp = await admin.patch("/apisix/admin/routes/1", json=[1])
    assert resp.status == 400 and await resp.json() == {"error_msg": "invalid configuration"}
    resp = await admin.patch("/apisix/admin/routes/1", data=b"")
    assert resp.status == 400 and await resp.json() == {"error_msg": "missing new configuration"}
    resp = await admin.patch("/apisix/admin/routes/1", json={"id": "2"})
    assert resp.status == 400 and await resp.json() == {"error_msg": "wrong route id"}
    assert (await get(admin, "routes/1"))[1]["value"]["uri"] == "/a"


async def test_patch_not_allowed_on_consumers(admin) -> None:  # type: ignore[no-untyped-def]
    await put(admin, "consumers", {"username": "jack"})
    resp = await admin.patch("/apisix/admin/consumers/jack", json={"desc": "x"})
    assert resp.status == 405
    assert await resp.json() == {"error_msg": "not supported `PATCH` method for consumer"}


async def test_plugins_list_and_schema(admin) -> None:  # type: ignore[no-untyped-def]
    resp = await admin.get("/apisix/admin/plugins/list")
    names = await resp.json()
    for name in (
        "basic-auth",
        "key-auth",
        "limit-count",
        "proxy-rewrite",
        "proxy-cache",
        "ai-proxy",
    ):
        assert name in names
    resp = await admin.get("/apisix/admin/plugins/limit-count")
    assert resp.status == 200
    schema = await resp.json()
    assert "count" in schema["properties"]
    resp = await admin.get("/apisix/admin/plugins/basic-auth?schema_type=consumer")
    assert set((await resp.json())["required"]) >= {"username", "password"}
    resp = await admin.get("/apisix/admin/plugins/nope")
    assert resp.status == 404
    assert await resp.json() == {"error_msg": "plugin not found in subsystem http"}


async def test_upstream_discovery_args_only_empty(admin) -> None:  # type: ignore[no-untyped-def]
    """The APISIX Dashboard sends ``"discovery_args": {}`` with every upstream; llmgate has no
    service discovery, so anything in it is refused."""
    body = {"nodes": {"127.0.0.1:1980": 1}, "discovery_args": {}}
    resp = await admin.put("/apisix/admin/upstreams/d1", json=body)
    assert resp.status == 201
    assert (await resp.json())["value"]["discovery_args"] == {}
    body["discovery_args"] = {"namespace_id": "public"}
    resp = await admin.put("/apisix/admin/upstreams/d1", json=body)
    assert resp.status == 400
    assert "discovery_args" in (await resp.json())["error_msg"]
    resp = await admin.put(
        "/apisix/admin/upstreams/d2",
        json={"service_name": "a", "discovery_type": "dns", "discovery_args": {}},
    )
    assert resp.status == 400


@pytest.mark.parametrize(
    "fields",
    [
        {"service_name": "a", "discovery_type": "dns"},
        {"service_name": "a", "discovery_type": "nacos", "nodes": {"127.0.0.1:1980": 1}},
        {"discovery_type": "consul", "nodes": {"127.0.0.1:1980": 1}},
        {"service_name": "a", "nodes": {"127.0.0.1:1980": 1}},
    ],
)
async def test_service_discovery_is_refused_by_name(admin, fields) -> None:  # type: ignore[no-untyped-def]
    """APISIX resolves ``service_name`` through a ``discovery_type`` registry; llmgate has no
    service discovery, so an upstream asking for it is a 400 that says so (not a schema error
    about ``nodes``), inline in a route too."""
    for path, body in (("upstreams/sd", fields), ("routes/sd", {"uri": "/sd", "upstream": fields})):
        resp = await admin.put(f"/apisix/admin/{path}", json=body)
        assert resp.status == 400
        message = (await resp.json())["error_msg"]
        name = "discovery_type" if "discovery_type" in fields else "service_name"
        assert f"{name} is not supported: llmgate has no service discovery" in message, message


async def test_an_inline_upstream_may_have_a_name_desc_and_labels(admin) -> None:  # type: ignore[no-untyped-def]
    """As in APISIX (its upstream schema, inline too); the Dashboard's route form sends them."""
    upstream = {"nodes": {"127.0.0.1:1980": 1}, "name": "u", "desc": "d", "labels": {"a": "b"}}
    resp = await admin.put("/apisix/admin/routes/named", json={"uri": "/n", "upstream": upstream})
    assert resp.status == 201, await resp.text()
    upstream["labels"] = {"a": "has space"}
    resp = await admin.put("/apisix/admin/routes/named", json={"uri": "/n", "upstream": upstream})
    assert resp.status == 400


async def test_patch_with_an_empty_object_replaces_it(admin) -> None:  # type: ignore[no-untyped-def]
    """APISIX's merge treats ``{}`` as an array (OpenResty's ``table.isarray``): it replaces
    the stored object, so ``{"plugins": {}}`` removes every plugin."""
    await put(admin, "upstreams/1", UPSTREAM)
    await put(admin, "routes/1", {**ROUTE, "plugins": {"cors": {}, "request-id": {}}})
    resp = await admin.patch("/apisix/admin/routes/1", json={"plugins": {}})
    assert resp.status == 200
    assert (await resp.json())["value"]["plugins"] == {}
    _, got = await get(admin, "routes/1")
    assert got["value"]["plugins"] == {}
    resp = await admin.patch("/apisix/admin/routes/1", json={})
    assert resp.status == 200
    _, again = await get(admin, "routes/1")
    assert again["value"]["plugins"] == {} and again["value"]["uri"] == "/hello"


CREATED_ONCE = [
    ("upstreams/u", UPSTREAM),
    ("routes/r", {"uri": "/a", "upstream": UPSTREAM}),
    ("services/s", {"upstream": UPSTREAM}),
    ("plugin_configs/p", {"plugins": {}}),
    ("global_rules/g", {"plugins": {}}),
    ("consumer_groups/cg", {"plugins": {}}),
    ("consumers/jack", {"username": "jack"}),
    ("consumers/jack/credentials/c", {"plugins": {"key-auth": {"key": "k"}}}),
]


async def test_concurrent_puts_of_one_new_id_answer_one_201(aiohttp_client, store_url) -> None:  # type: ignore[no-untyped-def]
    """Several admin processes (each its own engine) PUT the same new id at once: exactly one
    answers 201, the others 200, on SQLite and PostgreSQL."""
    from llmgate.admin.auth import AdminKeys
    from llmgate.app import build_admin_app
    from llmgate.store import Store, open_engine
    from tests.support import ADMIN_KEY, VIEWER_KEY

    stores = [Store(open_engine(store_url)) for _ in range(3)]
    try:
        clients = [
            await aiohttp_client(
                build_admin_app(store, AdminKeys(ADMIN_KEY, VIEWER_KEY)),
                headers={"X-API-KEY": ADMIN_KEY},
            )
            for store in stores
        ]
        for path, body in CREATED_ONCE:
            for round in range(3):
                where = f"{path}{round}" if not path.startswith("consumers/jack") else path
                if where == path and round:
                    await clients[0].delete(f"/apisix/admin/{path}")
                answers = await asyncio.gather(
                    *(c.put(f"/apisix/admin/{where}", json=body) for c in clients for _ in range(3))
                )
                statuses = sorted(answer.status for answer in answers)
                assert statuses == [200] * 8 + [201], (where, statuses)
    finally:
        for store in stores:
            await store.close()
