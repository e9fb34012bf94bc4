"""The HTTP/1.x connections of a listener, held to nginx's client limits.

aiohttp's ``RequestHandler`` parses requests and runs a handler per request; it has no request
head timeout, keeps idle connections for an hour and accepts every connection the process can
open.  ``EdgeServer`` (an aiohttp ``web.Server``) makes ``EdgeProtocol`` connections instead:

- a connection's first request head must be whole within ``header_timeout`` of the accept, a
  later one within ``header_timeout`` of its first byte; an idle connection is closed after
  ``keepalive_timeout``, and after ``keepalive_requests`` requests (``Connection: close``);
- past ``connection_cap()`` open connections a new one is reset at once (each listener has its
  own budget, so a flooded data plane leaves the admin API reachable);
- requests other than HTTP/1.0 and 1.1 get 505, and what aiohttp's parser refuses gets a JSON
  400, 414 (request line too long) or 431 (header too large, too many headers), never an echo
  of the client's bytes;
- answers say ``Server: llmgate/<version>`` (``SERVER``), as APISIX's say ``APISIX/<version>``,
  not aiohttp's ``Python/3.x aiohttp/3.x``, which told every client the stack and its versions;
- answers name the connection's fate, ``Connection: keep-alive`` or ``close``, as nginx's do
  (``name_connection``; aiohttp leaves it out where HTTP's default says it).

The head and idle timeouts share one timer per connection, re-armed lazily: each phase change
only moves a deadline, and the timer, when it fires before that deadline, sets itself again
for it.  A request on a kept-alive connection then costs no timer at all, where creating and
cancelling a timer costs ~3 us on uvloop (aiohttp's own idle timer is held off: it would close
a connection in the middle of a slow request head).

The body's timeout (between two reads) is the body reader's (``llmgate.http.body``).  This
module leans on a few private parts of aiohttp's ``RequestHandler`` (``_waiter``,
``_messages``, ``_request_count``, ``_handle_request``) and ``BaseRequest`` (``_state``);
``tests/http/test_protocol.py`` pins the behaviour they give.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol, runtime_checkable

import orjson
from aiohttp import web, web_response
from aiohttp.http_exceptions import BadHttpMessage, LineTooLong
from aiohttp.web_protocol import RequestHandler

from llmgate import __version__
from llmgate.http.deadline import Deadline
from llmgate.http.limits import ClientLimits

log = logging.getLogger("llmgate.http")

# nginx reads a request line and each header line into 8 KiB buffers.  The two limits differ
# by one byte so that aiohttp's LineTooLong tells which one was passed (414 or 431).
MAX_REQUEST_LINE = 8192
MAX_FIELD = 8190
MAX_HEADERS = 128

_VERSIONS = frozenset({(1, 0), (1, 1)})
_AIOHTTP_IDLE = 10.0**9  # seconds
SERVER = f"llmgate/{__version__}"

Handler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]


@runtime_checkable
class LeavingLogger(Protocol):
    """An access logger that also logs requests whose client left before the response was
    done (no response to show)."""

    def log_left(self, request: web.BaseRequest, elapsed: float) -> None: ...


def _json(status: int, error_msg: str) -> web.Response:
    response = web.Response(
        status=status,
        body=orjson.dumps({"error_msg": error_msg}),
        content_type="application/json",
    )
    response.force_close()
    return response


async def _version_not_supported(_request: web.BaseRequest) -> web.StreamResponse:
    return _json(505, "HTTP version not supported")


PLAIN_HTTP_ON_TLS = "The plain HTTP request was sent to HTTPS port"


async def plain_http_on_tls_port(_request: web.BaseRequest) -> web.StreamResponse:
    """nginx's answer to plain HTTP sent to an HTTPS port (400, then the connection is
    closed), with APISIX's JSON error body instead of nginx's HTML page."""
    return _json(400, PLAIN_HTTP_ON_TLS)


def name_connection(response: web.StreamResponse) -> None:
    """Say in ``response`` whether its connection stays open, as nginx does on every answer
    (aiohttp says it only where it differs from the HTTP version's default).  Called once
    aiohttp decided (``keep_alive``), before the head is written."""
    headers = response.headers
    if "Connection" not in headers:
        headers["Connection"] = "keep-alive" if response.keep_alive else "close"


class EdgeRequest(web.BaseRequest):
    """A request of an ``EdgeServer`` without an application (the data plane)."""

    async def _prepare_hook(self, response: web.StreamResponse) -> None:
        name_connection(response)


class EdgeServer(web.Server):
    """aiohttp's low-level server, making ``EdgeProtocol`` connections held to ``limits``."""

    def __init__(
        self,
        handler: Handler,
        limits: ClientLimits,
        *,
        max_connections: int | None = None,
        **kwargs: Any,
    ) -> None:
        options: dict[str, Any] = {
            "access_log": None,
            # aiohttp's idle timer never fires: ``EdgeProtocol`` closes idle connections.
            "keepalive_timeout": _AIOHTTP_IDLE,
            "max_line_size": MAX_REQUEST_LINE,
            "max_field_size": MAX_FIELD,
            "max_headers": MAX_HEADERS,
        }
        options.update(kwargs)
        super().__init__(handler, **options)
        # What aiohttp puts in the Server header of every answer that has none (its default
        # names Python, aiohttp and their versions).
        web_response.SERVER_SOFTWARE = SERVER  # type: ignore[attr-defined]
        self._options = {k: v for k, v in options.items() if k not in _SERVER_ONLY}
        self.limits = limits
        self.cap = max_connections or limits.connection_cap()
        self.open = 0  # connections accepted and not yet closed
        self.refused = 0  # connections reset at once because ``cap`` were open
        inner = self.request_factory

        def make_request(message: Any, payload: Any, protocol: Any, *args: Any) -> Any:
            protocol.started += 1
            if protocol.started >= limits.keepalive_requests and not message.should_close:
                message = message._replace(should_close=True)
            return inner(message, payload, protocol, *args)

        self.request_factory = make_request

    def _make_request(
        self,
        message: Any,
        payload: Any,
        protocol: RequestHandler,
        writer: Any,
        task: asyncio.Task[None],
    ) -> web.BaseRequest:
        return EdgeRequest(message, payload, protocol, writer, task, self._loop)

    def __call__(self) -> RequestHandler:
        return EdgeProtocol(self, loop=self._loop, **self._options)


_SERVER_ONLY = frozenset({"request_factory", "handler_cancellation", "loop"})

# Where a connection is between requests, for the timers.
_FRESH, _HEAD, _BUSY, _IDLE = range(4)


class EdgeProtocol(RequestHandler):
    """One client connection (see the module docstring)."""

    __slots__ = ("_deadline", "_edge", "_phase", "started")

    def __init__(self, manager: EdgeServer, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._edge = manager
        self._phase = _FRESH
        # When the current phase times out (cleared while a request is under way).
        self._deadline = Deadline(self._loop, self._expired)
        self.started = 0  # requests begun on this connection

    # --- the connection cap ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        edge = self._edge
        if edge.open >= edge.cap:
            edge.refused += 1
            self._manager = None  # connection_lost has nothing to undo
            # A stream transport has abort() (uvloop's too, though not an asyncio.Transport).
            abort: Callable[[], None] = getattr(transport, "abort", transport.close)
            abort()
            return
        edge.open += 1
        super().connection_made(transport)
        self._deadline.expire_in(edge.limits.header_timeout)

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._manager is not None:
            self._edge.open -= 1
        self._deadline.stop()
        super().connection_lost(exc)

    # --- head and idle timers ---------------------------------------------------------------

    def _expired(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self.force_close()  # no request under way: a head not whole in time, or idle

    def data_received(self, data: bytes) -> None:
        phase = self._phase
        if phase == _BUSY:
            super().data_received(data)
            return
        count = self._request_count
        super().data_received(data)
        if self._request_count != count:  # a whole head arrived
            self._phase = _BUSY
            self._deadline.clear()
        elif phase == _IDLE and data:
            # The first bytes of the next request, its head not whole yet: the idle timeout
            # gives way to the head's (a head that came whole with them needs neither).
            self._phase = _HEAD
            self._deadline.expire_in(self._edge.limits.header_timeout)

    async def finish_response(
        self, request: web.BaseRequest, resp: web.StreamResponse, start_time: float | None
    ) -> tuple[web.StreamResponse, bool]:
        try:
            answer = await super().finish_response(request, resp, start_time)
        finally:
            # What the handler kept on the request (its context, for the access log, written
            # by now) refers back to the request: dropping it breaks the cycle, so refcounting
            # frees both at once instead of the cyclic collector later (~14 us a request).
            # The request's own dict, cleared in one call: ``MutableMapping.clear`` pops its
            # keys one by one, through four Python calls a key.
            request._state.clear()
        if not self._messages:
            self._phase = _IDLE
            self._deadline.expire_in(self._edge.limits.keepalive_timeout)
        return answer

    # --- versions and parser errors ---------------------------------------------------------

    def _handle_request(
        self, request: web.BaseRequest, start_time: float | None, request_handler: Handler
    ) -> Coroutine[Any, Any, tuple[web.StreamResponse, bool]]:
        if request.version not in _VERSIONS:
            request_handler = _version_not_supported
        if self.access_logger is None:
            return super()._handle_request(request, start_time, request_handler)
        return self._logged(request, start_time, request_handler)

    async def _logged(
        self, request: web.BaseRequest, start_time: float | None, request_handler: Handler
    ) -> tuple[web.StreamResponse, bool]:
        """aiohttp logs a request once its response is finished; one whose client left
        first (its handler cancelled) is logged here, with no response (nginx's 499)."""
        try:
            return await super()._handle_request(request, start_time, request_handler)
        except asyncio.CancelledError:
            logger = self.access_logger
            if isinstance(logger, LeavingLogger) and start_time is not None:
                logger.log_left(request, self._loop.time() - start_time)
            raise

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """A JSON answer for a request aiohttp could not parse (or a handler that failed);
        the client's bytes are never echoed, nor logged above debug level."""
        if request.writer.output_size > 0:
            raise ConnectionError("response already started: cannot send an error")
        if isinstance(exc, LineTooLong):
            if exc.args[1:2] == (MAX_REQUEST_LINE,):
                return _json(414, "request URI too long")
            return _json(431, "request header fields too large")
        if isinstance(exc, BadHttpMessage) and "Too many headers" in str(exc):
            return _json(431, "request header fields too large")
        if status >= 500:
            log.error("request from %s failed", request.remote, exc_info=exc)
            return _json(500, "internal error")
        log.debug("bad request from %s: %s", request.remote, exc)
        return _json(status, "bad request")
