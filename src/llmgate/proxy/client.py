"""A lean HTTP/1.1 client for upstream nodes: a pool of keep-alive connections per node.

aiohttp's ``ClientSession`` does far more per request than a proxy needs (cookie jars, auto
headers, URL objects, tracing); a profile showed it as a third of the data plane's CPU.  This
client writes the request head and a small body with one ``transport.write``, parses the
response with ``httptools`` (llhttp), and hands the body over chunk by chunk as it arrives.

    NodePool.request(...) -> UpstreamResponse      headers read, body not yet
    UpstreamResponse.content.iter_any()            body chunks as they come
    UpstreamResponse.release()                     connection back to the pool (or closed)

This module holds the pool (``NodePool``: idle connections, reuse, one retry on a stale one)
and the request head's encoding; one connection and its parsing are ``client_connection``'s.
Errors are ``UpstreamError``s (see ``client_response``).
"""

from __future__ import annotations

import asyncio
import ssl
import time

from multidict import CIMultiDict

from llmgate.proxy.client_connection import NodeConnection, Timeouts
from llmgate.proxy.client_response import (
    BodyBroken,
    BodyStream,
    ConnectFailed,
    ConnectTimeout,
    Disconnected,
    HeadTooBig,
    ReadTimeout,
    SendTimeout,
    UpstreamError,
    UpstreamResponse,
)

__all__ = [
    "IDEMPOTENT",
    "BodyBroken",
    "BodyStream",
    "ConnectFailed",
    "ConnectTimeout",
    "Disconnected",
    "HeadTooBig",
    "NodePool",
    "ReadTimeout",
    "SendTimeout",
    "Timeouts",
    "UpstreamError",
    "UpstreamResponse",
]


def _encode_head(method: str, target: str, headers: CIMultiDict[str], framing: bytes) -> bytes:
    """The request head; ``framing`` is the Content-Length/Transfer-Encoding line (or b"").

    A header whose name or value holds CR or LF is left out (it would split the request), and
    so are the client's framing headers when ``framing`` replaces them."""
    text = "\r\n".join(map(": ".join, headers.items()))  # "name: value" lines, in C
    breaks = len(headers) - 1  # the CR LF pairs joining them
    if (
        text.count("\r") != breaks
        or text.count("\n") != breaks
        or (framing and ("Content-Length" in headers or "Transfer-Encoding" in headers))
    ):
        text = "\r\n".join(
            [
                name + ": " + value
                for name, value in headers.items()
                if not _splits(name, value)
                and not (framing and name.lower() in ("content-length", "transfer-encoding"))
            ]
        )
    head = (
        f"{method} {target} HTTP/1.1\r\n{text}\r\n" if text else f"{method} {target} HTTP/1.1\r\n"
    )
    return head.encode("utf-8", "surrogateescape") + framing + b"\r\n"


def _splits(name: str, value: str) -> bool:
    return "\r" in value or "\n" in value or "\r" in name or "\n" in name


_BODYLESS = frozenset({"GET", "HEAD", "DELETE", "OPTIONS", "TRACE"})
# Methods a proxy may send again after the node saw them (RFC 9110 idempotent methods).
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})


class NodePool:
    """Keep-alive connections to one node (host, port, TLS or not).

    As nginx's upstream ``keepalive``: at most ``max_idle`` idle connections are kept, each for
    at most ``idle_timeout`` seconds (0: none kept) and for at most ``max_requests`` requests.
    """

    def __init__(
        self,
        host: str,
        port: int,
        ssl_context: ssl.SSLContext | None,
        server_hostname: str | None,
        max_idle: int = 320,
        idle_timeout: float = 60.0,
        max_requests: int = 1000,
    ) -> None:
        self.host = host
        self.port = port
        self.ssl = ssl_context
        self.server_hostname = server_hostname if ssl_context is not None else None
        self.max_idle = max_idle
        self.idle_timeout = idle_timeout
        self.max_requests = max_requests
        self._idle: list[NodeConnection] = []  # oldest first; reused from the end
        self._all: set[NodeConnection] = set()
        self._sweep: asyncio.TimerHandle | None = None

    async def _connect(self, timeout: float | None) -> NodeConnection:  # noqa: ASYNC109
        loop = asyncio.get_running_loop()
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(
                    lambda: NodeConnection(loop, self),
                    self.host,
                    self.port,
                    ssl=self.ssl,
                    server_hostname=self.server_hostname,
                ),
                timeout,
            )
        except TimeoutError:
            raise ConnectTimeout(f"connect to {self.host}:{self.port} timed out") from None
        except (OSError, ssl.SSLError) as exc:
            raise ConnectFailed(f"connect to {self.host}:{self.port} failed: {exc}") from exc
        self._all.add(conn)
        return conn

    def _take_idle(self) -> NodeConnection | None:
        now = time.monotonic()
        while self._idle:
            conn = self._idle.pop()
            if conn.closed:
                self._all.discard(conn)
                continue
            if now - conn.idle_since > self.idle_timeout:
                conn.close()
                self._all.discard(conn)
                continue
            return conn
        return None

    def put_back(self, conn: NodeConnection) -> None:
        if (
            conn.closed
            or len(self._idle) >= self.max_idle
            or conn.requests >= self.max_requests
            or self.idle_timeout <= 0
        ):
            conn.close()
            self._all.discard(conn)
            return
        conn.idle_since = time.monotonic()
        self._idle.append(conn)
        if self._sweep is None:
            self._sweep = conn.loop.call_later(self.idle_timeout, self._close_expired)

    def _close_expired(self) -> None:
        """Close the connections idle for longer than ``idle_timeout`` (one timer per pool)."""
        self._sweep = None
        now = time.monotonic()
        kept = []
        for conn in self._idle:
            if conn.closed or now - conn.idle_since >= self.idle_timeout:
                conn.close()
                self._all.discard(conn)
            else:
                kept.append(conn)
        self._idle = kept
        if kept:
            oldest = min(conn.idle_since for conn in kept)
            delay = max(oldest + self.idle_timeout - now, 0.01)
            self._sweep = kept[0].loop.call_later(delay, self._close_expired)

    async def request(
        self,
        method: str,
        target: str,
        headers: CIMultiDict[str],
        body: bytes | BodyStream | None,
        timeouts: Timeouts,
    ) -> UpstreamResponse:
        """Send a request; the response's body is read by the caller, then ``release()``."""
        chunked = False
        if isinstance(body, bytes):
            framing = b"Content-Length: %d\r\n" % len(body)
        elif body is None:
            framing = b"" if method in _BODYLESS else b"Content-Length: 0\r\n"
        elif "Content-Length" in headers:
            framing = b""  # the caller knows the streamed body's length
        else:
            framing, chunked = b"Transfer-Encoding: chunked\r\n", True
        head = _encode_head(method, target, headers, framing)
        replayable = body is None or isinstance(body, bytes)
        # A streamed body cannot be sent twice, so it never risks a kept-alive connection the
        # node may be closing right now.
        conn = self._take_idle() if replayable else None
        reused = conn is not None
        if conn is None:
            conn = await self._connect(timeouts.connect)
        no_body = method == "HEAD"
        try:
            response = await conn.exchange(head, body, chunked, timeouts, no_body)
        except Disconnected:
            # A kept-alive connection the node had already closed: try once on a fresh one
            # when the request may be repeated (nginx never repeats a sent POST or PATCH).
            if not reused or conn.got_bytes or not replayable or method not in IDEMPOTENT:
                raise
            conn = await self._connect(timeouts.connect)
            response = await conn.exchange(head, body, chunked, timeouts, no_body)
        return response

    def forget(self, conn: NodeConnection) -> None:
        """``conn`` failed and is closed: it is no longer the pool's."""
        self._all.discard(conn)

    def close(self) -> None:
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        for conn in list(self._all):
            conn.close()
        self._all.clear()
        self._idle.clear()
