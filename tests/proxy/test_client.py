"""The lean upstream HTTP/1.1 client against small raw servers."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from multidict import CIMultiDict

from llmgate.proxy.client import (
    BodyBroken,
    ConnectFailed,
    Disconnected,
    NodePool,
    ReadTimeout,
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


async def test_a_connection_closed_on_release_is_no_longer_the_pools() -> None:
    # An upstream that closes each connection, and a response left before its body was read
    # (a client that left): neither connection can be reused, and the pool must not keep
    # them (one object per request, for as long as the pool lives).
    async def closing(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        await reader.read()
        writer.close()

    server, port = await serve(closing)
    pool = NodePool("127.0.0.1", port, None, None)
    for _ in range(5):
        response = await pool.request("GET", "/", headers(), None, SECOND)
        assert await response.content.read() == b"ok"
        response.release()
    partial = await pool.request("GET", "/", headers(), None, SECOND)
    partial.release()  # body unread
    assert not pool._all and not pool._idle
    pool.close()
    server.close()


async def test_a_connection_put_back_with_its_body_unread_reads_the_next_response() -> None:
    # A body that came whole while nobody read it (a client that left mid-relay) filled the
    # response's buffer past its high-water mark: reading was paused.  The connection, back in
    # the pool, must read again, or the next response on it is never seen (a read timeout).
    async def large(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                await read_request(reader)
            except asyncio.IncompleteReadError:
                break
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 266240\r\n\r\n" + b"a" * 256000)
            await writer.drain()
            await asyncio.sleep(0.1)
            writer.write(b"b" * 10240)  # crosses the high-water mark and ends the body
            await writer.drain()

    server, port = await serve(large)
    pool = NodePool("127.0.0.1", port, None, None)
    response = await pool.request("GET", "/", headers(), None, SECOND)
    for _ in range(100):
        if response.content.complete:
            break
        await asyncio.sleep(0.02)
    assert response.content.complete
    response.release()  # its body unread
    assert len(pool._idle) == 1
    again = await pool.request("GET", "/", headers(), None, SECOND)
    assert len(await again.content.read()) == 266240
    again.release()
    pool.close()
    server.close()
