"""One keep-alive HTTP/1.1 connection to an upstream node, parsed with llhttp (``httptools``).

``NodeConnection`` is the asyncio protocol under ``NodePool`` (``client.py``): it writes one
request at a time (head and a small body in one ``transport.write``, a streamed body chunk by
chunk under the send timeout), parses the response as it arrives, feeds its body to the
``UpstreamResponse``, and keeps the read timeout as a deadline (``Deadline``).  ``Timeouts``
are the three nginx timeouts an exchange runs under.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass
from typing import Any, Protocol, cast

import httptools
from multidict import CIMultiDict

from llmgate.http.deadline import Deadline
from llmgate.proxy.client_response import (
    BodyBroken,
    BodyStream,
    Disconnected,
    HeadTooBig,
    ReadTimeout,
    SendTimeout,
    UpstreamError,
    UpstreamResponse,
)

# Bodies up to this size are written with the head in one call.
_COALESCE = 64 * 1024
# How often a paused upload looks at its write buffer itself (see ``NodeConnection._drained``).
_DRAIN_TICK = 0.05
# The longest response head (status line and headers) taken from a node.  nginx (APISIX sets
# nothing) reads it into one proxy_buffer_size buffer, a memory page (4 KB): a bigger head is
# "upstream sent too big header", 502.  LLM providers send a few KB of rate-limit and trace
# headers, so this is larger, as nginx's large_client_header_buffers (4 x 8 KB) are for clients.
HEAD_LIMIT = 32 * 1024


@dataclass(frozen=True, slots=True)
class Timeouts:
    """nginx's proxy_connect_timeout, proxy_send_timeout and proxy_read_timeout (seconds; None:
    none): send and read bound the wait between two successive writes or reads, not the
    whole exchange."""

    connect: float | None
    send: float | None
    read: float | None


class Pool(Protocol):
    """What a connection needs of the pool it belongs to (``client.NodePool``; a protocol, so
    that this module does not import ``client``, which imports it)."""

    def put_back(self, conn: NodeConnection) -> None: ...

    def forget(self, conn: NodeConnection) -> None: ...


class NodeConnection(asyncio.Protocol):
    """One keep-alive connection; parses one response at a time."""

    def __init__(self, loop: asyncio.AbstractEventLoop, pool: Pool | None = None) -> None:
        self.loop = loop
        self.pool = pool  # where ``put_back`` returns it
        self.transport: asyncio.Transport | None = None
        # One parser for the connection's life: a connection is only reused after a response
        # llhttp parsed whole with keep-alive, after which it parses the next one.
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.reusable = False
        self.idle_since = 0.0
        self.requests = 0  # requests sent on this connection (keepalive_pool.requests)
        self.got_bytes = False  # any byte of the current response
        self.no_body = False  # the current request was HEAD
        self.read_timeout: float | None = None
        self._read_deadline = Deadline(loop, self._timed_out)  # of the read under way
        self._head: asyncio.Future[UpstreamResponse] | None = None
        self._headers: list[tuple[str, str]] = []  # of the head being parsed
        self._response: UpstreamResponse | None = None
        self._paused = False
        self._drain: asyncio.Future[None] | None = None
        self._writing_paused = False
        self._early = False  # the response came before the request was sent whole
        self._head_bytes = 0  # bytes received of the current response head

    # --- asyncio.Protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream connection's transport: asyncio's is a Transport; uvloop's implements the
        # same methods without subclassing it, and asyncio types this callback's argument as
        # the base class.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.got_bytes = True
        if self.read_timeout is not None:  # it counts from now (only a ``Deadline`` moves)
            self._read_deadline.expire_in(self.read_timeout)
        try:
            self.parser.feed_data(data)
            if self._response is None and not self.closed:
                # Still in the head: bound what llhttp buffers (``on_headers_complete``
                # measures a head that ended in this piece).
                self._head_bytes += len(data)
                if self._head_bytes > HEAD_LIMIT:
                    self._too_big()
        except httptools.HttpParserUpgrade:
            # An answer that switches protocols (101): what follows is not HTTP, so the
            # response ends with its head and the connection is never reused.
            if self._response is not None:
                self._response.content.finish()
            self.close()
        except httptools.HttpParserError as exc:
            self._fail(BodyBroken(f"malformed response: {exc}"))
            self.close()

    def eof_received(self) -> bool | None:
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.reusable = False
        self._read_deadline.stop()
        response = self._response
        if response is not None and not response.content._done:
            # A body with neither a length nor chunks ends when the connection does.
            until_close = _until_close(response.headers)
            error = None if until_close else exc or ConnectionResetError("connection closed")
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
        self._headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        raw = self._headers
        # The head's size: "HTTP/1.1 200 X" and its end, and each "name: value" line.
        size = 20 + 4 * len(raw) + sum(map(len, itertools.chain.from_iterable(raw)))
        if size > HEAD_LIMIT:
            raw.clear()
            self._too_big()
            return
        headers: CIMultiDict[str] = CIMultiDict(raw)
        raw.clear()
        self._head_bytes = 0
        if 100 <= status < 200 and status != 101:
            return  # an interim response: the real one follows
        response = UpstreamResponse(status, headers, self)
        self._response = response
        if self._head is not None and not self._head.done():
            self._head.set_result(response)
        if self.no_body or status in (204, 304):
            # llhttp cannot know a HEAD response has no body: end it here, never reuse.
            self.reusable = False
            response.content.finish()
            self._read_deadline.clear()

    def on_body(self, body: bytes) -> None:
        if self._response is not None and not self.no_body:
            self._response.content.feed(body)

    def on_message_complete(self) -> None:
        self._read_deadline.clear()
        response = self._response
        if response is None:
            return  # the end of an interim response
        self.reusable = not self.no_body and not self._early and self.parser.should_keep_alive()
        response.content.finish()

    # --- helpers ----------------------------------------------------------------------------

    def _too_big(self) -> None:
        self._fail(HeadTooBig(f"upstream sent too big header (over {HEAD_LIMIT} bytes)"))
        self.close()

    def _fail(self, error: UpstreamError) -> None:
        if self._head is not None and not self._head.done():
            self._head.set_exception(error)

    def _timed_out(self) -> None:
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

    def put_back(self) -> None:
        """Back to the pool it came from, for the next request (closed when it has none)."""
        # A body that came whole while nobody read it paused reading at its high-water mark:
        # the next response must be read.
        if self._paused:
            self.resume()
        if self.pool is None:
            self.close()
        else:
            self.pool.put_back(self)

    def close(self) -> None:
        self.reusable = False
        if self.pool is not None:
            self.pool.forget(self)  # closed for good: the pool must not keep it
        if not self.closed:
            self.closed = True
            self._read_deadline.stop()
            if self.transport is not None:
                if self.transport.get_write_buffer_size():
                    # Bytes the node did not take (it stopped reading): close() would wait to
                    # flush them, keeping the socket for ever; drop them, as nginx's close does.
                    self.transport.abort()
                else:
                    self.transport.close()

    async def _drained(self, timeout: float | None) -> bool:  # noqa: ASYNC109
        """Wait until the node took what was written (at most ``timeout`` seconds without
        progress: ``SendTimeout``); False when its answer came first (stop sending).

        The transport's ``resume_writing`` is not the only signal: every ``_DRAIN_TICK`` the
        write buffer is looked at too.  Under uvloop (``llmgate serve``) a streamed upload of a
        few MB was seen to stay paused with its buffer empty and the node waiting -- no
        wake-up reached this wait -- until a timer of its own fired (with no send timeout:
        never); in-process on asyncio it did not happen.  It looks like uvloop's issue #312
        (a paused protocol whose write completion callback never runs); the tick bounds it to
        50 ms whatever the cause."""
        deadline = None if timeout is None else self.loop.time() + timeout
        buffered = self.transport.get_write_buffer_size() if self.transport else 0
        while self._writing_paused:
            if self.closed:
                raise Disconnected("connection closed while sending")
            head = self._head
            if head is not None and head.done():
                return False
            self._drain = drain = self.loop.create_future()
            try:
                waiting: set[asyncio.Future[Any]] = {drain}
                if head is not None:
                    waiting.add(head)
                tick = _DRAIN_TICK
                if deadline is not None:
                    tick = min(tick, max(deadline - self.loop.time(), 0.0))
                done, _ = await asyncio.wait(waiting, timeout=tick)
            finally:
                self._drain = None
            failure = drain.exception() if drain.done() else None
            if failure is not None:
                raise failure
            if done or self.transport is None:
                continue
            now_buffered = self.transport.get_write_buffer_size()
            if now_buffered < buffered:  # progress: the node is reading
                buffered = now_buffered
                if timeout is not None:
                    deadline = self.loop.time() + timeout
            low, _ = self.transport.get_write_buffer_limits()
            if now_buffered <= low:
                self._writing_paused = False  # the resume we were not told about
            elif deadline is not None and self.loop.time() >= deadline:
                raise SendTimeout(f"the node took no request bytes for {timeout} s")
        return True

    async def exchange(
        self,
        head: bytes,
        body: bytes | BodyStream | None,
        chunked: bool,
        timeouts: Timeouts,
        no_body: bool,
    ) -> UpstreamResponse:
        """Send one request and wait for the response head.  On any failure (cancellation
        included) the connection is closed, and its pool forgets it."""
        transport = self.transport
        assert transport is not None
        self._response = None
        self._headers.clear()
        self._head_bytes = 0
        self.got_bytes = False
        self.no_body = no_body
        self.reusable = False
        self.requests += 1
        self._early = False
        self.read_timeout = timeouts.read
        answer: asyncio.Future[UpstreamResponse] = self.loop.create_future()
        self._head = answer
        try:
            if body is None or isinstance(body, bytes):
                # The common case, inline: written at once, waited on only when the node has
                # not taken it all yet.
                if body and len(body) <= _COALESCE:
                    transport.write(head + body)
                else:
                    transport.write(head)
                    if body:
                        transport.write(body)
                complete = not self._writing_paused or await self._drained(timeouts.send)
            else:
                complete = await self._send_stream(head, body, chunked, timeouts.send)
            if not complete:
                self._early = True  # answered before the whole body was sent: never reuse
                self.reusable = False
            if timeouts.read is not None:  # the read timeout counts from now
                self._read_deadline.expire_in(timeouts.read)
            return await answer
        except BaseException:
            self.close()
            if self.pool is not None:
                self.pool.forget(self)
            raise
        finally:
            self._head = None

    async def _send_stream(
        self,
        head: bytes,
        body: BodyStream,
        chunked: bool,
        timeout: float | None,  # noqa: ASYNC109
    ) -> bool:
        """Write a streamed request body; False when the node answered before it was all
        sent."""
        assert self.transport is not None
        self.transport.write(head)
        while chunk := await body.readany():
            self.transport.write(b"%x\r\n%b\r\n" % (len(chunk), chunk) if chunked else chunk)
            if not await self._drained(timeout):
                return False
        if chunked:
            self.transport.write(b"0\r\n\r\n")
        return await self._drained(timeout)


def _until_close(headers: CIMultiDict[str]) -> bool:
    """Whether a response's body ends when its connection does: neither a length nor chunks
    (asked only when the connection is lost mid-body, of the response's headers as parsed:
    nothing changes an upstream response's headers)."""
    return (
        "Content-Length" not in headers
        and "chunked" not in headers.get("Transfer-Encoding", "").lower()
    )
