"""The lean upstream HTTP/1.1 client against small raw servers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from multidict import CIMultiDict

from llmgate.http.deadline import Deadline
from llmgate.proxy.client import (
    BodyBroken,
    ConnectFailed,
    Disconnected,
    NodePool,
    ReadTimeout,
    SendTimeout,
    Timeouts,
    _encode_head,
)
from tests.processes import free_port

SECOND = Timeouts(1, 1, 1)
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def serve(handler: Handler) -> tuple[asyncio.Server, int]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def read_request(reader: asyncio.StreamReader) -> bytes:
    return await reader.readuntil(b"\r\n\r\n")


@pytest.fixture
async def pool_for() -> AsyncIterator[Callable[[int], NodePool]]:
    pools: list[NodePool] = []

    def make(port: int) -> NodePool:
        pool = NodePool("127.0.0.1", port, None, None)
        pools.append(pool)
        return pool

    yield make
    for pool in pools:
        pool.close()


def headers(**extra: str) -> CIMultiDict[str]:
    return CIMultiDict({"Host": "up", **extra})


async def test_keep_alive_reuses_one_connection(pool_for) -> None:  # type: ignore[no-untyped-def]
    connections = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        while True:
            try:
                await read_request(reader)
            except asyncio.IncompleteReadError:
                break
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()

    server, port = await serve(handler)
    pool = pool_for(port)
    for _ in range(5):
        response = await pool.request("GET", "/", headers(), None, SECOND)
        assert response.status == 200
        assert await response.content.read() == b"ok"
        response.release()
    assert connections == 1
    server.close()


async def test_chunked_and_until_close_bodies(pool_for) -> None:  # type: ignore[no-untyped-def]
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await read_request(reader)
        if b"/chunked" in head:
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            for part in (b"ab", b"cd"):
                writer.write(b"%x\r\n%b\r\n" % (len(part), part))
                await writer.drain()
                await asyncio.sleep(0.01)
            writer.write(b"0\r\n\r\n")
            await writer.drain()
            writer.close()
        else:
            writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil-close")
            await writer.drain()
            writer.close()

    server, port = await serve(handler)
    pool = pool_for(port)
    response = await pool.request("GET", "/chunked", headers(), None, SECOND)
    chunks = [c async for c in response.content.iter_any()]
    assert b"".join(chunks) == b"abcd" and len(chunks) == 2
    response.release()
    response = await pool.request("GET", "/close", headers(), None, SECOND)
    assert await response.content.read() == b"until-close"
    response.release()
    server.close()


async def test_request_bodies_are_framed(pool_for) -> None:  # type: ignore[no-untyped-def]
    seen: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await read_request(reader)
        if b"chunked" in head:
            body = await reader.readuntil(b"0\r\n\r\n")
        else:
            length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
            body = await reader.readexactly(length)
        seen.append(head + body)
        writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
        await writer.drain()
        writer.close()

    class Stream:
        def __init__(self) -> None:
            self.parts = [b"hello ", b"world"]

        async def readany(self) -> bytes:
            return self.parts.pop(0) if self.parts else b""

    server, port = await serve(handler)
    pool = pool_for(port)
    response = await pool.request("POST", "/b", headers(), b"payload", SECOND)
    assert response.status == 204 and await response.content.read() == b""
    response.release()
    response = await pool.request("POST", "/s", headers(), Stream(), SECOND)
    response.release()
    assert b"Content-Length: 7\r\n\r\npayload" in seen[0]
    assert (
        b"Transfer-Encoding: chunked" in seen[1]
        and b"6\r\nhello \r\n5\r\nworld\r\n0\r\n" in seen[1]
    )
    server.close()


async def test_head_response_has_no_body(pool_for) -> None:  # type: ignore[no-untyped-def]
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
        await writer.drain()

    server, port = await serve(handler)
    response = await pool_for(port).request("HEAD", "/", headers(), None, SECOND)
    assert response.status == 200 and await response.content.read() == b""
    response.release()
    server.close()


async def test_errors(pool_for) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConnectFailed):
        await pool_for(free_port()).request("GET", "/", headers(), None, SECOND)

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(2)

    server, port = await serve(silent)
    with pytest.raises(ReadTimeout):
        await pool_for(port).request("GET", "/", headers(), None, Timeouts(1, 1, 0.1))
    server.close()

    async def cut(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
        await writer.drain()
        writer.close()

    server, port = await serve(cut)
    response = await pool_for(port).request("GET", "/", headers(), None, SECOND)
    with pytest.raises(BodyBroken):
        await response.content.read()
    response.release()
    server.close()


async def test_a_stale_kept_alive_connection_is_retried_once(pool_for) -> None:  # type: ignore[no-untyped-def]
    async def once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        writer.close()  # the node closes a connection the client keeps as idle

    server, port = await serve(once)
    pool = pool_for(port)
    for _ in range(3):
        response = await pool.request("GET", "/", headers(), None, SECOND)
        assert await response.content.read() == b"ok"
        response.release()
        await asyncio.sleep(0.02)
    server.close()


def counting_server(
    connections: list[int],
) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
    """A keep-alive server answering "ok"; ``connections`` gets one entry per connection and
    counts its requests."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(0)
        index = len(connections) - 1
        try:
            while True:
                await read_request(reader)
                connections[index] += 1
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    return handler


async def test_keepalive_requests_closes_a_connection_after_that_many() -> None:
    connections: list[int] = []
    server, port = await serve(counting_server(connections))
    pool = NodePool("127.0.0.1", port, None, None, max_requests=3)
    for _ in range(7):
        response = await pool.request("GET", "/", headers(), None, SECOND)
        assert await response.content.read() == b"ok"
        response.release()
    assert connections == [3, 3, 1]
    pool.close()
    server.close()


async def test_idle_connections_close_after_idle_timeout_and_beyond_size() -> None:
    connections: list[int] = []
    server, port = await serve(counting_server(connections))
    pool = NodePool("127.0.0.1", port, None, None, max_idle=1, idle_timeout=0.3)
    responses = [await pool.request("GET", "/", headers(), None, SECOND) for _ in range(3)]
    for response in responses:
        await response.content.read()
        response.release()
    assert len(pool._all) == 1  # size 1: the other two were closed on release
    conn = pool._idle[0]
    await asyncio.sleep(0.6)
    assert conn.closed and not pool._idle and not pool._all  # closed by the pool's own timer
    pool.close()
    server.close()


async def test_idle_timeout_zero_keeps_nothing() -> None:
    connections: list[int] = []
    server, port = await serve(counting_server(connections))
    pool = NodePool("127.0.0.1", port, None, None, idle_timeout=0)
    for _ in range(2):
        response = await pool.request("GET", "/", headers(), None, SECOND)
        await response.content.read()
        response.release()
    assert connections == [1, 1]
    pool.close()
    server.close()


async def test_send_timeout_when_the_node_stops_reading() -> None:
    async def never_reads(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(10)

    server, port = await serve(never_reads)
    pool = NodePool("127.0.0.1", port, None, None)
    began = time.monotonic()
    with pytest.raises(SendTimeout) as caught:
        await pool.request("POST", "/", headers(), b"x" * 32_000_000, Timeouts(1, 0.5, 30))
    assert caught.value.request_sent
    assert time.monotonic() - began < 5  # not the 30 s read timeout
    pool.close()
    server.close()


async def test_an_answer_before_the_whole_body_is_relayed_and_not_reused() -> None:
    async def refuses(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 413 Too Large\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(3)

    server, port = await serve(refuses)
    pool = NodePool("127.0.0.1", port, None, None)
    response = await pool.request("POST", "/", headers(), b"x" * 32_000_000, Timeouts(1, 2, 2))
    assert response.status == 413
    await response.content.read()
    response.release()
    assert not pool._idle
    pool.close()
    server.close()


async def test_cancelling_the_caller_closes_the_connection() -> None:
    closed = asyncio.Event()

    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await reader.read()  # until the gateway closes its side
        closed.set()

    server, port = await serve(slow)
    pool = NodePool("127.0.0.1", port, None, None)
    task = asyncio.create_task(pool.request("GET", "/", headers(), None, Timeouts(1, 1, 30)))
    await asyncio.sleep(0.2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.wait_for(closed.wait(), 1)
    assert not pool._all
    pool.close()
    server.close()


async def test_a_post_is_not_repeated_on_a_stale_connection() -> None:
    requests = 0

    async def once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal requests
        while True:
            await read_request(reader)
            await reader.readexactly(2)
            requests += 1
            if requests == 2:
                writer.close()  # it saw the POST, then went away without answering
                return
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()

    server, port = await serve(once)
    pool = NodePool("127.0.0.1", port, None, None)
    response = await pool.request("POST", "/", headers(), b"{}", SECOND)
    await response.content.read()
    response.release()
    with pytest.raises(Disconnected):
        await pool.request("POST", "/", headers(), b"{}", SECOND)
    assert requests == 2
    pool.close()
    server.close()


def test_the_request_head_leaves_out_headers_that_would_split_it() -> None:
    headers = CIMultiDict(
        [("Host", "up"), ("X-Bad", "a\r\nInjected: 1"), ("X-Also\n", "b"), ("X-Ok", "ü")]
    )
    head = _encode_head("GET", "/v1/x", headers, b"")
    assert head == "GET /v1/x HTTP/1.1\r\nHost: up\r\nX-Ok: ü\r\n\r\n".encode()


def test_the_request_head_frames_the_body_itself() -> None:
    headers = CIMultiDict(
        [("Host", "up"), ("content-length", "99"), ("Transfer-Encoding", "chunked"), ("A", "1")]
    )
    framed = _encode_head("POST", "/", headers, b"Content-Length: 2\r\n")
    assert framed == b"POST / HTTP/1.1\r\nHost: up\r\nA: 1\r\nContent-Length: 2\r\n\r\n"
    kept = _encode_head("POST", "/", CIMultiDict([("Content-Length", "2")]), b"")
    assert kept == b"POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\n"


async def _answers_once_per_request(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, answered: int | None = None
) -> None:
    """A kept-alive node: answers each request, or only the first ``answered`` ones."""
    count = 0
    while True:
        try:
            await read_request(reader)
        except asyncio.IncompleteReadError:
            break
        count += 1
        if answered is None or count <= answered:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()


async def test_requests_on_a_kept_alive_connection_set_no_timer(pool_for, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The read timeout moves a deadline: the connection's timer is not created and cancelled
    for every read (~3 us each on uvloop, twice a request)."""
    from llmgate.proxy.client import _Connection

    loop = asyncio.get_running_loop()
    created: list[object] = []
    call_at = loop.call_at

    def counting_call_at(when, callback, *args, context=None):  # type: ignore[no-untyped-def]
        if isinstance(getattr(callback, "__self__", None), _Connection | Deadline):
            created.append(callback)
        return call_at(when, callback, *args, context=context)

    monkeypatch.setattr(loop, "call_at", counting_call_at)
    server, port = await serve(_answers_once_per_request)
    pool = pool_for(port)
    for _ in range(50):
        response = await pool.request("GET", "/", headers(), None, Timeouts(1, 1, 30))
        assert await response.content.read() == b"ok"
        response.release()
    server.close()
    assert len(created) <= 2, f"{len(created)} timers for 50 requests"


async def test_a_shorter_read_timeout_on_a_reused_connection_still_holds(pool_for) -> None:  # type: ignore[no-untyped-def]
    """The connection's timer, set for the first request's 30 s, is brought forward for a
    later request's 0.2 s."""

    async def answers_the_first(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _answers_once_per_request(reader, writer, answered=1)

    server, port = await serve(answers_the_first)
    pool = pool_for(port)
    response = await pool.request("GET", "/", headers(), None, Timeouts(1, 1, 30))
    assert await response.content.read() == b"ok"
    response.release()
    started = time.monotonic()
    with pytest.raises(ReadTimeout):
        await pool.request("GET", "/", headers(), None, Timeouts(1, 1, 0.2))
    assert time.monotonic() - started < 5
    server.close()


async def test_the_read_timeout_counts_from_the_last_read(pool_for) -> None:  # type: ignore[no-untyped-def]
    """A body that keeps coming within the read timeout is not cut; one that stops is."""

    async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\n")
        for byte in b"abcde":  # 0.5 s in all, 0.1 s apart: within the 0.3 s read timeout
            await writer.drain()
            await asyncio.sleep(0.1)
            writer.write(bytes([byte]))
        await reader.read()  # ... then the last byte never comes (until the client leaves)

    server, port = await serve(trickle)
    response = await pool_for(port).request("GET", "/", headers(), None, Timeouts(1, 1, 0.3))
    got = b""
    with pytest.raises(BodyBroken, match="timed out"):
        while chunk := await response.content.readany():
            got += chunk
    assert got == b"abcde"
    response.release()
    server.close()


async def test_a_body_taken_whole_after_a_pause_leaves_the_connection_reading(pool_for) -> None:  # type: ignore[no-untyped-def]
    """A body that crossed the high-water mark in its last piece arrives complete with reading
    paused; the gateway takes such a body whole (``take_all``).  The connection went back to the
    pool still paused, and the next request on it waited for an answer it never read."""
    big = 270_000  # past the high-water mark (256 KiB) only with its last piece

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % big + b"x" * big)
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()

    server, port = await serve(handler)
    pool = pool_for(port)
    response = await pool.request("GET", "/", headers(), None, SECOND)
    await asyncio.sleep(0.3)  # the rest of the body arrives, nobody reading it
    assert response.content.complete
    assert len(response.content.take_all()) == big
    response.release()
    response = await pool.request("GET", "/", headers(), None, SECOND)
    assert await response.content.read() == b"ok"
    response.release()
    server.close()
