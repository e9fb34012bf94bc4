"""The body reader on its own: bytes arriving in pieces, limits, timeouts, states.

Over real sockets against a real gateway: tests/e2e/test_edge.py.
"""

from __future__ import annotations

import asyncio
import os
from unittest import mock

import pytest
from aiohttp import StreamReader
from aiohttp.http_exceptions import TransferEncodingError
from aiohttp.web_protocol import RequestPayloadError

from llmgate.http.body import (
    BadBody,
    BodiesOverBudget,
    BodyBudget,
    BodyState,
    BodyTimeout,
    BodyTooLarge,
    ClientGone,
    RequestBody,
)


def reader() -> StreamReader:
    return StreamReader(mock.Mock(_reading_paused=False), 2**16, loop=asyncio.get_running_loop())


async def feed(source: StreamReader, data: bytes, pieces: int, pause: float = 0.01) -> None:
    size = max(1, len(data) // pieces)
    for start in range(0, len(data), size):
        await asyncio.sleep(pause)
        source.feed_data(data[start : start + size])
    source.feed_eof()


@pytest.mark.parametrize("size", [70_000, 300_000, 1_000_000])
async def test_a_body_in_pieces_is_read_whole(size: int) -> None:
    data = os.urandom(size)
    source = reader()
    body = RequestBody(source, len(data), True, timeout=5)
    feeding = asyncio.create_task(feed(source, data, pieces=7))
    assert await body.read() == data
    await feeding
    assert body.state is BodyState.BUFFERED and body.buffered == data
    assert await body.read() == data  # read once, kept


async def test_a_stream_hands_out_every_byte_once() -> None:
    data = os.urandom(500_000)
    source = reader()
    body = RequestBody(source, None, True, timeout=5)
    feeding = asyncio.create_task(feed(source, data, pieces=9))
    stream = body.stream()
    assert body.state is BodyState.STREAMING
    parts = []
    while chunk := await stream.readany():
        parts.append(chunk)
    await feeding
    assert b"".join(parts) == data and stream.total_bytes == len(data)
    with pytest.raises(RuntimeError):
        await body.read()  # a streamed body is gone
    with pytest.raises(RuntimeError):
        body.stream()


async def test_declared_length_over_the_limit_is_refused_before_reading() -> None:
    source = reader()  # nothing will ever arrive: a read would wait
    body = RequestBody(source, 10_000_000_000, True, timeout=5)
    with pytest.raises(BodyTooLarge) as info:
        await body.read(1024)
    assert info.value.status == 413 and info.value.size == 10_000_000_000
    assert body.state is BodyState.UNREAD


async def test_attacker_chunked_body_stops_at_the_limit() -> None:
    """An endless chunked body costs at most the limit (plus one read) in memory."""
    source = reader()
    body = RequestBody(source, None, True, timeout=5)

    async def endless() -> None:
        while True:
            source.feed_data(b"x" * 65536)
            await asyncio.sleep(0)

    feeding = asyncio.create_task(endless())
    try:
        with pytest.raises(BodyTooLarge) as info:
            await body.read(1_000_000)
    finally:
        feeding.cancel()
    assert 1_000_000 < info.value.size <= 1_000_000 + 65536 * 8
    assert body.state is BodyState.BROKEN


async def test_a_stalled_body_times_out_between_reads() -> None:
    source = reader()
    body = RequestBody(source, 100, True, timeout=0.2)
    source.feed_data(b"x" * 50)
    started = asyncio.get_running_loop().time()
    with pytest.raises(BodyTimeout) as info:
        await body.read()
    assert info.value.status == 408
    assert asyncio.get_running_loop().time() - started < 5
    assert body.state is BodyState.BROKEN


async def test_slow_but_steady_bodies_do_not_time_out() -> None:
    """The timeout is between two reads, not for the whole body."""
    data = b"y" * 1000
    source = reader()
    body = RequestBody(source, len(data), True, timeout=0.3)
    feeding = asyncio.create_task(feed(source, data, pieces=10, pause=0.1))  # 1 s in all
    assert await body.read() == data
    await feeding


async def test_a_client_that_leaves_is_client_gone() -> None:
    source = reader()
    body = RequestBody(source, 100, True, timeout=5)
    source.feed_data(b"x" * 10)
    source.set_exception(ConnectionResetError("Connection lost"))
    with pytest.raises(ClientGone):
        await body.read()


async def test_broken_framing_is_400_while_connected_client_gone_when_closed() -> None:
    connection = mock.Mock()
    connection.is_closing.return_value = False
    source = reader()
    source.set_exception(RequestPayloadError("bad chunk"), TransferEncodingError("bad"))
    with pytest.raises(BadBody) as info:
        await RequestBody(source, None, True, connection=connection).read()
    assert info.value.status == 400
    connection.is_closing.return_value = True
    source = reader()
    source.set_exception(RequestPayloadError("Not enough data to satisfy content length"))
    with pytest.raises(ClientGone):
        await RequestBody(source, 100, True, connection=connection).read()


async def test_no_body() -> None:
    body = RequestBody(None, None, False)
    assert not body.exists and await body.read() == b"" and body.arrived


async def test_buffered_bodies_share_one_budget_until_released() -> None:
    """Declared lengths are taken before a byte is read, chunked bodies as they arrive; a
    refused or broken body holds nothing, a finished request gives its bytes back."""
    budget = BodyBudget(1000)
    first_source = reader()
    first = RequestBody(first_source, 600, True, timeout=5, budget=budget)
    feeding = asyncio.create_task(feed(first_source, b"a" * 600, pieces=3))
    assert len(await first.read()) == 600
    await feeding
    assert budget.held == 600
    refused = RequestBody(reader(), 500, True, timeout=5, budget=budget)
    with pytest.raises(BodiesOverBudget):
        await refused.read()
    assert refused.state is BodyState.BROKEN and budget.held == 600
    chunked_source = reader()
    chunked = RequestBody(chunked_source, None, True, timeout=5, budget=budget)
    feeding = asyncio.create_task(feed(chunked_source, b"c" * 800, pieces=4))
    with pytest.raises(BodiesOverBudget):
        await chunked.read()
    feeding.cancel()
    assert budget.held == 600  # the chunked body's first pieces were given back
    first.release()
    first.release()  # twice is harmless
    assert budget.held == 0


@pytest.mark.parametrize("declared", [True, False])
@pytest.mark.parametrize("before", [0, 1, 3])
async def test_bytes_that_arrived_before_the_read_count_too(declared: bool, before: int) -> None:
    """All, some or none of the body arrived before ``read``: the same bytes, the same
    budget, the same limit."""
    data = os.urandom(3000)
    source = reader()
    for piece in range(before):
        source.feed_data(data[piece * 1000 : (piece + 1) * 1000])
    if before == 3:
        source.feed_eof()
    budget = BodyBudget(10_000)
    body = RequestBody(source, len(data) if declared else None, True, timeout=5, budget=budget)
    feeding = asyncio.create_task(feed(source, data[before * 1000 :], 2)) if before < 3 else None
    assert await body.read() == data
    assert body.state is BodyState.BUFFERED and body.received == len(data)
    assert budget.held == len(data)
    if feeding is not None:
        await feeding
    over = reader()
    over.feed_data(data)
    over.feed_eof()
    with pytest.raises(BodyTooLarge):
        await RequestBody(over, None, True, timeout=5).read(limit=2000)


async def test_a_broken_body_that_arrived_before_the_read() -> None:
    source = reader()
    source.set_exception(TransferEncodingError("bad chunk"))
    with pytest.raises(BadBody):
        await RequestBody(source, None, True, connection=mock.Mock(is_closing=lambda: False)).read()
