"""Running the fake upstream: `serve` inside a loop until cancelled, `run` blocking.

One port speaks both plain HTTP and HTTPS, so an upstream configured with `"scheme": "https"`
(as for api.openai.com:443) works against the fake unchanged. Each accepted connection is
sniffed: once it is readable its first byte is peeked (not consumed); 0x16, the content type of a
TLS handshake record, means TLS with the self-signed certificate in `tls/`, anything else plain
HTTP. The socket is then handed to aiohttp's low-level server with
`loop.connect_accepted_socket`. Every connection is sniffed in its own task, so one that connects
and sends nothing holds up nobody (it is closed after `SNIFF_TIMEOUT` seconds).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import socket
import ssl
from importlib import resources

from aiohttp import web

from llmgate.fake_upstream.app import build_app
from llmgate.fake_upstream.knobs import FakeSettings

logger = logging.getLogger(__name__)

TLS_HANDSHAKE = 0x16
SNIFF_TIMEOUT = 60.0
_BACKLOG = 128
_ACCEPT_RETRY_DELAY = 0.1
_OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


def server_ssl_context() -> ssl.SSLContext:
    """A server-side TLS context with the fake's self-signed certificate (HTTP/1.1 only)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    folder = resources.files("llmgate.fake_upstream") / "tls"
    with (
        resources.as_file(folder / "fake-cert.pem") as cert,
        resources.as_file(folder / "fake-key.pem") as key,
    ):
        context.load_cert_chain(cert, key)
    context.set_alpn_protocols(["http/1.1"])
    return context


async def serve(host: str, port: int, settings: FakeSettings, *, tls: bool = True) -> None:
    """Listen on host:port until cancelled, then close the listener and the connections.

    With `tls` (the default) the port accepts TLS as well as plain HTTP; without, plain HTTP only.
    """
    runner = web.AppRunner(build_app(settings), access_log=None)
    await runner.setup()
    listener: _SniffingListener | None = None
    try:
        assert runner.server is not None
        listener = _SniffingListener(runner.server, server_ssl_context() if tls else None)
        await listener.start(host, port)
        await asyncio.Event().wait()
    finally:
        if listener is not None:
            await listener.close()
        await runner.cleanup()


def run(host: str, port: int, settings: FakeSettings, *, tls: bool = True) -> None:
    """Serve until interrupted, on uvloop when it is installed."""
    try:
        import uvloop
    except ImportError:
        loop_factory = None
    else:
        loop_factory = uvloop.new_event_loop
    with (
        contextlib.suppress(KeyboardInterrupt),
        asyncio.Runner(loop_factory=loop_factory) as runner,
    ):
        runner.run(serve(host, port, settings, tls=tls))


class _SniffingListener:
    """Listening sockets whose connections go to `server` as TLS or plain HTTP, by first byte."""

    def __init__(self, server: web.Server, ssl_context: ssl.SSLContext | None) -> None:
        self._server = server
        self._ssl = ssl_context
        self._sockets: list[socket.socket] = []
        self._accepting: list[asyncio.Task[None]] = []
        self._sniffing: set[asyncio.Task[None]] = set()

    async def start(self, host: str, port: int) -> None:
        self._sockets = await _listening_sockets(host, port)
        self._accepting = [asyncio.create_task(self._accept(sock)) for sock in self._sockets]

    async def close(self) -> None:
        """Stop accepting, close the listening sockets and every connection not yet handed over."""
        tasks = [*self._accepting, *self._sniffing]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for sock in self._sockets:
            sock.close()
        self._sockets = []
        self._accepting = []

    async def _accept(self, listening: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                sock, _ = await loop.sock_accept(listening)
            except OSError as exc:
                # The peer gave up before accept() (ECONNABORTED...), or out of descriptors.
                if exc.errno in _OUT_OF_RESOURCES:
                    logger.warning("fake upstream: accept failed: %s", exc)
                    await asyncio.sleep(_ACCEPT_RETRY_DELAY)
                continue
            sock.setblocking(False)
            task = asyncio.create_task(self._hand_over(sock))
            self._sniffing.add(task)
            task.add_done_callback(self._sniffing.discard)

    async def _hand_over(self, sock: socket.socket) -> None:
        """Sniff the first byte of `sock`, then give it to aiohttp with or without TLS."""
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(SNIFF_TIMEOUT):
                first = await _peek_first_byte(loop, sock)
        except OSError:  # reset by the peer, or TimeoutError: silent for too long
            first = b""
        except BaseException:
            sock.close()
            raise
        if not first:  # closed (or silent) before sending anything
            sock.close()
            return
        context = self._ssl if first[0] == TLS_HANDSHAKE else None
        try:
            # From here the transport owns the socket, and closes it on failure.
            await loop.connect_accepted_socket(self._server, sock, ssl=context)
        except OSError as exc:  # failed TLS handshake (ssl.SSLError), handshake timeout, reset
            logger.debug("fake upstream: connection dropped during setup: %r", exc)


async def _peek_first_byte(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> bytes:
    """The first byte `sock` will deliver, left unread; b"" when the peer closed without one."""
    while True:
        try:
            return sock.recv(1, socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            pass
        readable = loop.create_future()
        loop.add_reader(sock.fileno(), _resolve, readable)
        try:
            await readable
        finally:
            loop.remove_reader(sock.fileno())


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def _listening_sockets(host: str, port: int) -> list[socket.socket]:
    """Bound, listening, non-blocking sockets for every address `host` resolves to.

    Like `loop.create_server`: an empty host means all interfaces, IPv6 sockets are IPv6-only
    (so "localhost" gets both 127.0.0.1 and ::1) and SO_REUSEADDR is set on POSIX.
    """
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )
    sockets: list[socket.socket] = []
    seen: set[tuple[int, object]] = set()
    try:
        for family, kind, proto, _, address in infos:
            if (family, address) in seen:
                continue
            seen.add((family, address))
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            if os.name == "posix":
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6 and hasattr(socket, "IPPROTO_IPV6"):
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind(address)
            except OSError as exc:
                raise OSError(
                    exc.errno, f"error while attempting to bind on address {address!r}: {exc}"
                ) from None
            sock.listen(_BACKLOG)
            sock.setblocking(False)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets
