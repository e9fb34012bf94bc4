"""proxy-rewrite, proxy-cache, response-rewrite, cors and request-id on a real ``llmgate serve``,
driven with raw bytes (APISIX fidelity: issue proxy-fidelity)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.net import LiveGateway, RawClient, Response, request_bytes

STATUS = "Apisix-Cache-Status"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveGateway]:
    env = {"LLMGATE_CACHE_DIR": str(tmp_path_factory.mktemp("cache"))}
    with LiveGateway(tmp_path_factory.mktemp("gateway"), env=env) as live:
        yield live


def route(gateway: LiveGateway, route_id: str, uri: str, plugins: dict[str, Any]) -> None:
    gateway.put(
        f"routes/{route_id}", {"uri": uri, "plugins": plugins, "upstream": gateway.upstream()}
    )


def send(gateway: LiveGateway, raw: bytes, method: str = "GET") -> Response:
    with RawClient(gateway.proxy_port) as client:
        client.send_pieces(raw, pieces=3)
        return client.read_response(method)


def last_upstream_request(gateway: LiveGateway) -> dict[str, Any]:
    return gateway.fake_requests()[-1]


def test_proxy_rewrite_escaped_dollars_reach_the_upstream_as_written(gateway: LiveGateway) -> None:
    route(
        gateway,
        "rw-uri",
        "/rw/uri",
        {
            "proxy-rewrite": {
                "uri": "/u/\\$arg_a/$arg_a/${arg_b ?? none}",
                "headers": {"set": {"X-Var": "\\$arg_a:$arg_a:${arg_c??dflt}"}},
            }
        },
    )
    answer = send(gateway, request_bytes("GET", "/rw/uri?a=A"))
    assert answer.status == 200
    seen = last_upstream_request(gateway)
    assert seen["raw_path"] == "/u/\\$arg_a/A/none?a=A"
    assert seen["headers"]["x-var"] == "\\$arg_a:A:dflt"


def test_proxy_rewrite_escaped_captures_in_header_values(gateway: LiveGateway) -> None:
    route(
        gateway,
        "rw-regex",
        "/rx/*",
        {
            "proxy-rewrite": {
                "regex_uri": ["^/rx/(\\w+)/(.*)", "/to/$2/$1"],
                "headers": {"set": {"X-Cap": "\\$1:$1:${2}"}},
            }
        },
    )
    answer = send(gateway, request_bytes("GET", "/rx/red/%24http_host"))
    assert answer.status == 200
    seen = last_upstream_request(gateway)
    assert seen["path"] == "/to/$http_host/red"
    # the capture's text "$http_host" is not read as a variable (docs/compatibility.md)
    assert seen["headers"]["x-cap"] == "\\$1:red:$http_host"


@pytest.mark.parametrize("strategy", ["disk", "memory"])
def test_proxy_cache_age_on_a_hit(gateway: LiveGateway, strategy: str) -> None:
    route(
        gateway,
        f"cache-{strategy}",
        f"/cache-{strategy}/*",
        {"proxy-cache": {"cache_strategy": strategy}},
    )
    raw = request_bytes("GET", f"/cache-{strategy}/a")
    miss, hit = send(gateway, raw), send(gateway, raw)
    assert (miss.header(STATUS), hit.header(STATUS)) == ("MISS", "HIT")
    assert hit.body == miss.body
    ages = [value for name, value in hit.headers if name.lower() == "age"]
    # memory_handler sets Age on a HIT; nginx's disk cache adds none.
    if strategy == "memory":
        assert len(ages) == 1 and 0 <= int(ages[0]) <= 2
    else:
        assert ages == []


def test_request_id_sent_twice_reaches_the_upstream_once(gateway: LiveGateway) -> None:
    route(gateway, "rid", "/rid", {"request-id": {}})
    raw = request_bytes("GET", "/rid", [("X-Request-Id", "good-1"), ("X-Request-Id", "x y")])
    answer = send(gateway, raw)
    assert answer.status == 200
    assert [v for n, v in answer.headers if n.lower() == "x-request-id"] == ["good-1"]
    assert last_upstream_request(gateway)["headers"]["x-request-id"] == "good-1"


def test_response_rewrite_removing_content_type_sends_none(gateway: LiveGateway) -> None:
    """``headers.remove: ["Content-Type"]`` (or a body an upstream sent untyped) goes out with
    no Content-Type, as nginx sends it; aiohttp put ``application/octet-stream`` there."""
    route(
        gateway,
        "rr-untyped",
        "/rr/untyped*",
        {"response-rewrite": {"headers": {"remove": ["Content-Type"]}}},
    )
    whole = send(gateway, request_bytes("GET", "/rr/untyped"))
    assert whole.status == 200 and whole.json()["path"] == "/rr/untyped"
    assert whole.header("Content-Type") is None
    # A streamed answer (the upstream's SSE, its body filtered) too.
    route(
        gateway,
        "rr-untyped",
        "/rr/untyped*",
        {
            "response-rewrite": {
                "headers": {"remove": ["Content-Type"]},
                "filters": [{"regex": "data", "replace": "DATA"}],
            }
        },
    )
    body = b'{"stream":true,"messages":[{"role":"user","content":"hi"}]}'
    raw = request_bytes(
        "POST", "/rr/untyped/v1/chat/completions", {"Content-Type": "application/json"}, body
    )
    streamed = send(gateway, raw, "POST")
    assert streamed.status == 200 and b"DATA: " in streamed.body
    assert streamed.header("Content-Type") is None
