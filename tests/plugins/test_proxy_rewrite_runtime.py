"""proxy-rewrite at run time: what the upstream (the fake, which echoes unknown paths) receives."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

import pytest

from llmgate.plugins.proxy_rewrite import encode_path

SEED_PLUGIN_CONFIG = {
    "plugins": {
        "proxy-rewrite": {
            "uri": "/v1/completions",
            "host": "api.openai.com",
            "headers": {
                "Authorization": "Clave de API de OpenAI",
                "Content-Type": "application/json",
            },
        }
    }
}

SEED_BODY = """{
   "model":"text-davinci-003",
   "prompt":"Escribe una breve descripción del producto para el Apple 13 pro",
   "temperature":0,
   "max_tokens":256
}"""


async def _route(gateway, conf: dict[str, Any], uri: str = "/*", **route: Any) -> None:  # type: ignore[no-untyped-def]
    await gateway.put(
        "routes/1",
        {"uri": uri, "plugins": {"proxy-rewrite": conf}, "upstream": gateway.upstream(), **route},
    )


async def _echo(gateway, path: str, method: str = "GET", **kwargs: Any) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    resp = await gateway.proxy.request(method, path, **kwargs)
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def test_seed_blog_plugin_config(gateway) -> None:  # type: ignore[no-untyped-def]
    await gateway.put("upstreams/1", {"type": "roundrobin", "nodes": {gateway.fake_address: 1}})
    await gateway.put("plugin_configs/1", SEED_PLUGIN_CONFIG)
    await gateway.put(
        "routes/1",
        {
            "methods": ["POST"],
            "uri": "/openai/product/desc",
            "upstream_id": "1",
            "plugin_config_id": 1,
        },
    )
    # As curl -d sends it.
    resp = await gateway.proxy.post(
        "/openai/product/desc",
        data=SEED_BODY.encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert resp.status == 200, await resp.text()
    answer = await resp.json()
    assert answer["object"] == "text_completion"
    assert answer["model"] == "text-davinci-003"
    assert answer["usage"]["total_tokens"] > 0

    [received] = await gateway.fake_requests()
    assert received["method"] == "POST"
    assert received["path"] == "/v1/completions"
    assert received["headers"]["host"] == "api.openai.com"
    assert received["headers"]["authorization"] == "Clave de API de OpenAI"
    assert received["headers"]["content-type"] == "application/json"
    assert received["body"]["prompt"].startswith("Escribe una breve")


async def test_uri_keeps_the_query_string(gateway) -> None:  # type: ignore[no-untyped-def]
    await _route(gateway, {"uri": "/new/path"})
    echo = await _echo(gateway, "/old?a=1&b=2")
    assert (echo["path"], echo["query"]) == ("/new/path", "a=1&b=2")


async def test_uri_with_its_own_query_merges_the_client_query(gateway) -> None:  # type: ignore[no-untyped-def]
    await _route(gateway, {"uri": "/new?fixed=1"})
    echo = await _echo(gateway, "/old?a=1")
    assert (echo["path"], echo["query"]) == ("/new", "fixed=1&a=1")
    echo = await _echo(gateway, "/old")
    assert (echo["path"], echo["query"]) == ("/new", "fixed=1")


async def test_uri_variables(gateway) -> None:  # type: ignore[no-untyped-def]
    await _route(gateway, {"uri": "/users/$arg_user/${http_x_section}$uri"})
    echo = await _echo(gateway, "/tail?user=ana", headers={"X-Section": "s1"})
    assert echo["path"] == "/users/ana/s1/tail"
    assert echo["query"] == "user=ana"


async def test_a_variable_cannot_inject_a_query(gateway) -> None:  # type: ignore[no-untyped-def]
    await _route(gateway, {"uri": "/users/$arg_user"})
    echo = await _echo(gateway, "/x?user=a%3Fadmin%3D1")
    # As APISIX: the value's "?" is escaped, then the whole path is encoded (so "%3F" arrives
    # as "%253F"); the query string is still only the client's.
    assert echo["path"] == "/users/a%3Fadmin=1"
    assert parse_qs(echo["query"]) == {"user": ["a?admin=1"]}


async def test_regex_uri_captures(gateway) -> None:  # type: ignore[no-untyped-def]
    await _route(gateway, {"regex_uri": [r"^/api/(\w+)/(\w+)$", "/v2/$2/${1}"]})
    echo = await _echo(gateway, "/api/users/42?full=1")
    assert (echo["path"], echo["query"]) == ("/v2/42/users", "full=1")


async def test_regex_uri_first_matching_pair_wins(gateway) -> None:  # type: ignore[no-untyped-def]
    await _route(
        gateway,
        {"regex_uri": ["^/nomatch/(.*)", "/never/$1", "^/a/(.*)", "/first/$1", "^/a/b", "/second"]},
    )
    assert (await _echo(gateway, "/a/b"))["path"] == "/first/b"
    # No pair matches: the path is left as it was.
    assert (await _echo(gateway, "/zzz/b"))["path"] == "/zzz/b"


async def test_regex_uri_replacement_with_query(gateway) -> None:  # type: ignore[no-untyped-def]
    await _route(gateway, {"regex_uri": ["^/search/(.*)", "/find?term=$1"]})
    echo = await _echo(gateway, "/search/llm?page=2")
    assert (echo["path"], echo["query"]) == ("/find", "term=llm&page=2")


async def test_regex_uri_result_always_starts_with_a_slash(gateway) -> None:  # type: ignore[no-untyped-def]
    await _route(gateway, {"regex_uri": ["^/p/(.*)", "$1"]})
    assert (await _echo(gateway, "/p/rest"))["path"] == "/rest"


async def test_regex_uri_on_the_decoded_path(gateway) -> None:  # type: ignore[no-untyped-def]
    await _route(gateway, {"regex_uri": ["^/p/(.*)", "/q/$1"]})
    echo = await _echo(gateway, "/p/a%20b")
    assert echo["path"] == "/q/a b"


async def test_use_real_request_uri_unsafe(gateway) -> None:  # type: ignore[no-untyped-def]
    await _route(
        gateway,
        {
            "regex_uri": [r"^/p/(\w+)\?k=(\w+)$", "/q/$2?was=$1"],
            "use_real_request_uri_unsafe": True,
        },
    )
    # The regex sees the raw request uri, query string included.
    echo = await _echo(gateway, "/p/abc?k=xyz")
    assert (echo["path"], echo["query"]) == ("/q/xyz", "was=abc")


async def test_header_operations_with_variables_and_captures(gateway) -> None:  # type: ignore[no-untyped-def]
    await _route(
        gateway,
        {
            "regex_uri": [r"^/team/(\w+)", "/members"],
            "headers": {
                "add": {"X-Add": ["extra", "team-$1"]},
                "set": {"X-Set": "$arg_v-$http_x_in", "X-Multi": ["1", "2"], "X-Num": 7},
                "remove": ["X-Drop"],
            },
        },
    )
    echo = await _echo(
        gateway,
        "/team/red?v=val",
        headers={"X-Add": "orig", "X-Set": "old", "X-In": "in", "X-Drop": "secret"},
    )
    headers = echo["headers"]
    assert echo["path"] == "/members"
    assert headers["x-add"] == "orig, extra, team-red"
    assert headers["x-set"] == "val-in"
    assert headers["x-multi"] == "1, 2"
    assert headers["x-num"] == "7"
    assert "x-drop" not in headers


async def test_flat_headers_set_and_unset_variables_render_empty(gateway) -> None:  # type: ignore[no-untyped-def]
    await _route(gateway, {"headers": {"X-Who": "user:$arg_missing;", "Accept": "text/plain"}})
    echo = await _echo(gateway, "/h", headers={"Accept": "application/json"})
    assert echo["headers"]["x-who"] == "user:;"
    assert echo["headers"]["accept"] == "text/plain"
    assert echo["path"] == "/h"


async def test_method_rewrite(gateway) -> None:  # type: ignore[no-untyped-def]
    await _route(gateway, {"method": "PUT"})
    echo = await _echo(gateway, "/m", "POST", data=b"payload")
    assert echo["method"] == "PUT"
    assert echo["body"] == "payload"


@pytest.mark.parametrize(
    ("upstream", "expected"),
    [
        pytest.param({}, "rewritten.example", id="pass"),
        pytest.param(
            {"pass_host": "rewrite", "upstream_host": "fixed.example"},
            "fixed.example",
            id="rewrite",
        ),
    ],
)
async def test_host_against_pass_host(gateway, upstream: dict, expected: str) -> None:  # type: ignore[no-untyped-def]
    await gateway.put(
        "routes/1",
        {
            "uri": "/*",
            "plugins": {"proxy-rewrite": {"host": "rewritten.example"}},
            "upstream": gateway.upstream(**upstream),
        },
    )
    echo = await _echo(gateway, "/h", headers={"Host": "client.example"})
    assert echo["headers"]["host"] == expected


@pytest.mark.parametrize(
    ("raw", "encoded"),
    [
        ("/plain/path-1_~.x", "/plain/path-1_~.x"),
        ("/a b#c?d%e", "/a%20b%23c%3Fd%25e"),
        ("/ñ", "/%C3%B1"),
        ("/ctl\r\n", "/ctl%0D%0A"),
    ],
)
def test_encode_path(raw: str, encoded: str) -> None:
    assert encode_path(raw) == encoded


async def test_a_variable_cannot_split_a_header(gateway) -> None:  # type: ignore[no-untyped-def]
    await _route(gateway, {"headers": {"set": {"X-User": "$arg_u"}}})
    echo = await _echo(gateway, "/h?u=ana%0D%0AX-Admin:%201")
    assert echo["headers"]["x-user"] == "ana%0D%0AX-Admin: 1"
    assert "x-admin" not in echo["headers"]


async def test_uri_variables_resolve_as_apisix_resolve_var(gateway) -> None:  # type: ignore[no-untyped-def]
    # An escaped "\\$" is text, its backslash kept (which nginx's uri escaping leaves alone);
    # "$1" outside regex_uri is a variable with no value; "${x ?? d}" has a default.
    await _route(gateway, {"uri": "/u/\\$arg_a/$1/$arg_a/${arg_b ?? none}/${arg_a??none}"})
    echo = await _echo(gateway, "/x?a=A")
    assert echo["raw_path"] == "/u/\\$arg_a//A/none/A?a=A"


async def test_escaped_dollars_in_header_values_are_text(gateway) -> None:  # type: ignore[no-untyped-def]
    await _route(
        gateway,
        {
            "regex_uri": [r"^/team/(\w+)", "/members"],
            "headers": {
                "set": {
                    "X-Cap": "\\$1:$1:${1}",
                    "X-Var": "\\$arg_v:$arg_v:${arg_w ?? w}",
                },
            },
        },
    )
    echo = await _echo(gateway, "/team/red?v=val")
    assert echo["headers"]["x-cap"] == "\\$1:red:red"
    assert echo["headers"]["x-var"] == "\\$arg_v:val:w"


async def test_a_capture_is_not_read_as_a_variable(gateway) -> None:  # type: ignore[no-untyped-def]
    # Deliberate (docs/compatibility.md): APISIX resolves $vars inside a capture's text too,
    # so a client could copy any variable (another header, a cookie) into this header.
    await _route(
        gateway,
        {"regex_uri": [r"^/c/(.*)", "/members"], "headers": {"set": {"X-Cap": "$1"}}},
    )
    echo = await _echo(gateway, "/c/%24http_x_secret", headers={"X-Secret": "s3"})
    assert echo["headers"]["x-cap"] == "$http_x_secret"


async def test_later_plugins_read_the_request_headers_as_changed(gateway) -> None:  # type: ignore[no-untyped-def]
    """A header set or removed by proxy-rewrite, request-id, key-auth (``X-Consumer-Username``,
    ``hide_credentials``) is what ``$http_<name>`` reads afterwards, as APISIX's
    ``core.request.set_header`` makes it: a limit key, a logged or echoed value."""
    await gateway.put("consumers", {"username": "jack", "plugins": {"key-auth": {"key": "k-1"}}})
    echoed = {
        name: f"$http_{name}"
        for name in ("x_tier", "x_drop", "x_request_id", "x_consumer_username", "apikey")
    }
    await gateway.put(
        "routes/1",
        {
            "uri": "/*",
            "plugins": {
                "proxy-rewrite": {"headers": {"set": {"X-Tier": "gold"}, "remove": ["X-Drop"]}},
                "request-id": {},
                "key-auth": {"hide_credentials": True},
                "response-rewrite": {"headers": {"set": {f"X-{k}": v for k, v in echoed.items()}}},
            },
            "upstream": gateway.upstream(),
        },
    )
    resp = await gateway.proxy.get("/h", headers={"apikey": "k-1", "X-Drop": "d", "X-Tier": "x"})
    assert resp.status == 200
    assert resp.headers["X-x_tier"] == "gold"
    assert resp.headers["X-x_drop"] == ""
    assert resp.headers["X-x_request_id"] == resp.headers["X-Request-Id"] != ""
    assert resp.headers["X-x_consumer_username"] == "jack"
    assert resp.headers["X-apikey"] == ""
