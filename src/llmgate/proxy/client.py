"""A lean HTTP/1.1 client for upstream nodes: keep-alive connections parsed with llhttp.

aiohttp's ``ClientSession`` does far more per request than a proxy needs (cookie jars, auto
headers, URL objects, tracing); a profile showed it as a third of the data plane's CPU.  This
client writes the request head and a small body with one ``transport.write``, parses the
response with ``httptools`` (llhttp), and hands the body over chunk by chunk as it arrives.

    NodePool.request(...) -> UpstreamResponse      headers read, body not yet
    UpstreamResponse.content.iter_any()            body chunks as they come
    UpstreamResponse.release()                     connection back to the pool (or closed)

Errors are ``UpstreamError``s (see ``client_response``).
"""

from __future__ import annotations

import asyncio
import ssl
import time

import httptools
from multidict import CIMultiDict

from llmgate.proxy.client_response import (
    BodyBroken,
    BodyStream,
    ConnectFailed,
    Disconnected,
    ReadTimeout,
    UpstreamError,
    UpstreamResponse,
)

__all__ = [
    "BodyBroken",
    "BodyStream",
    "ConnectFailed",
    "Disconnected",
    "NodePool",
    "ReadTimeout",
    "UpstreamError",
    "UpstreamResponse",
]

# The body buffered per response before reading from the upstream pauses (back-pressure).
# Bodies up to this size are written with the head in one call.
_COALESCE = 64 * 1024


class _Connection(asyncio.Protocol):
    """One keep-alive connection; parses one response at a time."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.reusable = False
        self.idle_since = 0.0
        self.got_bytes = False  # any byte of the current response
        self.no_body = False  # the current request was HEAD
        self.read_timeout: float | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._head: asyncio.Future[UpstreamResponse] | None = None
        self._headers: list[tuple[bytes, bytes]] = []
        self._response: UpstreamResponse | None = None
        self._paused = False
        self._drain: asyncio.Future[None] | None = None
        self._writing_paused = False
        self._until_close = False

    # --- asyncio.Protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.got_bytes = True
        self._arm_timer()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(BodyBroken(f"malformed response: {exc}"))
            self.close()

    def eof_received(self) -> bool | None:
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.reusable = False
        self._cancel_timer()
        response = self._response
        if response is not None and not response.content._done:
            # A body with neither a length nor chunks ends when the connection does.
            error = None if self._until_close else exc or ConnectionResetError("connection closed")
            response.content.finish(error)
        self._fail(Disconnected(str(exc) if exc else "connection closed before a response"))
        if self._drain is not None and not self._drain.done():
            self._drain.set_exception(Disconnected("connection closed while sending"))

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)

    # --- llhttp callbacks -------------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        headers: CIMultiDict[str] = CIMultiDict(
            (n.decode("latin-1"), v.decode("latin-1")) for n, v in self._headers
        )
        self._headers = []
        if 100 <= status < 200 and status != 101:
            return  # an interim response: the real one follows
        response = UpstreamResponse(status, headers, self)
        self._response = response
        self._until_close = (
            "Content-Length" not in headers
            and "chunked" not in headers.get("Transfer-Encoding", "").lower()
        )
        if self._head is not None and not self._head.done():
            self._head.set_result(response)
        if self.no_body or status in (204, 304):
            # llhttp cannot know a HEAD response has no body: end it here, never reuse.
            self.reusable = False
            response.content.finish()
            self._cancel_timer()

    def on_body(self, body: bytes) -> None:
        if self._response is not None and not self.no_body:
            self._response.content.feed(body)

    def on_message_complete(self) -> None:
        self._cancel_timer()
        response = self._response
        if response is None:
            return  # the end of an interim response
        self.reusable = not self.no_body and self.parser.should_keep_alive()
        response.content.finish()

    # --- helpers ----------------------------------------------------------------------------

    def _fail(self, error: UpstreamError) -> None:
        if self._head is not None and not self._head.done():
            self._head.set_exception(error)

    def _arm_timer(self) -> None:
        if self.read_timeout is None:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self.loop.call_later(self.read_timeout, self._timed_out)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _timed_out(self) -> None:
        self._timer = None
        if self._head is not None and not self._head.done():
            self._head.set_exception(ReadTimeout("no response within the read timeout"))
        elif self._response is not None:
            self._response.content.finish(TimeoutError("upstream read timed out mid-body"))
        self.close()

    def pause(self) -> None:
        if not self._paused and self.transport is not None and not self.closed:
            self._paused = True
            self.transport.pause_reading()

    def resume(self) -> None:
        if self._paused and self.transport is not None and not self.closed:
            self._paused = False
            self.transport.resume_reading()

    def close(self) -> None:
        self.reusable = False
        if not self.closed:
            self.closed = True
            self._cancel_timer()
            if self.transport is not None:
                self.transport.close()

    async def _drained(self) -> None:
        if self._writing_paused:
            self._drain = self.loop.create_future()
            try:
                await self._drain
            finally:
                self._drain = None

    async def exchange(
        self,
        head: bytes,
        body: bytes | BodyStream | None,
        chunked: bool,
        read_timeout: float | None,
        no_body: bool,
    ) -> UpstreamResponse:
        """Send one request and wait for the response head."""
        assert self.transport is not None
        self.parser = httptools.HttpResponseParser(self)
        self._response = None
        self._headers = []
        self.got_bytes = False
        self.no_body = no_body
        self.reusable = False
        self.read_timeout = read_timeout
        self._head = self.loop.create_future()
        if body is None or isinstance(body, bytes):
            if body and len(body) <= _COALESCE:
                self.transport.write(head + body)
            else:
                self.transport.write(head)
                if body:
                    self.transport.write(body)
        else:
            self.transport.write(head)
            while chunk := await body.readany():
                self.transport.write(b"%x\r\n%b\r\n" % (len(chunk), chunk) if chunked else chunk)
                await self._drained()
            if chunked:
                self.transport.write(b"0\r\n\r\n")
        self._arm_timer()
        try:
            return await self._head
        finally:
            self._head = None


def _encode_head(method: str, target: str, headers: CIMultiDict[str], framing: bytes) -> bytes:
    """The request head; ``framing`` is the Content-Length/Transfer-Encoding line (or b"")."""
    lines = [f"{method} {target} HTTP/1.1\r\n".encode("utf-8", "surrogateescape")]
    own_framing = bool(framing)
    for name, value in headers.items():
        if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
            continue  # never let a value split the request
        if own_framing and name.lower() in ("content-length", "transfer-encoding"):
            continue
        lines.append(f"{name}: {value}\r\n".encode("utf-8", "surrogateescape"))
    lines.append(framing)
    lines.append(b"\r\n")
    return b"".join(lines)


_BODYLESS = frozenset({"GET", "HEAD", "DELETE", "OPTIONS", "TRACE"})


class NodePool:
    """Keep-alive connections to one node (host, port, TLS or not)."""

    def __init__(
        self,
        host: str,
        port: int,
        ssl_context: ssl.SSLContext | None,
        server_hostname: str | None,
        max_idle: int = 320,
        idle_timeout: float = 60.0,
    ) -> None:
        self.host = host
        self.port = port
        self.ssl = ssl_context
        self.server_hostname = server_hostname if ssl_context is not None else None
        self.max_idle = max_idle
        self.idle_timeout = idle_timeout
        self._idle: list[_Connection] = []
        self._all: set[_Connection] = set()

    async def _connect(self, timeout: float | None) -> _Connection:  # noqa: ASYNC109
        loop = asyncio.get_running_loop()
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(
                    lambda: _Connection(loop),
                    self.host,
                    self.port,
                    ssl=self.ssl,
                    server_hostname=self.server_hostname,
                ),
                timeout,
            )
        except TimeoutError:
            raise ReadTimeout(f"connect to {self.host}:{self.port} timed out") from None
        except (OSError, ssl.SSLError) as exc:
            raise ConnectFailed(f"connect to {self.host}:{self.port} failed: {exc}") from exc
        self._all.add(conn)
        return conn

    def _take_idle(self) -> _Connection | None:
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

    def put_back(self, conn: _Connection) -> None:
        if conn.closed or len(self._idle) >= self.max_idle:
            conn.close()
            self._all.discard(conn)
            return
        conn.idle_since = time.monotonic()
        self._idle.append(conn)

    async def request(
        self,
        method: str,
        target: str,
        headers: CIMultiDict[str],
        body: bytes | BodyStream | None,
        connect_timeout: float | None,
        read_timeout: float | None,
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
            conn = await self._connect(connect_timeout)
        try:
            response = await conn.exchange(head, body, chunked, read_timeout, method == "HEAD")
        except Disconnected:
            conn.close()
            self._all.discard(conn)
            # A kept-alive connection the node had already closed: try once on a fresh one,
            # which is safe because the node never saw a response start.
            if not reused or conn.got_bytes or not replayable:
                raise
            conn = await self._connect(connect_timeout)
            response = await conn.exchange(head, body, chunked, read_timeout, method == "HEAD")
        except BaseException:
            conn.close()
            self._all.discard(conn)
            raise
        response._pool = self
        return response

    def close(self) -> None:
        for conn in list(self._all):
            conn.close()
        self._all.clear()
        self._idle.clear()
