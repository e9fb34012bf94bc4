"""One upstream connection (``client_connection``): response parsing, the send and read
timeouts, early answers and back-pressure, driven through a ``NodePool`` against small raw
servers."""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest

from llmgate.http.deadline import Deadline
from llmgate.proxy.client import (
    BodyBroken,
    HeadTooBig,
    NodePool,
    ReadTimeout,
    SendTimeout,
    Timeouts,
)
from llmgate.proxy.client_connection import HEAD_LIMIT, NodeConnection
from tests.proxy.test_client import SECOND, headers, read_request, serve


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
    loop = asyncio.get_running_loop()
    created: list[object] = []
    call_at = loop.call_at

    def counting_call_at(when, callback, *args, context=None):  # type: ignore[no-untyped-def]
        if isinstance(getattr(callback, "__self__", None), NodeConnection | Deadline):
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


@pytest.mark.parametrize(
    ("pieces", "size"),
    [(1, 200 * 1024), (40, 200 * 1024), (1, HEAD_LIMIT), (8, HEAD_LIMIT + 1024)],
)
async def test_a_response_head_past_the_limit_is_refused_and_closed(  # type: ignore[no-untyped-def]
    pool_for, pieces: int, size: int
) -> None:
    """nginx's "upstream sent too big header": a head longer than ``HEAD_LIMIT`` (sent whole or
    in pieces, never ended) fails the exchange and closes the connection."""
    closed = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        head = b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * size + b"\r\nContent-Length: 2\r\n\r\nok"
        step = len(head) // pieces + 1
        with contextlib.suppress(ConnectionError):  # closed unread: a reset
            for start in range(0, len(head), step):
                writer.write(head[start : start + step])
                await writer.drain()
            await reader.read()  # until the gateway closes
        closed.set()

    server, port = await serve(handler)
    with pytest.raises(HeadTooBig, match="too big header"):
        await pool_for(port).request("GET", "/", headers(), None, SECOND)
    await asyncio.wait_for(closed.wait(), 2)
    server.close()


async def test_a_head_within_the_limit_is_read(pool_for) -> None:  # type: ignore[no-untyped-def]
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        big = b"a" * (HEAD_LIMIT - 200)
        writer.write(b"HTTP/1.1 200 OK\r\nX-Big: " + big + b"\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()

    server, port = await serve(handler)
    response = await pool_for(port).request("GET", "/", headers(), None, SECOND)
    assert len(response.headers["X-Big"]) == HEAD_LIMIT - 200
    assert await response.content.read() == b"ok"
    response.release()
    server.close()
