"""Access-log entries: log_format, the default entry and its masking, bodies (no network)."""

from __future__ import annotations

import asyncio
import gzip
import time
from typing import Any
from unittest import mock

from aiohttp import StreamReader
from aiohttp.test_utils import make_mocked_request
from multidict import CIMultiDict

from llmgate import __version__
from llmgate.ai.call import LlmCall
from llmgate.ai.pricing import PRICES as PRICES_KEY
from llmgate.ai.pricing import parse_table
from llmgate.ai.usage import Usage
from llmgate.http.context import OutboundRequest, RequestContext, ResponseHead
from llmgate.observability.access_log import AccessLog, compile_format
from llmgate.observability.log_secrets import MASK
from llmgate.plugins.file_logger import FileLoggerConfig
from llmgate.plugins.key_auth import KeyAuth
from llmgate.runtime.services import Services
from llmgate.runtime.snapshot import CHAIN, CompiledRoute, ConsumerEntry, PluginChain

PRICES = parse_table(
    {"prices": [{"provider": "openai", "model": "gpt", "prompt": 2, "completion": 8}]}
)


def make_ctx(
    path: str = "/v1/x?a=1",
    headers: dict[str, str] | list[tuple[str, str]] | None = None,
    method: str = "GET",
    body: bytes | None = None,
    plugins: list[Any] | None = None,
) -> RequestContext:
    head = CIMultiDict(headers or {})
    payload: Any = mock.sentinel.payload if body is None else _reader(body)
    if body is not None:
        head["Content-Length"] = str(len(body))
    sockets = {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 9080)}
    transport = mock.Mock()
    transport.get_extra_info.side_effect = lambda name, default=None: sockets.get(name, default)
    inbound = make_mocked_request(method, path, headers=head, payload=payload, transport=transport)
    route = CompiledRoute(
        id="r1",
        name=None,
        chain=PluginChain.of(plugins or []),
        plugin_confs={},
        upstream=None,
        owners={},
    )
    outbound = OutboundRequest(method, inbound.path, inbound.query_string, CIMultiDict())
    ctx = RequestContext(inbound, route, outbound)
    ctx.state[CHAIN] = route.chain
    ctx.state[PRICES_KEY] = PRICES
    return ctx


def _reader(body: bytes) -> StreamReader:
    reader = StreamReader(mock.Mock(_reading_paused=False), 2**16, loop=asyncio.get_event_loop())
    reader.feed_data(body)
    reader.feed_eof()
    return reader


def access_log(**conf: Any) -> AccessLog:
    return AccessLog(FileLoggerConfig.model_validate({"path": "x.log", **conf}))


def test_compile_format_nests_and_truncates_past_five_levels() -> None:
    deep: dict[str, Any] = {"v": "$host"}
    for _ in range(5):
        deep = {"n": deep}
    compiled = compile_format({"a": "$uri", "b": "literal", "c": 3, "d": deep})
    assert compiled[:3] == (("a", "var", "uri"), ("b", "const", "literal"), ("c", "const", 3))
    level = compiled[3]
    for _ in range(4):
        assert level[1] == "nested"
        level = level[2][0]
    assert level == ("n", "nested", ())


async def test_default_entry() -> None:
    ctx = make_ctx(
        "/v1/chat?a=1&api_key=sekret&a=2",
        headers=[("Host", "gw.test:9080"), ("Authorization", "Bearer sekret")],
    )
    ctx.started = time.perf_counter() - 0.2
    ctx.consumer = ConsumerEntry("jack")
    ctx.upstream_addr = "10.0.0.1:80"
    ctx.upstream_latency = 0.05
    ctx.status = 201
    ctx.request_id = "rid-1"
    ctx.bytes_sent = 123
    AccessLog.note_head(ctx, ResponseHead(201, CIMultiDict({"X-Up": "1", "Set-Cookie": "s=1"})))
    call = LlmCall.of(ctx)
    call.provider, call.model, call.instance, call.stream = "openai", "gpt", "i1", True
    call.usage = Usage(3, 4, 7)
    call.started = time.perf_counter() - 0.1
    call.first_token, call.finished = call.started + 0.02, call.started + 0.05

    before = time.time() * 1000
    entry = await access_log().entry(ctx)

    assert entry is not None
    assert before - 250 < entry.pop("start_time") < before - 150
    assert 200 <= entry.pop("latency") < 1000
    apisix_latency = entry.pop("apisix_latency")
    assert entry.pop("upstream_latency") == 50.0
    assert 150 <= apisix_latency < 950
    llm = entry.pop("llm")
    assert abs(llm.pop("ttft_ms") - 20) < 1 and abs(llm.pop("duration_ms") - 50) < 1
    assert llm == {
        "provider": "openai",
        "model": "gpt",
        "instance": "i1",
        "request_type": "ai_stream",
        "stream": True,
        "prompt_tokens": 3,
        "completion_tokens": 4,
        "total_tokens": 7,
        "cached_tokens": 0,
        "cost": (3 * 2 + 4 * 8) / 1e6,
    }
    request = entry.pop("request")
    assert request.pop("size") > 60
    assert request == {
        "method": "GET",
        "uri": f"/v1/chat?a=1&api_key={MASK}&a=2",
        "url": f"http://gw.test:9080/v1/chat?a=1&api_key={MASK}&a=2",
        "querystring": {"a": ["1", "2"], "api_key": MASK},
        "headers": {"host": "gw.test:9080", "authorization": MASK},
    }
    assert entry == {
        "client_ip": "127.0.0.1",
        "route_id": "r1",
        "service_id": "",
        "consumer": {"username": "jack"},
        "upstream": "10.0.0.1:80",
        "request_id": "rid-1",
        "response": {
            "status": 201,
            "headers": {"x-up": "1", "set-cookie": MASK},
            "size": 123,
        },
        "server": {"hostname": entry["server"]["hostname"], "version": __version__},
    }


async def test_default_entry_without_upstream_or_llm() -> None:
    ctx = make_ctx()
    ctx.status = 401
    entry = await access_log().entry(ctx)
    assert entry is not None
    assert entry["latency"] == entry["apisix_latency"]
    for absent in ("upstream_latency", "upstream", "consumer", "llm", "request_id"):
        assert absent not in entry
    assert entry["response"] == {"status": 401, "headers": {}, "size": None}


async def test_log_format_replaces_the_entry_and_masks_secret_variables() -> None:
    ctx = make_ctx(
        "/p?token=t0k&x=1",
        headers={"Host": "h.test", "Authorization": "Bearer s", "Cookie": "sid=c", "X-A": "v"},
    )
    ctx.status = 200
    log = access_log(
        log_format={
            "host": "$host",
            "a": "$http_x_a",
            "auth": "$http_authorization",
            "cookie": "$http_cookie",
            "sid": "$cookie_sid",
            "token": "$arg_token",
            "x": "$arg_x",
            "uri": "$request_uri",
            "args": "$args",
            "missing": "$http_nope",
            "const": 5,
            "nested": {"status": "$status", "method": "$request_method"},
        }
    )
    assert await log.entry(ctx) == {
        "host": "h.test",
        "a": "v",
        "auth": MASK,
        "cookie": MASK,
        "sid": MASK,
        "token": MASK,
        "x": "1",
        "uri": f"/p?token={MASK}&x=1",
        "args": f"token={MASK}&x=1",
        "missing": None,
        "const": 5,
        "nested": {"status": "200", "method": "GET"},
        "route_id": "r1",
    }


async def test_log_format_extra_adds_but_never_overrides() -> None:
    ctx = make_ctx(headers={"X-Tenant": "t1"})
    entry = await access_log(
        log_format_extra={"tenant": "$http_x_tenant", "route_id": "nope"}
    ).entry(ctx)
    assert entry is not None
    assert entry["tenant"] == "t1"
    assert entry["route_id"] == "r1"


async def test_llm_variables_in_log_format() -> None:
    ctx = make_ctx()
    call = LlmCall.of(ctx)
    call.model, call.usage = "m1", Usage(1, 2, 3)
    entry = await access_log(
        log_format={"model": "$llm_model", "total": "$llm_total_tokens"}
    ).entry(ctx)
    assert entry == {"model": "m1", "total": 3, "route_id": "r1"}


async def test_apisix_request_type_and_request_llm_model_in_log_format() -> None:
    log = access_log(log_format={"type": "$request_type", "asked": "$request_llm_model"})
    assert await log.entry(make_ctx()) == {
        "type": "traditional_http",
        "asked": None,
        "route_id": "r1",
    }
    ctx = make_ctx()
    call = LlmCall.of(ctx)
    call.client_model, call.model, call.stream = "gpt-4o", "gpt-4o-2024-08-06", True
    entry = await log.entry(ctx)
    assert entry == {"type": "ai_stream", "asked": "gpt-4o", "route_id": "r1"}


async def test_match_skips_requests() -> None:
    log = access_log(match=[[["arg_name", "==", "jack"]], [["arg_name", "==", "rose"]]])
    assert await log.entry(make_ctx("/x?name=jack")) is not None
    assert await log.entry(make_ctx("/x?name=rose")) is not None
    assert await log.entry(make_ctx("/x?name=tom")) is None


async def test_key_auth_custom_names_are_masked() -> None:
    key_auth = KeyAuth(
        KeyAuth.Config.model_validate({"header": "X-Token", "query": "tk"}), Services()
    )
    ctx = make_ctx("/x?tk=s3&y=1", headers={"X-Token": "s4"}, plugins=[key_auth])
    entry = await access_log().entry(ctx)
    assert entry is not None
    assert entry["request"]["headers"]["x-token"] == MASK
    assert entry["request"]["querystring"] == {"tk": MASK, "y": "1"}
    assert "s3" not in entry["request"]["url"]


async def test_request_body_read_by_the_gateway_is_bounded() -> None:
    ctx = make_ctx(method="POST", body=b"0123456789")
    await ctx.body.read()
    entry = await access_log(include_req_body=True, max_req_body_bytes=4).entry(ctx)
    assert entry is not None
    assert entry["request"]["body"] == "0123"


async def test_small_unread_body_is_read_for_the_log() -> None:
    ctx = make_ctx(method="POST", body=b'{"q":1}')
    entry = await access_log(include_req_body=True).entry(ctx)
    assert entry is not None
    assert entry["request"]["body"] == '{"q":1}'


async def test_request_body_expr_and_default_off() -> None:
    ctx = make_ctx("/x?log_body=no", method="POST", body=b"abc")
    entry = await access_log().entry(ctx)
    assert entry is not None and "body" not in entry["request"]
    log = access_log(include_req_body=True, include_req_body_expr=[["arg_log_body", "==", "yes"]])
    entry = await log.entry(ctx)
    assert entry is not None and "body" not in entry["request"]
    entry = await log.entry(make_ctx("/x?log_body=yes", method="POST", body=b"abc"))
    assert entry is not None and entry["request"]["body"] == "abc"


async def test_response_body_is_bounded_and_inflated() -> None:
    log = access_log(include_resp_body=True, max_resp_body_bytes=5)
    ctx = make_ctx()
    log.collect(ctx, b"012")
    log.collect(ctx, b"3456789")
    entry = await log.entry(ctx)
    assert entry is not None and entry["response"]["body"] == "01234"

    log = access_log(include_resp_body=True)
    ctx = make_ctx()
    AccessLog.note_head(ctx, ResponseHead(200, CIMultiDict({"Content-Encoding": "gzip"})))
    packed = gzip.compress(b'{"answer": 42}')
    log.collect(ctx, packed[:10])
    log.collect(ctx, packed[10:])
    entry = await log.entry(ctx)
    assert entry is not None and entry["response"]["body"] == '{"answer": 42}'


async def test_response_body_expr() -> None:
    log = access_log(include_resp_body=True, include_resp_body_expr=[["status", "==", 500]])
    ctx = make_ctx()
    ctx.status = 200
    log.collect(ctx, b"ok")
    entry = await log.entry(ctx)
    assert entry is not None and "body" not in entry["response"]
