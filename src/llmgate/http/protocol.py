"""The HTTP/1.x connections of a listener, held to nginx's client limits.

aiohttp's ``RequestHandler`` parses requests and runs a handler per request; it has no request
head timeout, keeps idle connections for an hour and accepts every connection the process can
open.  ``EdgeServer`` (an aiohttp ``web.Server``, ``http.server``) makes ``EdgeProtocol``
connections instead:

- a connection's first request head must be whole within ``header_timeout`` of the accept, a
  later one within ``header_timeout`` of its first byte; an idle connection is closed after
  ``keepalive_timeout``, and after ``keepalive_requests`` requests (``Connection: close``);
- past ``connection_cap()`` open connections a new one is reset at once (each listener has its
  own ``budget``, so a flooded data plane leaves the admin API reachable; the HTTPS listener
  takes its connections' slots from the data plane's budget at their accept, before their
  first byte and handshake: ``http.sniffing``);
- requests other than HTTP/1.0 and 1.1 get 505; a head aiohttp's parser refuses, or over
  ``MAX_HEAD`` in all (counted as it arrives, behind a request under way too), gets a JSON
  400, 414 or 431 (``http.head_limits``);
- answers say ``Server: llmgate/<version>`` and name the connection's fate (``http.server``);
- an answer that ends its connection before the request's body was read (the 413 for a body
  over its limit) is followed by nginx's lingering close: the connection is half-closed, and
  what the client still sends is dropped unparsed for at most ``LINGER_TIME`` seconds (less
  once it is ``LINGER_QUIET`` seconds quiet), where aiohttp parsed and drained it for 10 s;
- so does an answer given before the request's body was read (a 401, a 404) when more than
  ``DISCARD_LIMIT`` bytes of the body are still to come, or chunks not yet ended: a smaller
  rest is read and dropped and the connection kept, as nginx discards a body;
- a chunked body's chunks are counted as they are parsed: past ``CHUNKS_FREE``, chunks that
  average under ``MIN_CHUNK_AVERAGE`` bytes end it (``ChunksTooSmall`` set on its stream, for
  the handler reading it: a 400 that closes the connection) and nothing more is read.

The head and idle timeouts share one timer per connection, re-armed lazily: each phase change
only moves a deadline, and the timer, when it fires before that deadline, sets itself again
for it.  A request on a kept-alive connection then costs no timer at all, where creating and
cancelling a timer costs ~3 us on uvloop (aiohttp's own idle timer is held off: it would close
a connection in the middle of a slow request head).

Each request runs in its connection's task (``EdgeProtocol.start``, aiohttp's loop over a
connection's requests without its task per request).

The body's timeout (between two reads) is the body reader's (``llmgate.http.body``).  This
module leans on private parts of aiohttp's ``RequestHandler`` (``start``, whose loop it
reproduces, ``_waiter``, ``_messages``, ``_request_count``, ``_handle_request``) and
``BaseRequest`` (``_state``); ``tests/http/test_protocol.py`` and ``tests/e2e/test_edge*.py``
pin the behaviour they give.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, runtime_checkable

from aiohttp import web
from aiohttp.helpers import ceil_timeout
from aiohttp.http_exceptions import LineTooLong
from aiohttp.http_writer import StreamWriter
from aiohttp.streams import EMPTY_PAYLOAD, StreamReader
from aiohttp.web_protocol import _PAYLOAD_ACCESS_ERROR, ERROR, RequestHandler, _ErrInfo

from llmgate.http.answers import bad_transfer_encoding, plain_chunked, version_not_supported
from llmgate.http.body import ChunksTooSmall
from llmgate.http.deadline import Deadline
from llmgate.http.head_limits import MAX_HEAD, error_answer, head_size
from llmgate.http.limits import ClientLimits, ConnectionBudget, Slot

# nginx's lingering close (its lingering_time and lingering_timeout, shorter): how long what a
# client sends after an answer that ends its connection is read and dropped, so that the
# answer is not lost to a reset; and how long a quiet client is waited for.
LINGER_TIME = 2.0
LINGER_QUIET = 0.5

# A chunked body's first CHUNKS_FREE chunks may be of any size; past them its chunks must
# average MIN_CHUNK_AVERAGE bytes or more, else it is refused (400, ``ChunksTooSmall``).  aiohttp
# hands each chunk to the body's stream in Python (~1 us a chunk, where nginx spends
# nanoseconds): 2M chunks of 1 byte held the process for seconds and every other client with
# it.  Clients write chunks of kilobytes (an SDK's body comes in a few); 128-byte chunks cost
# ~8 ms of CPU a megabyte.
CHUNKS_FREE = 1024
MIN_CHUNK_AVERAGE = 128

_VERSIONS = frozenset({(1, 0), (1, 1)})

Handler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]


@runtime_checkable
class LeavingLogger(Protocol):
    """An access logger that also logs requests whose client left before the response was
    done (no response to show)."""

    def log_left(self, request: web.BaseRequest, elapsed: float) -> None: ...


# Where a connection is between requests, for the timers (after _IDLE, the connection reads no
# more requests: _LINGER, a lingering close; _REFUSED, a head too large or chunks too small).
_FRESH, _HEAD, _BUSY, _IDLE, _LINGER, _REFUSED = range(6)


class EdgeProtocol(RequestHandler):
    """One client connection (see the module docstring)."""

    __slots__ = (
        "_budget",
        "_chunks",
        "_deadline",
        "_head_bytes",
        "_limits",
        "_linger_end",
        "_parsed_body",
        "_phase",
        "slot",
        "started",
    )

    def __init__(
        self, manager: web.Server, limits: ClientLimits, budget: ConnectionBudget, **kwargs: Any
    ) -> None:
        super().__init__(manager, **kwargs)
        self._limits = limits
        self._budget = budget  # the listener's (``EdgeServer.budget``)
        self._phase = _FRESH
        # When the current phase times out (cleared while a request is under way).
        self._deadline = Deadline(self._loop, self._expired)
        self.started = 0  # requests begun on this connection
        # The connection's place under the cap: taken when it is made, unless the listener
        # that accepted it handed it over with it (``http.sniffing``).
        self.slot: Slot | None = None
        self._linger_end = 0.0  # when a lingering close ends at the latest
        # Bytes of the request head being parsed, and the body of the last request parsed
        # (until it is whole, what arrives is body, not head).
        self._head_bytes = 0
        self._parsed_body: StreamReader = EMPTY_PAYLOAD
        self._chunks = 0  # chunks of ``_parsed_body`` parsed so far

    # --- the connection cap ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.slot is None:
            self.slot = self._budget.take()
            if self.slot is None:
                self._manager = None  # connection_lost has nothing to undo
                # A stream transport has abort() (uvloop's too, though not an asyncio.Transport).
                abort: Callable[[], None] = getattr(transport, "abort", transport.close)
                abort()
                return
        super().connection_made(transport)
        self._deadline.expire_in(self._limits.header_timeout)

    def connection_lost(self, exc: BaseException | None) -> None:
        if self.slot is not None:
            self.slot.give_back()
        self._deadline.stop()
        super().connection_lost(exc)

    # --- head and idle timers ---------------------------------------------------------------

    def _expired(self) -> None:
        if self._phase == _LINGER:
            self.force_close()  # the lingering close is over
        elif self._waiter is not None and not self._waiter.done():
            self.force_close()  # no request under way: a head not whole in time, or idle

    def data_received(self, data: bytes) -> None:
        phase = self._phase
        if phase > _IDLE:
            if phase == _LINGER:  # dropped unparsed; the client is waited for a while longer
                left = self._linger_end - self._loop.time()
                if left > 0:
                    self._deadline.expire_in(min(LINGER_QUIET, left))
            return  # or _REFUSED: the 431 queued for a head too large ends the connection
        count = self._request_count
        body = self._parsed_body
        # Whether the last request parsed has all its body: what comes now is the next head.
        between = body.is_eof()
        chunks = None if between else body._http_chunk_splits  # (None too: not chunked)
        before = len(chunks) if chunks else 0  # chunk ends not read yet (none read meanwhile)
        RequestHandler.data_received(self, data)  # (named: ``super()`` costs ~1k instructions)
        done = self._request_count - count  # heads completed by ``data``
        if done:
            # One of them may be too large (rare: only a large read can hold one).
            if len(data) + self._head_bytes > MAX_HEAD and self._refused(done):
                return
            self._head_bytes = 0
            body = self._parsed_body = self._messages[-1][1]
            if body is not EMPTY_PAYLOAD:  # (which has no chunk ends at all)
                chunks = body._http_chunk_splits  # a body not read yet: its every chunk
                self._chunks = len(chunks) if chunks else 0
                if self._chunks > CHUNKS_FREE and self._chunks_too_small(body):
                    return
        elif between:
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD:
                self._refuse_head()
                return
        elif (chunks := body._http_chunk_splits) is not None:
            self._chunks += len(chunks) - before
            if self._chunks > CHUNKS_FREE and self._chunks_too_small(body):
                return
        if phase == _BUSY:
            return
        if done:
            self._phase = _BUSY
            self._deadline.clear()
        elif phase == _IDLE and data:
            # The first bytes of the next request, its head not whole yet: the idle timeout
            # gives way to the head's (a head that came whole with them needs neither).
            self._phase = _HEAD
            self._deadline.expire_in(self._limits.header_timeout)

    def _refused(self, done: int) -> bool:
        """The last ``done`` requests queued: the first whose head is over ``MAX_HEAD`` is
        answered 431 instead, and nothing after it (the connection ends with that answer)."""
        messages = self._messages
        first = len(messages) - done
        for index in range(first, len(messages)):
            message = messages[index][0]
            if not isinstance(message, _ErrInfo) and head_size(message) > MAX_HEAD:
                removed = len(messages) - index
                for _ in range(removed):
                    messages.pop()
                self._request_count -= removed
                self._refuse_head()
                return True
        return False

    def _chunks_too_small(self, body: StreamReader) -> bool:
        """Whether ``body``'s chunks average under ``MIN_CHUNK_AVERAGE`` bytes; if so it is
        refused: its reader gets ``ChunksTooSmall``, and the connection reads nothing more (the
        answer ends it, with a lingering close)."""
        if body.total_bytes >= self._chunks * MIN_CHUNK_AVERAGE:
            return False
        body.set_exception(ChunksTooSmall())
        self._phase = _REFUSED
        self._deadline.clear()
        self._reading_paused = True  # (so that the reader's resume_reading does not resume it)
        self._pause_transport_reading()
        return True

    def _refuse_head(self) -> None:
        """Queue a 431 for the head under way (after the requests queued before it) and read
        nothing more from the connection."""
        exc = LineTooLong(b"request head", MAX_HEAD)
        self._messages.append((_ErrInfo(status=431, exc=exc, message=exc.message), EMPTY_PAYLOAD))
        self._request_count += 1
        self._phase = _REFUSED
        self._head_bytes = 0
        self._deadline.clear()
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # --- one request after another -------------------------------------------------------

    async def start(self) -> None:
        """aiohttp's ``RequestHandler.start`` (3.14), the loop over a connection's requests,
        with two differences.  Each request runs in the connection's task, where aiohttp makes
        a task per request (to give each a copy of the context variables, which llmgate does
        not use): a task, two loop callbacks and a context copy a request.  And the edge's
        part is done here: the version check, the ``keepalive_requests`` count, the idle
        deadline, and the request's dict cleared once it is answered.  aiohttp's own idle
        timer is held off (``http.server``)."""
        loop = self._loop
        manager = self._manager
        limits = self._limits
        assert manager is not None
        assert self._request_factory is not None
        assert self._request_handler is not None
        # A request's task (``request.task``) is its connection's, as in aiohttp.
        task = self._task_handler or asyncio.current_task(loop)
        while not self._force_close:
            if not self._messages:
                try:  # wait for the next request
                    self._waiter = loop.create_future()
                    await self._waiter
                finally:
                    self._waiter = None
            message, payload = self._messages.popleft()
            # A parser slot is free; reading resumes once the queue has drained enough.
            if self._parser is not None:
                self._parser.message_consumed()
            if self._buffer_paused and len(self._messages) <= self._msg_queue_resume_size:
                self._resume_reading_if_drained()
            start = loop.time() if self._logging_enabled else None
            manager.requests_count += 1
            writer = StreamWriter(self, loop)
            request_handler: Handler
            if isinstance(message, _ErrInfo):
                request_handler = self._make_error_handler(message)
                message = ERROR
            elif message.version in _VERSIONS:
                request_handler = self._request_handler
                if message.chunked and not plain_chunked(message):
                    request_handler = bad_transfer_encoding
            else:
                request_handler = version_not_supported
            self.started += 1
            if self.started >= limits.keepalive_requests and not message.should_close:
                message = message._replace(should_close=True)  # the connection's last
            request = self._request_factory(message, payload, self, writer, task)  # type: ignore[arg-type]
            try:
                try:
                    response, reset = await self._handle_request(request, start, request_handler)
                except ConnectionError:
                    break  # the client left
                except asyncio.CancelledError:
                    self._log_left(request, start)
                    raise
                if reset:
                    break
                self._keepalive = bool(response.keep_alive)
                if not payload.is_eof():
                    if not self._keepalive:
                        payload.set_exception(_PAYLOAD_ACCESS_ERROR)
                        self._close_lingering()
                        break
                    await self._linger(payload)
                payload.set_exception(_PAYLOAD_ACCESS_ERROR)
            except asyncio.CancelledError:
                self.force_close()
                raise
            except Exception as exc:
                self.log_exception("Unhandled exception", exc_info=exc)
                self.force_close()
            except BaseException:
                self.force_close()
                raise
            finally:
                request._task = None  # type: ignore[assignment]
                # What the handler kept on the request (its context, for the access log,
                # written by now) refers back to the request: dropping it breaks the cycle, so
                # refcounting frees both at once instead of the cyclic collector later.  The
                # request's own dict, cleared in one call: ``MutableMapping.clear`` pops its
                # keys one by one until a KeyError (~20k instructions a request).
                request._state.clear()
            if not self._keepalive or self._close or self._force_close:
                break
            if not self._messages:
                self._phase = _IDLE
                self._deadline.expire_in(limits.keepalive_timeout)
        if not self._force_close:
            self._task_handler = None
            if self.transport is not None and self._phase != _LINGER:
                self.transport.close()

    def _close_lingering(self) -> None:
        """nginx's lingering close, after an answer that ends the connection with the request's
        body unread: the answer is followed by the end of the stream (where the transport can
        half-close: not over TLS), and what the client still sends is dropped unparsed until
        it closes, is ``LINGER_QUIET`` seconds quiet, or ``LINGER_TIME`` seconds have passed.
        Closing at once could reset the connection before the client read the answer."""
        transport = self.transport
        if transport is None:
            return
        self._close = True  # no request follows
        self._phase = _LINGER
        self._linger_end = self._loop.time() + LINGER_TIME
        self._deadline.expire_in(LINGER_QUIET)
        if transport.can_write_eof():
            transport.write_eof()
        # Reading may be held for the unread body's full buffer: what comes now is dropped.
        self._reading_paused = self._buffer_paused = False
        self._resume_transport_reading()

    async def _linger(self, payload: StreamReader) -> None:
        """aiohttp's lingering close: the rest of a body the handler left unread (at most
        ``DISCARD_LIMIT`` bytes still to come, ``name_connection``) is read and dropped for up
        to ``lingering_time`` seconds; past it, the connection closes."""
        lingering_time = self._lingering_time
        if not self._force_close and lingering_time:
            now = self._loop.time()
            end = now + lingering_time
            try:
                while not payload.is_eof() and now < end:
                    async with ceil_timeout(end - now):
                        await payload.readany()
                    now = self._loop.time()
            except (asyncio.CancelledError, TimeoutError):
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise
        if not payload.is_eof() and not self._force_close:
            self.close()

    # --- versions and parser errors ---------------------------------------------------------

    def _log_left(self, request: web.BaseRequest, start_time: float | None) -> None:
        """aiohttp logs a request once its response is finished; one whose client left
        first (its handler cancelled) is logged here, with no response (nginx's 499)."""
        logger = self.access_logger
        if isinstance(logger, LeavingLogger) and start_time is not None:
            logger.log_left(request, self._loop.time() - start_time)

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """aiohttp's answer to a request it could not parse, or whose handler failed:
        ``error_answer``'s (JSON, never an echo of the client's bytes)."""
        return error_answer(request, status, exc)
