"""EdgeProtocol: what a finished request leaves behind."""

from __future__ import annotations

import asyncio
import gc
import hashlib
import inspect
import re
import weakref

import aiohttp
from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from llmgate.http.body import ChunksTooSmall
from llmgate.http.deadline import Deadline
from llmgate.http.limits import ClientLimits
from llmgate.http.protocol import CHUNKS_FREE, MIN_CHUNK_AVERAGE
from llmgate.http.server import EdgeServer

_HOLDER = web.RequestKey("test.holder", object)


class _Holder:
    """Like the data plane's request context: kept on the request, referring back to it."""

    def __init__(self, request: web.BaseRequest) -> None:
        self.request = request


async def test_a_finished_request_leaves_no_reference_cycle() -> None:
    held: list[weakref.ref[_Holder]] = []

    async def handler(request: web.BaseRequest) -> web.StreamResponse:
        holder = _Holder(request)
        request[_HOLDER] = holder
        held.append(weakref.ref(holder))
        return web.Response(text="ok")

    loop = asyncio.get_running_loop()
    server = await loop.create_server(EdgeServer(handler, ClientLimits()), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    gc.collect()
    gc.disable()  # what refcounting frees, and nothing else
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(3):
                async with session.get(f"http://127.0.0.1:{port}/") as response:
                    assert await response.text() == "ok"
        await asyncio.sleep(0.05)
        alive = [ref for ref in held if ref() is not None]
    finally:
        gc.enable()
        server.close()
        await server.wait_closed()
    assert len(held) == 3
    assert alive == []


async def _serve(limits: ClientLimits) -> tuple[asyncio.Server, int]:
    async def handler(request: web.BaseRequest) -> web.StreamResponse:
        return web.Response(text="ok")

    loop = asyncio.get_running_loop()
    server = await loop.create_server(EdgeServer(handler, limits), "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def _get(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str) -> None:
    writer.write(f"GET {path} HTTP/1.1\r\nHost: a\r\n\r\n".encode())
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert await reader.readexactly(2) == b"ok"


async def test_requests_on_a_kept_alive_connection_set_no_timer(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The head and idle timeouts move a deadline; the connection's one timer is not created
    and cancelled for every request (~3 us each on uvloop)."""
    loop = asyncio.get_running_loop()
    created: list[object] = []
    call_at = loop.call_at

    def counting_call_at(when, callback, *args, context=None):  # type: ignore[no-untyped-def]
        owner = getattr(callback, "__self__", None)
        if isinstance(owner, web.RequestHandler | Deadline):  # aiohttp's, or the edge's
            created.append(callback)
        return call_at(when, callback, *args, context=context)

    monkeypatch.setattr(loop, "call_at", counting_call_at)
    server, port = await _serve(ClientLimits(header_timeout=30, keepalive_timeout=40))
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for i in range(50):
            await _get(reader, writer, f"/{i}")
        writer.close()
        await writer.wait_closed()
    finally:
        server.close()
        await server.wait_closed()
    assert len(created) <= 3, f"{len(created)} timers for 50 requests"


async def test_a_later_head_still_gets_only_the_header_timeout() -> None:
    """With the connection's timer set for the (longer) idle timeout, the next request's head
    brings it forward: a head begun and never finished is cut after ``header_timeout``."""
    server, port = await _serve(ClientLimits(header_timeout=0.3, keepalive_timeout=30))
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await _get(reader, writer, "/first")
        await asyncio.sleep(0.5)  # the first head's timer has fired: set for the idle timeout
        writer.write(b"GET /second HTTP/1.1\r\nHost: a\r\n")  # never finished
        started = asyncio.get_running_loop().time()
        assert await asyncio.wait_for(reader.read(), 10) == b""  # closed by the server
        assert 0.2 < asyncio.get_running_loop().time() - started < 5
        writer.close()
    finally:
        server.close()
        await server.wait_closed()


async def test_requests_of_a_connection_run_in_its_task() -> None:
    """No task per request: each runs in its connection's task (``request.task``)."""
    tasks: list[asyncio.Task[object] | None] = []

    async def handler(request: web.BaseRequest) -> web.StreamResponse:
        tasks.append(asyncio.current_task())
        assert request.task is tasks[-1]
        return web.Response(text="ok")

    loop = asyncio.get_running_loop()
    server = await loop.create_server(EdgeServer(handler, ClientLimits()), "127.0.0.1", 0)
    try:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", server.sockets[0].getsockname()[1]
        )
        for i in range(3):
            await _get(reader, writer, f"/{i}")
        writer.close()
        await writer.wait_closed()
    finally:
        server.close()
        await server.wait_closed()
    assert len(tasks) == 3 and tasks[0] is not None
    assert all(task is tasks[0] for task in tasks)


async def test_pipelined_requests_and_unread_bodies() -> None:
    """Requests sent back to back are answered in order; a body the handler left unread is
    read and dropped (never taken for a request); a handler that fails is a JSON 500 that
    closes the connection."""
    seen: list[str] = []

    async def handler(request: web.BaseRequest) -> web.StreamResponse:
        seen.append(request.path)
        if request.path == "/fail":
            raise RuntimeError("boom")
        return web.Response(text="ok")

    loop = asyncio.get_running_loop()
    server = await loop.create_server(EdgeServer(handler, ClientLimits()), "127.0.0.1", 0)
    try:
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        smuggled = b"GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n"
        writer.write(
            b"POST /unread HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n%s"
            % (len(smuggled), smuggled)
            + b"GET /after HTTP/1.1\r\nHost: a\r\n\r\n"
            + b"GET /fail HTTP/1.1\r\nHost: a\r\n\r\n"
            + b"GET /never HTTP/1.1\r\nHost: a\r\n\r\n"
        )
        answers = await asyncio.wait_for(reader.read(), 10)  # until the server closes
        writer.close()
    finally:
        server.close()
        await server.wait_closed()
    assert re.findall(rb"HTTP/1\.1 (\d{3})", answers) == [b"200", b"200", b"500"]
    assert answers.endswith(b'{"error_msg":"internal error"}')
    assert seen == ["/unread", "/after", "/fail"]


def test_the_loop_edge_protocol_reproduces_is_aiohttps() -> None:
    """``EdgeProtocol.start`` reproduces aiohttp's ``RequestHandler.start`` (aiohttp 3.14.5)
    without its task per request.  When aiohttp's loop changes, read the new one, carry what
    changed over to ``EdgeProtocol.start``, then update the digest here."""
    source = inspect.getsource(RequestHandler.start)
    digest = hashlib.sha256(source.encode()).hexdigest()
    assert digest == "2e565fd40c8e04fb3afb481d5ba52691a61d28396573b4b8a4cf3b168782288e"


async def _serve_bodies() -> tuple[asyncio.Server, int]:
    """A server answering with the sha256 of the body it read (or the error's status)."""

    async def handler(request: web.BaseRequest) -> web.StreamResponse:
        try:
            body = await request.read()
        except ChunksTooSmall as exc:
            return web.Response(status=exc.status, text="too small", headers=exc.headers)
        return web.Response(text=hashlib.sha256(body).hexdigest())

    loop = asyncio.get_running_loop()
    server = await loop.create_server(EdgeServer(handler, ClientLimits()), "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def _upload_chunks(port: int, chunks: list[bytes], per_write: int) -> tuple[int, bytes]:
    """(status, body) of a chunked POST of ``chunks``, written ``per_write`` chunks at a time
    (each write read on its own: the server counts chunks across reads)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
        for start in range(0, len(chunks), per_write):
            framed = b"".join(
                b"%x\r\n%b\r\n" % (len(c), c) for c in chunks[start : start + per_write]
            )
            writer.write(framed)
            await writer.drain()
            if per_write < len(chunks):
                await asyncio.sleep(0.002)
        writer.write(b"0\r\n\r\n")
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(re.search(rb"Content-Length: (\d+)", head)[1])  # type: ignore[index]
        return int(head.split()[1]), await reader.readexactly(length)
    finally:
        writer.close()


async def test_a_body_of_many_tiny_chunks_is_refused_past_the_free_ones() -> None:
    """The first ``CHUNKS_FREE`` chunks may be of one byte; one more whose chunks then average
    under ``MIN_CHUNK_AVERAGE`` bytes is refused, whole in one read or spread over many, and
    as many chunks of ``MIN_CHUNK_AVERAGE`` bytes pass, byte for byte."""
    server, port = await _serve_bodies()
    try:
        free = [b"x"] * CHUNKS_FREE
        status, body = await _upload_chunks(port, free, len(free))
        assert (status, body) == (200, hashlib.sha256(b"".join(free)).hexdigest().encode())
        for per_write in (CHUNKS_FREE + 1, 64):
            status, body = await _upload_chunks(port, [b"x"] * (CHUNKS_FREE + 1), per_write)
            assert (status, body) == (400, b"too small")
        ordinary = [bytes([i % 256]) * MIN_CHUNK_AVERAGE for i in range(2 * CHUNKS_FREE)]
        for per_write in (len(ordinary), 100):
            status, body = await _upload_chunks(port, ordinary, per_write)
            expected = hashlib.sha256(b"".join(ordinary)).hexdigest().encode()
            assert (status, body) == (200, expected)
    finally:
        server.close()
        await server.wait_closed()
