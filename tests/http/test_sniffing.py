"""``SniffingListener`` over real sockets: the first byte picks the protocol, a TLS handshake
gets the TLS context, a silent connection is closed after the timeout, closing frees the port.
(The fake upstream's tests run it with one server for both; tests/e2e/test_tls.py with the
data plane's 400 for plain HTTP.)"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator

import pytest

from llmgate.fake_upstream.server import server_ssl_context
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
