"""One listening port whose connections are told apart by their first byte: TLS or plain HTTP.

Each accepted connection is sniffed in a task of its own: once it is readable, its first byte
is peeked (not consumed); 0x16, the content type of a TLS handshake record, means TLS, anything
else plain HTTP.  The socket is then handed to ``loop.connect_accepted_socket``: with the TLS
context and the ``tls`` protocol factory, or without TLS and the ``plain`` one.  A connection
that sends nothing within the sniff timeout, or closes first, is closed; one that connects and
sends nothing holds up nobody.

With a ``budget`` (``http.limits``), each connection takes a slot at its accept (past the cap
it is reset at once), so a connection that sends nothing, or stalls its handshake, counts as a
plain one does; the slot goes with the socket to the protocol made for it (``HoldsSlot``), or
back to the budget when the connection ends first.

Used by the fake upstream (one port speaking both, ``plain`` the same server) and by the data
plane's HTTPS listener (``plain`` answers nginx's 400 "The plain HTTP request was sent to HTTPS
port" and closes; the budget is the data plane's).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import socket
import ssl
import struct
from collections.abc import Callable
from typing import Protocol, runtime_checkable

from llmgate.http.limits import ConnectionBudget, Slot

log = logging.getLogger("llmgate.http")

TLS_HANDSHAKE = 0x16
# How long a connection may stay silent before its first byte (when the listener names none).
SNIFF_TIMEOUT = 60.0
_BACKLOG = 128
_ACCEPT_RETRY_DELAY = 0.1
_OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})

ProtocolFactory = Callable[[], asyncio.BaseProtocol]


@runtime_checkable
class HoldsSlot(Protocol):
    """A protocol that takes over its connection's slot (and gives it back when the connection
    ends) instead of taking one when the connection is made."""

    slot: Slot | None


class SniffingListener:
    """Listening sockets whose connections go to ``tls`` (with ``ssl_context``; None: every
    connection is plain) or ``plain``, by first byte.

    ``timeout`` bounds the wait for the first byte and, separately, the TLS handshake (None:
    ``SNIFF_TIMEOUT`` for the first, asyncio's default for the second).  ``budget``: the cap
    each connection counts toward from its accept (None: no cap here)."""

    def __init__(
        self,
        tls: ProtocolFactory,
        ssl_context: ssl.SSLContext | None,
        plain: ProtocolFactory,
        *,
        timeout: float | None = None,
        budget: ConnectionBudget | None = None,
    ) -> None:
        self._tls = tls
        self._budget = budget
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
            slot = None
            if self._budget is not None:
                slot = self._budget.take()
                if slot is None:  # the cap is reached: reset at once
                    _reset(sock)
                    continue
            sock.setblocking(False)
            task = asyncio.create_task(self._hand_over(sock, slot))
            self._sniffing.add(task)
            task.add_done_callback(self._sniffing.discard)

    async def _hand_over(self, sock: socket.socket, slot: Slot | None) -> None:
        """Sniff the first byte of ``sock``, then give it to its protocol, with or without TLS
        (and ``slot`` with it: given back here when no protocol takes the connection)."""
        loop = asyncio.get_running_loop()
        timeout = self._timeout
        handed = False
        try:
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
            tls = self._ssl is not None and first[0] == TLS_HANDSHAKE
            factory = self._tls if tls else self._plain
            if slot is not None:
                factory = _holding(factory, slot)
            try:
                # From here the transport owns the socket, and closes it on failure.
                if tls:
                    await loop.connect_accepted_socket(
                        factory, sock, ssl=self._ssl, ssl_handshake_timeout=timeout
                    )
                else:
                    await loop.connect_accepted_socket(factory, sock)
                handed = True
            except OSError as exc:  # failed TLS handshake (ssl.SSLError), its timeout, reset
                log.debug("connection dropped during setup: %r", exc)
        finally:
            if slot is not None and not handed:
                slot.give_back()  # once: a protocol that took it over may have given it back


def _holding(factory: ProtocolFactory, slot: Slot) -> ProtocolFactory:
    """``factory``, whose protocols take over ``slot`` (one that cannot gives it back: the
    connection then counts nowhere)."""

    def make() -> asyncio.BaseProtocol:
        protocol = factory()
        if isinstance(protocol, HoldsSlot):
            protocol.slot = slot
        else:
            slot.give_back()
        return protocol

    return make


def _reset(sock: socket.socket) -> None:
    """Close ``sock`` with a TCP reset (SO_LINGER 0): the client knows at once."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


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
