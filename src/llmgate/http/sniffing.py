"""One listening port whose connections are told apart by their first byte: TLS or plain HTTP.

Each accepted connection is sniffed in a task of its own: once it is readable, its first byte
is peeked (not consumed); 0x16, the content type of a TLS handshake record, means TLS, anything
else plain HTTP.  The socket is then handed to ``loop.connect_accepted_socket``: with the TLS
context and the ``tls`` protocol factory, or without TLS and the ``plain`` one.  A connection
that sends nothing within the sniff timeout, or closes first, is closed; one that connects and
sends nothing holds up nobody.

Used by the fake upstream (one port speaking both, ``plain`` the same server) and by the data
plane's HTTPS listener (``plain`` answers nginx's 400 "The plain HTTP request was sent to HTTPS
port" and closes).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
import ssl
from collections.abc import Callable

log = logging.getLogger("llmgate.http")

TLS_HANDSHAKE = 0x16
# How long a connection may stay silent before its first byte (when the listener names none).
SNIFF_TIMEOUT = 60.0
_BACKLOG = 128
_ACCEPT_RETRY_DELAY = 0.1
_OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})

ProtocolFactory = Callable[[], asyncio.BaseProtocol]


class SniffingListener:
    """Listening sockets whose connections go to ``tls`` (with ``ssl_context``; None: every
    connection is plain) or ``plain``, by first byte.

    ``timeout`` bounds the wait for the first byte and, separately, the TLS handshake (None:
    ``SNIFF_TIMEOUT`` for the first, asyncio's default for the second)."""

    def __init__(
        self,
        tls: ProtocolFactory,
        ssl_context: ssl.SSLContext | None,
        plain: ProtocolFactory,
        *,
        timeout: float | None = None,
    ) -> None:
        self._tls = tls
        self._ssl = ssl_context
        self._plain = plain
        self._timeout = timeout
        self.sockets: list[socket.socket] = []
        self._accepting: list[asyncio.Task[None]] = []
        self._sniffing: set[asyncio.Task[None]] = set()

    async def start(self, host: str, port: int, *, reuse_port: bool = False) -> None:
        self.sockets = await _listening_sockets(host, port, reuse_port)
        self._accepting = [asyncio.create_task(self._accept(sock)) for sock in self.sockets]

    async def close(self) -> None:
        """Stop accepting, close the listening sockets and every connection not yet handed over."""
        tasks = [*self._accepting, *self._sniffing]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for sock in self.sockets:
            sock.close()
        self.sockets = []
        self._accepting = []

    async def _accept(self, listening: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                sock, _ = await loop.sock_accept(listening)
            except OSError as exc:
                # The peer gave up before accept() (ECONNABORTED...), or out of descriptors.
                if exc.errno in _OUT_OF_RESOURCES:
                    log.warning("accept failed: %s", exc)
                    await asyncio.sleep(_ACCEPT_RETRY_DELAY)
                continue
            sock.setblocking(False)
            task = asyncio.create_task(self._hand_over(sock))
            self._sniffing.add(task)
            task.add_done_callback(self._sniffing.discard)

    async def _hand_over(self, sock: socket.socket) -> None:
        """Sniff the first byte of ``sock``, then give it to its protocol, with or without TLS."""
        loop = asyncio.get_running_loop()
        timeout = self._timeout
        try:
            async with asyncio.timeout(SNIFF_TIMEOUT if timeout is None else timeout):
                first = await _peek_first_byte(loop, sock)
        except OSError:  # reset by the peer, or TimeoutError: silent for too long
            first = b""
        except BaseException:
            sock.close()
            raise
        if not first:  # closed (or silent) before sending anything
            sock.close()
            return
        try:
            # From here the transport owns the socket, and closes it on failure.
            if self._ssl is not None and first[0] == TLS_HANDSHAKE:
                await loop.connect_accepted_socket(
                    self._tls, sock, ssl=self._ssl, ssl_handshake_timeout=timeout
                )
            else:
                await loop.connect_accepted_socket(self._plain, sock)
        except OSError as exc:  # failed TLS handshake (ssl.SSLError), handshake timeout, reset
            log.debug("connection dropped during setup: %r", exc)


async def _peek_first_byte(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> bytes:
    """The first byte ``sock`` will deliver, left unread; b"" when the peer closed without one."""
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


async def _listening_sockets(host: str, port: int, reuse_port: bool) -> list[socket.socket]:
    """Bound, listening, non-blocking sockets for every address ``host`` resolves to.

    Like ``loop.create_server``: an empty host means all interfaces, IPv6 sockets are IPv6-only
    (so "localhost" gets both 127.0.0.1 and ::1) and SO_REUSEADDR is set on POSIX;
    ``reuse_port``: SO_REUSEPORT too (the workers of a node share the port).
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
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
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
