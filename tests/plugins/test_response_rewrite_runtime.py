"""response-rewrite at run time: status, body, headers, filters and the vars condition."""

from __future__ import annotations

import asyncio
import base64
import gzip
import time
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp import web
from multidict import CIMultiDict

from llmgate.http.context import ResponseHead
from llmgate.plugins.response_rewrite import ResponseRewrite, ResponseRewriteConfig
from llmgate.runtime.services import Services
from tests.net import RawClient, Response


async def _route(gateway, conf: dict[str, Any], **plugins: Any) -> None:  # type: ignore[no-untyped-def]
    await gateway.put(
        "routes/1",
        {
            "uri": "/*",
            "plugins": {"response-rewrite": conf, **plugins},
            "upstream": gateway.upstream(),
        },
    )


async def test_status_and_body(gateway) -> None:  # type: ignore[no-untyped-def]
    await _route(gateway, {"status_code": 201, "body": '{"replaced":true}\n'})
    resp = await gateway.proxy.get("/echo")
    assert resp.status == 201
    assert await resp.read() == b'{"replaced":true}\n'
    assert resp.headers["Content-Type"].startswith("application/json")
    assert len(await gateway.fake_requests()) == 1


async def test_base64_body(gateway) -> None:  # type: ignore[no-untyped-def]
    raw = b"\x00binary\xff"
    await _route(gateway, {"body": base64.b64encode(raw).decode(), "body_base64": True})
    resp = await gateway.proxy.get("/echo")
    assert await resp.read() == raw


async def test_body_on_a_plugin_reply(gateway) -> None:  # type: ignore[no-untyped-def]
    await _route(gateway, {"body": "denied"}, **{"basic-auth": {}})
    resp = await gateway.proxy.get("/echo")
    assert resp.status == 401
    assert await resp.read() == b"denied"
    assert resp.headers["Content-Length"] == "6"


async def test_header_operations_with_variables(gateway) -> None:  # type: ignore[no-untyped-def]
    await _route(
        gateway,
        {
            "status_code": 202,
            "headers": {
                "add": ["X-Added: $arg_a", "X-Added: two"],
                "set": {"X-Route": "$route_id:$uri", "X-Status": "$status", "X-Num": 3},
                "remove": ["Access-Control-Max-Age"],
            },
        },
        cors={},
    )
    resp = await gateway.proxy.get("/some/path?a=one")
    assert resp.status == 202
    assert resp.headers.getall("X-Added") == ["one", "two"]
    assert resp.headers["X-Route"] == "1:/some/path"
    assert resp.headers["X-Status"] == "202"
    assert resp.headers["X-Num"] == "3"
    # cors (priority 4000) filtered the headers before response-rewrite (899).
    assert resp.headers["Access-Control-Allow-Origin"] == "*"
    assert "Access-Control-Max-Age" not in resp.headers
    # Headers only: the upstream body is untouched.
    assert (await resp.json())["path"] == "/some/path"


async def test_balancer_and_response_header_variables(gateway) -> None:  # type: ignore[no-untyped-def]
    """APISIX's documented first example sets ``$balancer_ip:$balancer_port``; nginx's
    ``$upstream_http_<name>`` (the upstream's header) and ``$sent_http_<name>`` (the response's
    header as it stands) are read in headers and ``vars`` too."""
    await _route(
        gateway,
        {
            "body": '{"code":"ok","message":"new json body"}',
            "headers": {
                "set": {
                    "X-Server-id": 3,
                    "X-Server-balancer-addr": "$balancer_ip:$balancer_port",
                    "X-Upstream-Type": "$upstream_http_content_type",
                    "X-Sent-Type": "$sent_http_content_type",
                }
            },
            "vars": [["upstream_http_content_type", "~~", "^application/json"]],
        },
    )
    resp = await gateway.proxy.get("/headers")
    assert await resp.text() == '{"code":"ok","message":"new json body"}'
    assert resp.headers["X-Server-balancer-addr"] == gateway.fake_address
    assert resp.headers["X-Upstream-Type"].startswith("application/json")
    assert resp.headers["X-Sent-Type"] == resp.headers["X-Upstream-Type"]

    await _route(gateway, {"body": "no", "vars": [["sent_http_x_absent", "!", "==", None]]})
    assert await (await gateway.proxy.get("/headers")).text() != "no"


async def test_flat_headers(gateway) -> None:  # type: ignore[no-untyped-def]
    await _route(gateway, {"headers": {"X-Server": "llmgate", "Content-Type": "text/plain"}})
    resp = await gateway.proxy.get("/echo")
    assert resp.headers["X-Server"] == "llmgate"
    assert resp.headers["Content-Type"] == "text/plain"


async def test_filters(gateway) -> None:  # type: ignore[no-untyped-def]
    await _route(
        gateway,
        {
            "filters": [
                {"regex": r"hello-(\w+)", "replace": "bye-$1"},
                {"regex": "O", "replace": "0", "scope": "global", "options": "ijo"},
            ]
        },
    )
    resp = await gateway.proxy.get("/hello-world/hello-again/foo")
    assert resp.status == 200
    # "once" replaced only the first match, "global" (case-insensitive) every "o".
    assert (await resp.json())["path"] == "/bye-w0rld/hell0-again/f00"


async def test_vars_condition(gateway) -> None:  # type: ignore[no-untyped-def]
    await _route(
        gateway,
        {
            "vars": [["status", "==", 200], ["arg_tag", "~~", "^v[0-9]+$"]],
            "headers": {"X-Tagged": "yes"},
            "status_code": 299,
        },
    )
    resp = await gateway.proxy.get("/echo?tag=v12")
    assert (resp.status, resp.headers.get("X-Tagged")) == (299, "yes")
    resp = await gateway.proxy.get("/echo?tag=beta")
    assert (resp.status, resp.headers.get("X-Tagged")) == (200, None)
    resp = await gateway.proxy.get("/echo?tag=v1", headers={"X-Fake-Status": "500"})
    assert (resp.status, resp.headers.get("X-Tagged")) == (500, None)


async def test_vars_logic_and_in(gateway) -> None:  # type: ignore[no-untyped-def]
    await _route(
        gateway,
        {
            "vars": ["OR", ["status", "in", [404, 429]], ["http_x_force", "!", "~=", "1"]],
            "body": "rewritten",
        },
    )
    resp = await gateway.proxy.get("/echo", headers={"X-Fake-Status": "429"})
    assert (resp.status, await resp.read()) == (429, b"rewritten")
    resp = await gateway.proxy.get("/echo", headers={"X-Force": "1"})
    assert await resp.read() == b"rewritten"
    resp = await gateway.proxy.get("/echo")
    assert (await resp.json())["path"] == "/echo"


async def test_invalid_vars_are_refused(gateway) -> None:  # type: ignore[no-untyped-def]
    answer = await gateway.put(
        "routes/1",
        {
            "uri": "/*",
            "plugins": {"response-rewrite": {"vars": [["status", "<>", 200]], "body": "x"}},
            "upstream": gateway.upstream(),
        },
        status=400,
    )
    assert "failed to validate the 'vars' expression: invalid operator '<>'" in answer["error_msg"]


async def test_stream_with_header_rewrite_is_not_buffered(gateway) -> None:  # type: ignore[no-untyped-def]
    await _route(gateway, {"headers": {"set": {"X-Rewritten": "1"}}})
    body = {"model": "gpt-4o", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    resp = await gateway.proxy.post(
        "/v1/chat/completions", json=body, headers={"X-Fake-Stream-Delay-Ms": "20"}
    )
    assert resp.status == 200
    assert resp.headers["X-Rewritten"] == "1"
    arrivals = []
    started = time.perf_counter()
    async for chunk in resp.content.iter_any():
        arrivals.append((time.perf_counter() - started, chunk))
    data = b"".join(chunk for _, chunk in arrivals)
    events = [e for e in data.split(b"\n\n") if e]
    assert events[-1] == b"data: [DONE]"
    assert len(arrivals) >= 3
    # The first event came well before the last one: it was not held back.
    assert arrivals[-1][0] - arrivals[0][0] >= 0.02 * (len(events) - 2)


async def test_stream_with_a_filter_is_rewritten_whole(gateway) -> None:  # type: ignore[no-untyped-def]
    await _route(
        gateway,
        {"filters": [{"regex": "chat.completion.chunk", "replace": "piece", "scope": "global"}]},
    )
    body = {"model": "gpt-4o", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    resp = await gateway.proxy.post("/v1/chat/completions", json=body)
    data = await resp.read()
    assert b"chat.completion.chunk" not in data
    assert data.count(b'"object":"piece"') >= 3


# --- the filters on the body, without a gateway ----------------------------------------------


def _plugin(**conf: Any) -> ResponseRewrite:
    return ResponseRewrite(ResponseRewriteConfig.model_validate(conf), Services())


def _run(plugin: ResponseRewrite, head: ResponseHead, chunks: list[bytes]) -> bytes:
    ctx: Any = SimpleNamespace(state={}, var=lambda name: None)
    plugin.header_filter(ctx, head)
    out = [plugin.body_filter(ctx, chunk, False) for chunk in chunks]
    out.append(plugin.body_filter(ctx, b"", True))
    return b"".join(out)


def test_filters_decompress_gzip() -> None:
    plugin = _plugin(filters=[{"regex": "secret", "replace": "******", "scope": "global"}])
    packed = gzip.compress(b'{"a":"secret","b":"secret"}')
    head = ResponseHead(
        200,
        CIMultiDict(
            {"Content-Encoding": "gzip", "Content-Length": str(len(packed)), "ETag": '"1"'}
        ),
    )
    body = _run(plugin, head, [packed[:10], packed[10:]])
    assert body == b'{"a":"******","b":"******"}'
    assert not {"Content-Encoding", "Content-Length", "ETag"} & set(head.headers)


def test_filters_leave_an_unknown_encoding_alone() -> None:
    plugin = _plugin(filters=[{"regex": "a", "replace": "b"}])
    head = ResponseHead(200, CIMultiDict({"Content-Encoding": "br"}))
    assert _run(plugin, head, [b"aaa"]) == b"aaa"
    assert head.headers["Content-Encoding"] == "br"


def test_filters_truncate_at_max_resp_body_size() -> None:
    plugin = _plugin(
        max_resp_body_size=8, filters=[{"regex": "x", "replace": "y", "scope": "global"}]
    )
    head = ResponseHead(200, CIMultiDict())
    assert _run(plugin, head, [b"xxxx", b"xxxx", b"xxxx"]) == b"yyyyyyyy"


def test_body_without_upstream_chunks() -> None:
    plugin = _plugin(body="new")
    head = ResponseHead(204, CIMultiDict({"Content-Length": "0"}))
    assert _run(plugin, head, []) == b"new"
    assert _run(plugin, ResponseHead(200, CIMultiDict()), [b"old", b"older"]) == b"new"


def test_headers_only_never_buffers() -> None:
    plugin = _plugin(headers={"X-A": "1"})
    ctx: Any = SimpleNamespace(state={}, var=lambda name: None)
    plugin.header_filter(ctx, ResponseHead(200, CIMultiDict()))
    assert plugin.body_filter(ctx, b"data: 1\n\n", False) == b"data: 1\n\n"


async def test_a_variable_cannot_split_a_response_header(gateway) -> None:  # type: ignore[no-untyped-def]
    await _route(gateway, {"headers": {"set": {"X-Echo": "$arg_v"}}})
    resp = await gateway.proxy.get("/echo?v=a%0D%0ASet-Cookie:%20x=1")
    assert resp.status == 200
    assert resp.headers["X-Echo"] == "a%0D%0ASet-Cookie: x=1"
    assert "Set-Cookie" not in resp.headers


@pytest.mark.parametrize(
    ("regex", "options", "body", "expected"),
    [
        ("a", "jo", b"Aa\naA", b"Ax\nxA"),
        ("a", "ijo", b"Aa\naA", b"xx\nxx"),
        ("^a", "jo", b"ab\nab", b"xb\nab"),
        ("^a", "mjo", b"ab\nab", b"xb\nxb"),  # with "m", ^ starts each line
        ("^ a", "xjo", b"ab", b"xb"),  # extended: spaces in the pattern do not count
        ("a.b", "jo", b"a\nb", b"a\nb"),
        ("a.b", "sjo", b"a\nb", b"x"),  # with "s", . takes the newline
    ],
)
def test_filter_options(regex: str, options: str, body: bytes, expected: bytes) -> None:
    filters = [{"regex": regex, "replace": "x", "scope": "global", "options": options}]
    assert _run(_plugin(filters=filters), ResponseHead(200, CIMultiDict()), [body]) == expected


def test_a_filter_that_reaches_its_bound_leaves_the_body_alone() -> None:
    """The attacker's side: an upstream body (echoing client input) built to make a
    backtracking filter take forever costs at most the engine's limit."""
    plugin = _plugin(filters=[{"regex": r"(?=a)(a|aa)+b", "replace": "x", "scope": "global"}])
    hostile = b"a" * 64
    started = time.perf_counter()
    assert _run(plugin, ResponseHead(200, CIMultiDict()), [hostile]) == hostile
    assert time.perf_counter() - started < 1.0


@pytest.mark.parametrize("size", [0, 300_000])  # the whole body at once, and a stream
async def test_a_set_transfer_encoding_cannot_break_the_framing(gateway, size: int) -> None:  # type: ignore[no-untyped-def]
    """The gateway frames the response: a ``Transfer-Encoding: chunked`` set by the config was
    sent beside ``Content-Length`` over a body that was not chunked."""
    await _route(gateway, {"headers": {"set": {"Transfer-Encoding": "chunked"}}})
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.proxy.port)
    writer.write(
        b"GET /x HTTP/1.1\r\nHost: t\r\nConnection: close\r\nX-Fake-Body-Bytes: %d\r\n\r\n" % size
    )
    raw = await reader.read(-1)
    writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = [line.lower() for line in head.split(b"\r\n")[1:]]
    framing = [line for line in lines if line.startswith((b"content-length", b"transfer-enc"))]
    assert len(framing) == 1, (framing, len(body))
    if framing[0].startswith(b"content-length"):
        assert int(framing[0].split(b":")[1]) == len(body)


@pytest.mark.parametrize("version", ["HTTP/1.1", "HTTP/1.0"])
async def test_removed_content_length_is_not_sent(gateway, version: str) -> None:  # type: ignore[no-untyped-def]
    """``headers.remove: ["Content-Length"]``: as nginx, the answer goes without it, its body
    chunked to an HTTP/1.1 client (whole and correctly framed, the connection reusable); an
    HTTP/1.0 client cannot take chunks, so its answer keeps a Content-Length that frames it."""
    await _route(gateway, {"headers": {"remove": ["Content-Length"]}})
    server = gateway.proxy.server

    def exchange(count: int) -> list[Response]:
        with RawClient(server.port, server.host) as client:
            answers = []
            for _ in range(count):
                client.send_request("GET", "/echo/a?x=1", version=version)
                answers.append(client.read_response())
            return answers

    # Two answers on one connection: the first one's framing left the second readable.
    answers = await asyncio.to_thread(exchange, 2 if version == "HTTP/1.1" else 1)
    for answer in answers:
        assert answer.status == 200
        assert answer.json()["path"] == "/echo/a"  # the whole body, parsed
        if version == "HTTP/1.1":
            assert answer.header("Content-Length") is None
            assert answer.header("Transfer-Encoding") == "chunked"
        else:
            assert answer.header("Content-Length") == str(len(answer.body))


async def test_removed_content_length_of_a_streamed_answer(gateway, aiohttp_server) -> None:  # type: ignore[no-untyped-def]
    """An answer streamed through (its body not all there with its head) goes chunked too,
    without the upstream's Content-Length, every byte of it."""
    big = bytes(range(256)) * 2048  # 512 KiB

    async def answer(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Length": str(len(big))})
        await response.prepare(request)
        for start in range(0, len(big), 65536):
            await response.write(big[start : start + 65536])
            await asyncio.sleep(0.01)
        return response

    app = web.Application()
    app.router.add_get("/big", answer)
    server = await aiohttp_server(app)
    upstream = {"type": "roundrobin", "nodes": {f"127.0.0.1:{server.port}": 1}}
    await gateway.put(
        "routes/1",
        {
            "uri": "/big",
            "plugins": {"response-rewrite": {"headers": {"remove": ["Content-Length"]}}},
            "upstream": upstream,
        },
    )
    proxy = gateway.proxy.server

    def exchange() -> Response:
        with RawClient(proxy.port, proxy.host) as client:
            client.send_request("GET", "/big")
            return client.read_response()

    answer_ = await asyncio.to_thread(exchange)
    assert answer_.status == 200
    assert answer_.header("Content-Length") is None
    assert answer_.header("Transfer-Encoding") == "chunked"
    assert answer_.body == big
