"""WholeResponse writes what aiohttp's web.Response writes, to the byte, and leaves what
aiohttp's later code reads (keep-alive, prepared, body_length, the writer's output_size) as it
leaves it: each case is answered both ways by an edge server and compared."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from multidict import CIMultiDict

from llmgate.http.answers import mark_untyped
from llmgate.http.limits import ClientLimits
from llmgate.http.server import EdgeServer
from llmgate.http.whole_response import WholeResponse

BODY = b'{"id":"chatcmpl-1","object":"chat.completion"}' * 13
JSON = (("Content-Type", "application/json"),)


@dataclass(frozen=True)
class Case:
    name: str
    request: bytes
    status: int = 200
    headers: tuple[tuple[str, str], ...] = JSON
    body: bytes = BODY
    tweak: Callable[[web.Response], None] | None = None
    expect_whole: bool = True  # the case takes WholeResponse's own path
    mark: bool = True  # mark_untyped, as the proxy does


def _req(method: str = "GET", version: str = "1.1", *lines: str) -> bytes:
    head = [f"{method} /v1/x HTTP/{version}", "Host: a", *lines]
    return ("\r\n".join(head) + "\r\n\r\n").encode()


def _force_close(response: web.Response) -> None:
    response.force_close()


def _chunked(response: web.Response) -> None:
    response.enable_chunked_encoding()


CASES = [
    Case("typed", _req()),
    Case("http/1.0", _req("GET", "1.0")),
    Case("http/1.0 keep-alive", _req("GET", "1.0", "Connection: keep-alive")),
    Case("client closes", _req("GET", "1.1", "Connection: close")),
    Case("untyped", _req(), headers=()),
    Case("untyped, not marked", _req(), headers=(), mark=False),
    Case("empty body", _req(), body=b"", headers=()),
    Case("empty body, not marked", _req(), body=b"", headers=(), mark=False),
    Case("empty typed body", _req(), body=b""),
    Case("502 with upstream status", _req(), 502, (*JSON, ("X-APISIX-Upstream-Status", "502"))),
    Case("404", _req(), 404),
    Case("odd status", _req(), 599),
    Case("lower-case names", _req(), headers=(("content-type", "text/plain"), ("x-a", "1"))),
    Case("repeated names", _req(), headers=(*JSON, ("Set-Cookie", "a=1"), ("Set-Cookie", "b=2"))),
    Case("own date and server", _req(), headers=(*JSON, ("Date", "x"), ("Server", "up/1"))),
    Case("says close", _req(), 413, (*JSON, ("Connection", "close"))),
    Case("says keep-alive", _req(), headers=(*JSON, ("Connection", "keep-alive"))),
    Case("forced close", _req(), tweak=_force_close),
    Case("body left large", _req("POST", "1.1", "Content-Length: 100000")),
    Case("body left small", _req("POST", "1.1", "Content-Length: 5") + b"hel"),
    Case("control character", _req(), headers=(("X-Bad", "a\nb"),)),
    Case("HEAD", _req("HEAD"), expect_whole=False),
    Case("204", _req(), 204, expect_whole=False),
    Case("304", _req(), 304, body=b"", expect_whole=False),
    Case("length set", _req(), headers=(*JSON, ("Content-Length", "3")), expect_whole=False),
    Case("chunked", _req(), headers=(), tweak=_chunked, expect_whole=False),
]


@dataclass
class Seen:
    wire: bytes = b""
    facts: tuple[object, ...] = ()


async def _answer(case: Case, whole: bool) -> Seen:
    seen = Seen()
    answered: list[tuple[web.BaseRequest, web.Response]] = []

    async def handler(request: web.BaseRequest) -> web.StreamResponse:
        headers = CIMultiDict(case.headers)
        response = (
            WholeResponse(case.status, case.body, headers)
            if whole
            else web.Response(status=case.status, body=case.body, headers=headers)
        )
        if case.mark:
            mark_untyped(response)
        if case.tweak is not None:
            case.tweak(response)
        answered.append((request, response))
        return response

    loop = asyncio.get_running_loop()
    server = await loop.create_server(EdgeServer(handler, ClientLimits()), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(case.request)
        while True:  # everything until the server closes or is quiet (kept alive)
            try:
                data = await asyncio.wait_for(reader.read(65536), 0.1)
            except TimeoutError:
                break
            if not data:
                break
            seen.wire += data
        writer.close()
    finally:
        server.close()
        await server.wait_closed()
    request, response = answered[0]
    seen.facts = (
        response.keep_alive,
        response.prepared,
        response.body_length,
        request.writer.output_size,
        response.status,
        response.reason,
        list(response.headers.items()),
    )
    return seen


def _dateless(wire: bytes) -> bytes:
    return re.sub(rb"\r\nDate: [^\r]*GMT\r\n", b"\r\nDate: -\r\n", wire)


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
async def test_whole_response_writes_what_aiohttp_writes(
    case: Case, monkeypatch: pytest.MonkeyPatch
) -> None:
    aiohttp_seen = await _answer(case, whole=False)
    # aiohttp's own prepare, which WholeResponse falls back to for the rarer cases: the
    # comparison covers both paths.
    fallbacks: list[web.StreamResponse] = []
    aiohttp_prepare = web.Response.prepare

    async def prepare(self: web.Response, request: web.BaseRequest) -> AbstractStreamWriter | None:
        fallbacks.append(self)
        return await aiohttp_prepare(self, request)

    monkeypatch.setattr(web.Response, "prepare", prepare)
    whole_seen = await _answer(case, whole=True)
    assert bool(fallbacks) is not case.expect_whole
    assert _dateless(whole_seen.wire) == _dateless(aiohttp_seen.wire)
    date = re.compile(r"... \d\d ... \d{4} \d\d:\d\d:\d\d GMT")
    assert [date.sub("-", str(fact)) for fact in whole_seen.facts] == [
        date.sub("-", str(fact)) for fact in aiohttp_seen.facts
    ]
    if case.name != "control character":
        assert aiohttp_seen.wire.startswith(b"HTTP/1.")


def test_a_whole_response_is_made_as_aiohttp_makes_a_response() -> None:
    """WholeResponse sets, without web.Response.__init__, every attribute it sets (a later
    aiohttp that sets one more fails here), and copies the headers as it does."""
    headers = CIMultiDict(JSON)
    made = web.Response(status=404, body=BODY, headers=headers)
    whole = WholeResponse(404, BODY, headers)
    names = vars(made).keys() | vars(whole).keys()
    assert {name: getattr(whole, name) for name in names} == {
        name: getattr(made, name) for name in names
    }
    assert whole.headers is not headers
