"""The schema API against a real ``llmgate serve``: ``/schema/{resource}``,
``/schema/plugins/{name}``, ``/schema/validate/{resource}``, ``/plugins?all=true``,
``/plugins/list`` and ``/plugins/reload``, with APISIX's shapes, and hostile callers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from llmgate.admin import json_schema
from llmgate.plugins import REGISTRY
from tests.net import LiveGateway, RawClient, http_json
from tests.support import ADMIN_KEY, VIEWER_KEY

BAD_ROUTE = {"uri": "/x", "upstream": {"nodes": {"127.0.0.1:1": 1}, "type": "nope"}}


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveGateway]:
    workdir = tmp_path_factory.mktemp("schema-api")
    with LiveGateway(workdir, env={"LLMGATE_VIEWER_KEY": VIEWER_KEY}) as live:
        yield live


def raw(gw: LiveGateway, method: str, path: str, body: bytes = b"") -> tuple[int, bytes, str]:
    """One admin request over a socket: status, body bytes and content type."""
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: x\r\nX-API-KEY: {ADMIN_KEY}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    with RawClient(gw.admin_port) as client:
        client.send(head + body)
        response = client.read_response(method)
    return response.status, response.body, response.header("content-type") or ""


def test_plugins_all_in_apisix_shape(gw: LiveGateway) -> None:
    status, body, ctype = raw(gw, "GET", "/apisix/admin/plugins?all=true&subsystem=http")
    assert status == 200 and ctype.startswith("application/json")
    assert b"$defs" not in body and b"$ref" not in body and b'"title"' not in body
    plugins = json.loads(body)
    assert set(plugins) == set(REGISTRY)
    limit = plugins["limit-count"]
    assert limit["priority"] == REGISTRY["limit-count"].priority
    assert limit["schema"]["properties"]["policy"]["enum"] == [
        "local",
        "redis",
        "redis-cluster",
        "redis-sentinel",
    ]
    assert "consumer_schema" not in limit
    assert plugins["key-auth"]["type"] == "auth"
    assert plugins["key-auth"]["consumer_schema"]["required"] == ["key"]
    # A plugin with metadata (plugin_metadata/{name}) shows its schema in both places.
    for name, cls in REGISTRY.items():
        if json_schema.metadata_model(cls) is None:
            assert "metadata_schema" not in plugins[name], name
            continue
        assert plugins[name]["metadata_schema"]["type"] == "object", name
        answer = gw.admin("GET", f"plugins/{name}?schema_type=metadata")
        assert answer == (200, plugins[name]["metadata_schema"]), name
    # all=true on a named plugin is the same listing (APISIX checks "all" first).
    assert gw.admin("GET", "plugins/key-auth?all=true") == (200, plugins)
    assert gw.admin("GET", "plugins?all=true&subsystem=stream") == (200, {})
    assert gw.admin("GET", "plugins") == (
        404,
        {"error_msg": "plugin not found in subsystem http"},
    )


def test_plugin_schema_under_both_paths(gw: LiveGateway) -> None:
    status, schema = gw.admin("GET", "schema/plugins/key-auth?subsystem=http")
    assert status == 200
    assert gw.admin("GET", "plugins/key-auth") == (200, schema)
    assert "_meta" in schema["properties"] and "$defs" not in schema
    status, consumer = gw.admin("GET", "schema/plugins/key-auth?schema_type=consumer")
    assert status == 200 and consumer["required"] == ["key"]
    assert gw.admin("GET", "schema/plugins/limit-count?schema_type=consumer") == (
        400,
        {"error_msg": "not found schema"},
    )
    assert gw.admin("GET", "schema/plugins/limit-count?schema_type=metadata") == (
        400,
        {"error_msg": "not found schema"},
    )
    assert gw.admin("GET", "schema/plugins/nope") == (
        404,
        {"error_msg": "plugin not found in subsystem http"},
    )
    assert gw.admin("GET", "schema/plugins/key-auth?subsystem=stream") == (
        404,
        {"error_msg": "plugin not found in subsystem stream"},
    )
    assert gw.admin("GET", "schema/plugins/key-auth?subsystem=tcp") == (
        400,
        {"error_msg": "unsupported subsystem: tcp"},
    )


def test_resource_schemas(gw: LiveGateway) -> None:
    for name in ("route", "upstream", "consumer", "credential", "plugin_config"):
        status, schema = gw.admin("GET", f"schema/{name}")
        assert status == 200, name
        assert schema["type"] == "object" and "$defs" not in json.dumps(schema), name
    _, route = gw.admin("GET", "schema/route")
    assert route["properties"]["uri"] == {"type": "string", "minLength": 1, "maxLength": 4096}
    assert route["additionalProperties"] is False
    _, consumer = gw.admin("GET", "schema/consumer")
    assert "name" not in consumer["properties"] and consumer["required"] == ["username"]
    assert gw.admin("GET", "schema/routes") == (400, {"error_msg": "not found schema: routes"})


def test_validate_answers_as_a_write_would_and_writes_nothing(gw: LiveGateway) -> None:
    good = {"uri": "/v", "upstream": gw.upstream(), "plugins": {"key-auth": {}}}
    status, body, _ = raw(
        gw, "POST", "/apisix/admin/schema/validate/routes", json.dumps(good).encode()
    )
    assert (status, body) == (200, b"")
    cases: list[tuple[str, Any]] = [
        ("routes", BAD_ROUTE),
        ("routes", {"uri": "/x", "plugins": {"limit-count": {"count": "many"}}}),
        ("routes", {"uri": "/x", "plugins": {"no-such-plugin": {}}}),
        ("routes", {"uri": "/x", "upstream_id": "missing"}),
        ("routes", {"uris": ["/a", "/a"], "upstream": gw.upstream()}),
        ("upstreams", {"nodes": {"127.0.0.1:99999": 1}}),
        ("consumers", {"username": "bad name!"}),
        ("plugin_configs", {"plugins": {"key-auth": {"header": 5}}}),
        ("routes", [1, 2]),
        ("routes", {"uri": "/x", "upstream": gw.upstream(), "create_time": 1}),
    ]
    for resource, conf in cases:
        status, answer = gw.admin("POST", f"schema/validate/{resource}", conf)
        assert status == 400, (resource, conf, answer)
        target = f"{resource}/v1" if resource != "consumers" else resource
        put_status, put_answer = gw.admin("PUT", target, conf)
        assert (put_status, put_answer) == (400, answer), (resource, conf)
    for resource in ("routes", "upstreams", "consumers", "plugin_configs"):
        assert gw.admin("GET", resource)[1]["total"] == 0
    assert gw.admin("POST", "schema/validate/services_nope", good) == (
        404,
        {"error_msg": "Unsupported resource type: services_nope"},
    )
    assert gw.admin("POST", "schema/validate/routes")[0] == 400
    # A viewer may not POST, here as anywhere (APISIX's check_token).
    status, _ = gw.admin("POST", "schema/validate/routes", good, key=VIEWER_KEY)
    assert status == 401


def test_plugins_list_by_priority_and_reload(gw: LiveGateway) -> None:
    status, names = gw.admin("GET", "plugins/list")
    assert status == 200 and set(names) == set(REGISTRY)
    priorities = [REGISTRY[name].priority for name in names]
    assert priorities == sorted(priorities, reverse=True)
    assert gw.admin("GET", "plugins/list?subsystem=stream") == (200, [])
    assert gw.admin("GET", "plugins/list?subsystem=udp") == (400, "invalid subsystem passed")
    status, body, _ = raw(gw, "PUT", "/apisix/admin/plugins/reload")
    assert (status, body) == (200, b"done")
    for method in ("GET", "POST", "DELETE", "PATCH"):
        assert http_json(
            method,
            f"{gw.gw.admin_url}/apisix/admin/plugins/reload",
            headers={"X-API-KEY": ADMIN_KEY},
        ) == (
            405,
            {
                "error_msg": "please use PUT method to reload the plugins, "
                f"{method} method is not allowed."
            },
        )
    # Still behind the key.
    assert http_json("PUT", f"{gw.gw.admin_url}/apisix/admin/plugins/reload")[0] == 401


def test_hostile_names_and_bodies_get_4xx_never_5xx(gw: LiveGateway) -> None:
    huge = "a" * 7_000  # longer URLs end at the HTTP parser (414)
    for path in (
        f"/apisix/admin/schema/{huge}",
        f"/apisix/admin/schema/plugins/{huge}",
        f"/apisix/admin/plugins/{huge}?schema_type=metadata",
        "/apisix/admin/schema/%00%ff%2e%2e",
        "/apisix/admin/schema/plugins/..%2f..%2fetc%2fpasswd",
        "/apisix/admin/schema/%E2%80%AEroute",
        "/apisix/admin/schema/__class__",
        "/apisix/admin/schema/plugins/__init__",
        "/apisix/admin/plugins/list?subsystem=" + "x" * 5000,
        "/apisix/admin/schema/plugins/key-auth?subsystem=" + "x" * 5000,
    ):
        status, body, _ = raw(gw, "GET", path)
        assert 400 <= status < 500, (path[:80], status)
        assert len(body) < 2000, path[:80]  # a name is shown cut, never echoed whole
    status, body, _ = raw(gw, "POST", f"/apisix/admin/schema/validate/{huge}", b"{}")
    assert status == 404 and len(body) < 2000
    # Deep JSON: refused before anything recurses over it.
    deep = b"[" * 100_000 + b"]" * 100_000
    status, body, _ = raw(gw, "POST", "/apisix/admin/schema/validate/routes", deep)
    assert status == 400, body[:200]
    nested = b'{"a":' * 500 + b"1" + b"}" * 500
    status, body, _ = raw(gw, "POST", "/apisix/admin/schema/validate/routes", nested)
    assert status == 400 and b"nested deeper" in body
    # Deep but within the limit, in a field validation walks (vars).
    vars_deep = {"uri": "/x", "upstream": gw.upstream(), "vars": [[[[[[["a"]]]]]]] * 100}
    status, _ = gw.admin("POST", "schema/validate/routes", vars_deep)
    assert status == 400
    too_big = b'{"uri": "/x", "desc": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    status, body, _ = raw(gw, "POST", "/apisix/admin/schema/validate/routes", too_big)
    assert status == 400 and b"greater than the maximum size" in body
    status, _, _ = raw(gw, "POST", "/apisix/admin/schema/validate/routes", b"\xff\xfe{")
    assert status == 400
    # The admin API is alive and well afterwards.
    assert gw.admin("GET", "schema/route")[0] == 200


def test_validate_body_in_pieces(gw: LiveGateway) -> None:
    body = json.dumps({"uri": "/p", "upstream": gw.upstream()}).encode()
    head = (
        "POST /apisix/admin/schema/validate/routes HTTP/1.1\r\nHost: x\r\n"
        f"X-API-KEY: {ADMIN_KEY}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    with RawClient(gw.admin_port) as client:
        client.send_pieces(head + body, pieces=6)
        response = client.read_response("POST")
    assert response.status == 200 and response.body == b""
