"""The response side of the upstream client: its errors, and a body read chunk by chunk.

UpstreamError                 ``request_sent``: whether any byte of the request may have left
 ├── ConnectFailed           no connection (refused, unreachable, TLS handshake failed): not sent
 │    └── ConnectTimeout     no connection within ``connect_timeout`` (also a ``TimeoutError``)
 ├── Disconnected            the connection closed before a response head arrived
 ├── SendTimeout             the node took no request bytes for ``send_timeout`` seconds
 ├── ReadTimeout             no byte for ``read_timeout`` seconds (also a ``TimeoutError``)
 ├── HeadTooBig              the response head outgrew ``HEAD_LIMIT``: never tried on another node
 └── BodyBroken              the response body was cut (closed, malformed, timed out mid-body)
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator
from typing import Protocol

from multidict import CIMultiDict

# The body buffered per response before reading from the upstream pauses (back-pressure).
_HIGH_WATER = 256 * 1024
_LOW_WATER = 64 * 1024


class BodyStream(Protocol):
    """A request body read as it arrives (aiohttp's ``StreamReader`` is one)."""

    async def readany(self) -> bytes: ...


class Connection(Protocol):
    """What a response needs of the connection it is read from
    (``client_connection.NodeConnection``): back-pressure and its fate once the body is read.
    A protocol, so that this module does not import ``client_connection``, which imports it."""

    @property
    def reusable(self) -> bool: ...

    def pause(self) -> None: ...

    def resume(self) -> None: ...

    def close(self) -> None: ...

    def put_back(self) -> None:
        """Back to the pool it came from, for the next request (closed when it has none)."""


class UpstreamError(Exception):
    """A failure talking to an upstream node."""

    # Whether the node may have seen (part of) the request: a non-idempotent request that
    # failed so is never sent again (nginx's rule).
    request_sent = True
    # Whether the request may go to the next node (nginx's default proxy_next_upstream is
    # "error timeout": an invalid or too big response head is not among them).
    next_upstream = True


class ConnectFailed(UpstreamError):
    request_sent = False


class ConnectTimeout(ConnectFailed, TimeoutError):
    pass


class SendTimeout(UpstreamError, TimeoutError):
    pass


class Disconnected(UpstreamError):
    pass


class ReadTimeout(UpstreamError, TimeoutError):
    pass


class HeadTooBig(UpstreamError):
    """nginx's "upstream sent too big header" (its ``proxy_buffer_size``)."""

    next_upstream = False


class BodyBroken(UpstreamError):
    pass


class _Content:
    """The body of one response, as a queue of chunks the connection fills."""

    __slots__ = ("_chunks", "_conn", "_done", "_error", "_size", "_waiter")

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._chunks: collections.deque[bytes] = collections.deque()
        self._size = 0
        self._done = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def feed(self, chunk: bytes) -> None:
        self._chunks.append(chunk)
        self._size += len(chunk)
        if self._size > _HIGH_WATER:
            self._conn.pause()
        if self._waiter is not None:  # mostly none: a small body comes with its head
            self._wake()

    def finish(self, error: BaseException | None = None) -> None:
        if not self._done:
            self._done = True
            self._error = error
            if self._waiter is not None:
                self._wake()

    @property
    def complete(self) -> bool:
        return self._done and self._error is None

    def take_all(self) -> bytes:
        """Everything received, when the body is ``complete`` (no waiting)."""
        body = b"".join(self._chunks)
        self._chunks.clear()
        self._size = 0
        # A body whose last piece crossed the high-water mark came whole with reading paused:
        # the connection must read again before it serves another request.
        self._conn.resume()
        return body

    async def readany(self) -> bytes:
        """The next chunk (b"" at the end of the body); raises ``BodyBroken`` when cut."""
        while not self._chunks:
            if self._done:
                if self._error is not None:
                    raise BodyBroken(str(self._error)) from self._error
                return b""
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        chunk = self._chunks.popleft()
        self._size -= len(chunk)
        if self._size < _LOW_WATER:
            self._conn.resume()
        return chunk

    async def iter_any(self) -> AsyncIterator[bytes]:
        while chunk := await self.readany():
            yield chunk

    async def read(self, limit: int = -1) -> bytes:
        """The body (at most ``limit`` bytes when given), reading it to its end or the limit."""
        parts: list[bytes] = []
        size = 0
        while limit < 0 or size < limit:
            chunk = await self.readany()
            if not chunk:
                break
            parts.append(chunk)
            size += len(chunk)
        body = b"".join(parts)
        return body if limit < 0 else body[:limit]


class UpstreamResponse:
    __slots__ = ("_conn", "content", "headers", "reason", "status")

    def __init__(self, status: int, headers: CIMultiDict[str], conn: Connection) -> None:
        self.status = status
        self.reason = ""
        self.headers = headers
        self.content = _Content(conn)
        self._conn: Connection | None = conn

    def release(self) -> None:
        """Return the connection to its pool if the body was read whole, else close it."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if self.content.complete and conn.reusable:
            conn.put_back()
        else:
            conn.close()

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
