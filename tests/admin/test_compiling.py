"""Validation is compilation: a write is refused (400, naming the field) exactly when the data
plane could not build it; what is accepted compiles."""

from __future__ import annotations

from typing import Any

import pytest

from llmgate.admin.auth import AdminKeys
from llmgate.app import build_admin_app
from llmgate.store import Store
from tests.support import ADMIN_KEY, VIEWER_KEY

UPSTREAM = {"type": "roundrobin", "nodes": {"127.0.0.1:1980": 1}}


@pytest.fixture
async def admin(aiohttp_client, sqlite_store: Store):  # type: ignore[no-untyped-def]
    app = build_admin_app(sqlite_store, AdminKeys(ADMIN_KEY, VIEWER_KEY))
    return await aiohttp_client(app, headers={"X-API-KEY": ADMIN_KEY})


async def put(admin, path: str, body: Any) -> tuple[int, Any]:  # type: ignore[no-untyped-def]
    resp = await admin.put(f"/apisix/admin/{path}", json=body)
    return resp.status, await resp.json()


def _deep(depth: int) -> list[Any]:
    rule: list[Any] = [["arg_x", "==", "1"]]
    for _ in range(depth):
        rule = ["OR", rule, ["arg_y", "==", "2"]]
    return rule


def route(**fields: Any) -> dict[str, Any]:
    return {"uri": "/r", "upstream": UPSTREAM, **fields}


REFUSED_ROUTES = [
    # conditions
    (route(vars=[["arg_x", "<>", "1"]]), "failed to validate the 'vars' expression"),
    (route(vars=["arg_x", "==", "1"]), "rule should be wrapped inside brackets"),
    (route(vars=[["http_x", "~~", "(unclosed"]]), "invalid regex"),
    (route(remote_addrs=["10.0.0.0/8", "not-an-ip"]), 'property "remote_addrs"'),
    # As the attacker with an admin key: nesting that would exhaust the compiler's stack.
    (route(vars=_deep(200)), "nested deeper than"),
    (route(remote_addr="10.0.0.0/33"), 'property "remote_addr"'),
    (route(filter_func="function(vars) return true end"), "filter_func is not supported"),
    (route(enable_websocket=True), "enable_websocket is not supported"),
    # _meta on any plugin
    (
        route(plugins={"key-auth": {"_meta": {"filter": [["arg_x", "=", 1]]}}}),
        "failed to validate the 'vars' expression",
    ),
    (route(plugins={"key-auth": {"_meta": {"pre_function": "return"}}}), "pre_function"),
    (route(plugins={"key-auth": {"_meta": {"disabled": True}}}), "_meta"),
    (
        route(plugins={"key-auth": {"_meta": {"priority": "1"}}}),
        '"_meta" validation failed: property "priority"',
    ),
    # regexes compiled as the plugin compiles them
    (
        route(
            plugins={
                "response-rewrite": {
                    "filters": [{"regex": "a", "replace": "b", "options": "joz"}],
                }
            }
        ),
        'unsupported regex option "z"',
    ),
    (route(plugins={"cors": {"allow_origins_by_regex": ["(x"]}}), "invalid regex"),
    # loggers' conditions are compiled when written, not found broken at request time
    (
        route(plugins={"file-logger": {"path": "/tmp/x.log", "match": [[["arg_x", "<>", "1"]]]}}),
        "match",
    ),
    (
        route(
            plugins={
                "file-logger": {
                    "path": "/tmp/x.log",
                    "include_req_body": True,
                    "include_req_body_expr": [["arg_x", "==", "1"], ["arg_y", "bogus", "1"]],
                }
            }
        ),
        "include_req_body_expr",
    ),
    (
        route(
            plugins={
                "http-logger": {
                    "uri": "http://127.0.0.1:1/log",
                    "include_resp_body": True,
                    "include_resp_body_expr": [["http_x", "~~", "(unclosed"]],
                }
            }
        ),
        "include_resp_body_expr",
    ),
    (
        route(
            plugins={
                "http-logger": {
                    "uri": "http://127.0.0.1:1/log",
                    "include_req_body_expr": [["OR", ["arg_x", "==", "1"]]],
                }
            }
        ),
        "include_req_body_expr",
    ),
    # what llmgate could not do is refused rather than ignored
    (route(upstream={**UPSTREAM, "scheme": "grpc"}), "scheme grpc is not supported"),
    (
        route(
            plugins={
                "ai-proxy": {
                    "provider": "openai",
                    "auth": {"header": {"Authorization": "Bearer k"}},
                    "max_response_bytes": 0,
                }
            }
        ),
        "max_response_bytes",
    ),
    (
        route(
            plugins={
                "ai-proxy": {
                    "provider": "openai",
                    "auth": {"header": {"Authorization": "Bearer k"}},
                    "max_stream_duration_ms": 1000,
                    "logging": {"payloads": True},
                }
            }
        ),
        "logging.payloads is not supported",
    ),
    (
        route(
            plugins={
                "ai-proxy": {
                    "provider": "openai",
                    "auth": {"header": {"Authorization": "Bearer k"}},
                    "logging": {"payloads": True},
                }
            }
        ),
        "logging.payloads is not supported",
    ),
]


@pytest.mark.parametrize(
    ("hash_on", "key", "message"),
    [
        ("vars", "nonsense_var", 'key "nonsense_var" is no variable chash can hash on'),
        ("vars", "server_name", 'key "server_name" is not supported'),
        ("header", "X User", 'key "X User" is no header name'),
    ],
)
async def test_a_chash_key_that_hashes_nothing_is_400(admin, hash_on, key, message) -> None:  # type: ignore[no-untyped-def]
    """As APISIX (``upstream_hash_vars_schema``, ``upstream_hash_header_schema``): a key that
    names no variable would hash nothing (every request to one node), so it is refused, on an
    upstream, an inline upstream and ai-proxy-multi's balancer alike."""
    upstream = {"type": "chash", "hash_on": hash_on, "key": key, "nodes": UPSTREAM["nodes"]}
    status, answer = await put(admin, "upstreams/1", upstream)
    assert status == 400 and message in answer["error_msg"], answer
    status, answer = await put(admin, "routes/1", route(upstream=upstream))
    assert status == 400 and message in answer["error_msg"], answer
    instance = {
        "name": "a",
        "provider": "openai",
        "weight": 1,
        "auth": {"header": {"Authorization": "Bearer k"}},
    }
    balancer = {"algorithm": "chash", "hash_on": hash_on, "key": key}
    plugin = {"ai-proxy-multi": {"instances": [instance], "balancer": balancer}}
    status, answer = await put(admin, "routes/2", {"uri": "/r", "plugins": plugin})
    assert status == 400 and message in answer["error_msg"], answer
    upstream["key"] = "remote_addr" if hash_on == "vars" else "X-User"
    assert (await put(admin, "upstreams/1", upstream))[0] == 201


@pytest.mark.parametrize(("body", "message"), REFUSED_ROUTES)
async def test_route_writes_that_would_not_compile_are_400(
    admin, body: dict[str, Any], message: str
) -> None:  # type: ignore[no-untyped-def]
    status, answer = await put(admin, "routes/1", body)
    assert status == 400, answer
    assert message in answer["error_msg"]
    resp = await admin.get("/apisix/admin/routes/1")
    assert resp.status == 404  # a refused write changes nothing


ACCEPTED_ROUTES = [
    # The two configs of issue 10: each pattern compiled on its own, "a" mapped to anchoring
    # with the pattern's own inline flags kept in front.
    route(
        plugins={"cors": {"allow_origins_by_regex": [r"(?i)^https://a\.example$", r"^https://b\."]}}
    ),
    route(
        plugins={
            "response-rewrite": {
                "filters": [{"regex": "(?i)hello", "replace": "bye", "options": "ajo"}]
            }
        }
    ),
    route(vars=[["http_x", "~*", "^a"], ["OR", ["arg_a", "in", ["1", "2"]], ["cookie_c", "1"]]]),
    route(remote_addrs=["127.0.0.1", "10.0.0.0/8", "::1", "2001:db8::/32"]),
    route(vars=[]),
    route(
        plugins={
            "file-logger": {
                "path": "/tmp/x.log",
                "match": [[["arg_x", "==", "1"]], [["OR", ["arg_a", "1"], ["arg_b", "2"]]]],
                "include_req_body_expr": [["http_x", "~*", "^a"]],
            },
            "http-logger": {
                "uri": "http://127.0.0.1:1/log",
                "include_resp_body_expr": [["status", ">=", 500]],
            },
        }
    ),
    route(plugins={"key-auth": {"_meta": {"filter": [["arg_x", "==", 1]], "priority": 5}}}),
    route(plugins={"key-auth": {"_meta": {"error_response": {"message": "no"}}}}),
    # A disabled plugin is never built (APISIX accepts it whatever its config).
    route(plugins={"cors": {"_meta": {"disable": True}, "allow_origins_by_regex": ["(x"]}}),
]


@pytest.mark.parametrize("body", ACCEPTED_ROUTES)
async def test_route_writes_that_compile_are_accepted(admin, body: dict[str, Any]) -> None:  # type: ignore[no-untyped-def]
    status, answer = await put(admin, "routes/1", body)
    assert status == 201, answer


async def test_refused_resource_fields(admin) -> None:  # type: ignore[no-untyped-def]
    status, answer = await put(admin, "consumers", {"username": "jack", "name": "Jack"})
    assert status == 400 and "name" in answer["error_msg"]  # consumers have no name
    status, answer = await put(admin, "upstreams/1", {**UPSTREAM, "scheme": "grpcs"})
    assert status == 400 and "scheme grpcs is not supported" in answer["error_msg"]


async def test_a_route_is_compiled_with_its_plugin_config(admin) -> None:  # type: ignore[no-untyped-def]
    status, _ = await put(admin, "plugin_configs/1", {"plugins": {"key-auth": {}}})
    assert status == 201
    status, answer = await put(
        admin, "routes/1", route(plugin_config_id="1", plugins={"limit-count": {"count": 1}})
    )
    assert status == 400
    assert "limit-count" in answer["error_msg"]  # time_window is required


async def test_plugin_config_upstream_and_consumer_writes_are_compiled(admin) -> None:  # type: ignore[no-untyped-def]
    bad_filter = {"_meta": {"filter": [["arg_x", "~~", "("]]}}
    status, answer = await put(admin, "plugin_configs/1", {"plugins": {"key-auth": bad_filter}})
    assert status == 400 and "invalid regex" in answer["error_msg"]
    status, answer = await put(
        admin, "consumers", {"username": "jack", "plugins": {"limit-count": bad_filter}}
    )
    assert status == 400 and "invalid regex" in answer["error_msg"]
    chash = {**UPSTREAM, "type": "chash", "hash_on": "vars_combinations", "key": "$x"}
    status, answer = await put(admin, "upstreams/1", chash)
    assert status in (200, 201), answer  # chash key templates compile


async def test_env_references_are_checked_when_this_process_knows_them(
    admin, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    cors = {"cors": {"allow_origins": "$env://TEST_ENVREF_ORIGINS"}}
    # Unknown here (the data plane may have it): accepted as written.
    monkeypatch.delenv("TEST_ENVREF_ORIGINS", raising=False)
    status, answer = await put(admin, "routes/1", route(plugins=cors))
    assert status == 201, answer
    # Known here and wrong: refused, without showing the value.
    monkeypatch.setenv("TEST_ENVREF_ORIGINS", "no origin s3cr3t")
    status, answer = await put(admin, "routes/2", route(plugins=cors))
    assert status == 400
    assert "cors" in answer["error_msg"] and "s3cr3t" not in answer["error_msg"]
    monkeypatch.setenv("TEST_ENVREF_ORIGINS", "https://a.example")
    status, answer = await put(admin, "routes/2", route(plugins=cors))
    assert status == 201, answer
