"""``SniffingListener`` over real sockets: the first byte picks the protocol, a TLS handshake
gets the TLS context, a silent connection is closed after the timeout, closing frees the port.
(The fake upstream's tests run it with one server for both; tests/e2e/test_tls.py with the
data plane's 400 for plain HTTP.)"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Callable

import pytest

from llmgate.fake_upstream.server import server_ssl_context
from llmgate.http.limits import ConnectionBudget, Slot
from llmgate.http.sniffing import SniffingListener
from tests.processes import free_port


class Tagged(asyncio.Protocol):
    """Answers its tag to the first data and closes."""

    def __init__(self, tag: bytes) -> None:
        self.tag = tag
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(self.tag + b":" + data)
        self.transport.close()


@pytest.fixture
async def port() -> AsyncIterator[int]:
    port = free_port()
    listener = SniffingListener(
        lambda: Tagged(b"tls"), server_ssl_context(), lambda: Tagged(b"plain"), timeout=0.3
    )
    await listener.start("127.0.0.1", port, reuse_port=True)
    yield port
    await listener.close()


async def test_the_first_byte_picks_the_protocol(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET / HTTP/1.1\r\n\r\n")
    async with asyncio.timeout(5):
        assert await reader.read() == b"plain:GET / HTTP/1.1\r\n\r\n"
    writer.close()
    client = ssl.create_default_context()
    client.check_hostname, client.verify_mode = False, ssl.CERT_NONE
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client)
    writer.write(b"hello")
    async with asyncio.timeout(5):
        assert await reader.read() == b"tls:hello"
    writer.close()


async def test_a_silent_connection_is_closed_after_the_timeout(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    async with asyncio.timeout(5):
        assert await reader.read() == b""
    writer.close()


async def test_closing_frees_the_port() -> None:
    port = free_port()
    listener = SniffingListener(lambda: Tagged(b"a"), None, lambda: Tagged(b"b"))
    await listener.start("127.0.0.1", port)
    await listener.close()
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", port)


class Slotted(Tagged):
    """A ``Tagged`` that takes over its connection's slot, and gives it back at its end."""

    def __init__(self, tag: bytes) -> None:
        super().__init__(tag)
        self.slot: Slot | None = None

    def connection_lost(self, exc: Exception | None) -> None:
        if self.slot is not None:
            self.slot.give_back()


async def wait_until(check: Callable[[], bool]) -> None:
    """Poll ``check`` (the listener updates the budget in callbacks of its own)."""
    async with asyncio.timeout(5):
        while not check():  # noqa: ASYNC110
            await asyncio.sleep(0.01)


async def test_each_connection_takes_a_slot_from_its_accept() -> None:
    """With a budget, a connection counts from its accept, before its first byte; past the cap
    one is reset at once; the slot comes back when the connection ends, whether it closed
    silent, failed its handshake or was handed over (then by the protocol)."""
    budget = ConnectionBudget(2)
    port = free_port()
    listener = SniffingListener(
        lambda: Slotted(b"tls"),
        server_ssl_context(),
        lambda: Slotted(b"plain"),
        timeout=5,
        budget=budget,
    )
    await listener.start("127.0.0.1", port)
    try:
        silent = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
        await wait_until(lambda: budget.open == 2)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        async with asyncio.timeout(5):
            with contextlib.suppress(ConnectionResetError):
                assert await reader.read() == b""
        writer.close()
        assert budget.refused == 1
        for _, held in silent:
            held.close()
        await wait_until(lambda: budget.open == 0)
        # A handshake left half-way gives its slot back; a whole one hands it to its protocol.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"\x16\x03\x01\x00\x01\x00")
        writer.write_eof()
        async with asyncio.timeout(5):
            with contextlib.suppress(ConnectionResetError):
                await reader.read()
        writer.close()
        await wait_until(lambda: budget.open == 0)
        client = ssl.create_default_context()
        client.check_hostname, client.verify_mode = False, ssl.CERT_NONE
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client)
        assert budget.open == 1
        writer.write(b"hello")
        async with asyncio.timeout(5):
            assert await reader.read() == b"tls:hello"
        writer.close()
        await wait_until(lambda: budget.open == 0)
    finally:
        await listener.close()
