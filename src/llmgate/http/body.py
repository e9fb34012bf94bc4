"""The client's request body: read once, whole or as a stream, however its bytes arrive.

A body arrives in as many TCP reads as the network likes; ``StreamReader.read(n)`` returns
whatever has arrived, so reading "up to n bytes" once truncates it.  ``RequestBody`` reads until
the end the HTTP framing declares (Content-Length or the last chunk), and its state says what
has happened to it::

    UNREAD ──read()──> BUFFERED          the whole body in memory (read() again: the same bytes)
       │
       └──stream()──> STREAMING         handed out once, chunk by chunk (big bodies go upstream
                                        without being held)
    a read that fails half-way (too large, too slow, broken framing) leaves it BROKEN.

Limits are enforced while reading: a declared length over the limit is refused before a byte
is read, a chunked body as soon as it passes the limit.  Between two reads the client has
``timeout`` seconds (nginx's ``client_body_timeout``).  Bodies read whole also count against
the process's ``BodyBudget`` (every request's buffered bodies together, until ``release()`` at
the end of the request): a body that would pass it is refused with 503, so many concurrent
large bodies cannot exhaust memory (nginx spools them to disk instead).

Errors: ``BodyTooLarge`` (413), ``BodyTimeout`` (408), ``BadBody`` (400, broken framing),
``ChunksTooSmall`` (400, millions of tiny chunks: the connection sets it on the stream),
``BodiesOverBudget`` (503, with ``Retry-After: 1``), and ``ClientGone`` (the client left: no
one to answer; the data plane logs it as 499).
"""

from __future__ import annotations

import asyncio
import enum
from typing import ClassVar, Protocol

from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError

from llmgate.errors import CLOSES_CONNECTION, HttpError

__all__ = [
    "MAX_BUFFERED_BODY",
    "BadBody",
    "BodiesOverBudget",
    "BodyBudget",
    "BodyState",
    "BodyTimeout",
    "BodyTooLarge",
    "ChunksTooSmall",
    "ClientGone",
    "RequestBody",
]

# The most the data plane holds in memory for one request body (plugins that read it whole).
MAX_BUFFERED_BODY = 16 * 1024 * 1024


class BodyTooLarge(HttpError):
    """413 ``{"error_msg": "request body too large"}``; ``size`` is the declared length or the
    bytes read when the limit was passed.  The connection ends with the answer, as nginx's: the
    rest of the body is not read."""

    status = 413
    headers: ClassVar[dict[str, str]] = CLOSES_CONNECTION

    def __init__(self, size: int, limit: int) -> None:
        super().__init__({"error_msg": "request body too large"})
        self.size = size
        self.limit = limit


class BodiesOverBudget(HttpError):
    """503: the process holds as many request bodies in memory as it may; try again soon."""

    status = 503
    headers: ClassVar[dict[str, str]] = {"Retry-After": "1"}

    def __init__(self) -> None:
        super().__init__({"error_msg": "too many request bodies in flight"})


class BodyBudget:
    """Bytes of request bodies one process holds in memory at once, all requests together."""

    __slots__ = ("held", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0

    def take(self, size: int) -> bool:
        if self.held + size > self.limit:
            return False
        self.held += size
        return True

    def give(self, size: int) -> None:
        self.held = max(self.held - size, 0)


class BodyTimeout(HttpError):
    """408: the client sent nothing for ``client_body_timeout`` seconds mid-body."""

    status = 408

    def __init__(self) -> None:
        super().__init__({"error_msg": "request body timed out"})


class BadBody(HttpError):
    """400: the body's framing is broken (bad chunk, fewer bytes than Content-Length...)."""

    status = 400

    def __init__(self) -> None:
        super().__init__({"error_msg": "invalid request body"})


class ChunksTooSmall(HttpError):
    """400: a chunked body of too many tiny chunks (``llmgate.http.protocol`` counts them as
    they are parsed).  Each chunk costs a microsecond or so of Python, nginx's nanoseconds: one
    client sending millions would hold the process.  The connection ends with the answer; the
    rest of the body is not read."""

    status = 400
    headers: ClassVar[dict[str, str]] = CLOSES_CONNECTION

    def __init__(self) -> None:
        super().__init__({"error_msg": "request body chunks too small"})


class ClientGone(ConnectionError):
    """The client closed or reset its connection before its body was read."""


class BodyState(enum.Enum):
    UNREAD = "unread"
    STREAMING = "streaming"
    BUFFERED = "buffered"
    BROKEN = "broken"


class Source(Protocol):
    """Where body bytes come from (aiohttp's ``StreamReader`` is one)."""

    async def readany(self) -> bytes: ...

    def read_nowait(self, n: int = -1) -> bytes: ...

    def at_eof(self) -> bool: ...

    def is_eof(self) -> bool: ...


class Closable(Protocol):
    def is_closing(self) -> bool: ...


class RequestBody:
    """One request's body.  ``length`` is the declared Content-Length (None when chunked);
    ``exists`` is False for a request without a body.  ``connection`` tells a client that
    left from one that sent broken framing."""

    __slots__ = (
        "_budget",
        "_charged",
        "_data",
        "_source",
        "connection",
        "exists",
        "length",
        "received",
        "state",
        "timeout",
    )

    def __init__(
        self,
        source: Source | None,
        length: int | None,
        exists: bool,
        timeout: float | None = 60.0,
        connection: Closable | None = None,
        budget: BodyBudget | None = None,
    ) -> None:
        self._source = source
        self._budget = budget
        self._charged = 0  # bytes taken from the budget
        self.length = length
        self.exists = exists and source is not None
        self.timeout = timeout
        self.connection = connection
        self.state = BodyState.UNREAD
        self.received = 0  # bytes read from the client so far
        self._data: bytes | None = None

    @property
    def buffered(self) -> bytes | None:
        """The whole body if ``read`` has read it, else None (never reads)."""
        return self._data

    async def read(self, limit: int = MAX_BUFFERED_BODY) -> bytes:
        """The whole body, read once and kept; ``BodyTooLarge`` when it is over ``limit``."""
        if self._data is not None:
            if len(self._data) > limit:
                raise BodyTooLarge(len(self._data), limit)
            return self._data
        if self.state is not BodyState.UNREAD:
            raise RuntimeError(f"the request body is {self.state.value}: it cannot be read")
        if not self.exists:
            self._data = b""
            self.state = BodyState.BUFFERED
            return self._data
        if self.length is not None and self.length > limit:
            raise BodyTooLarge(self.length, limit)
        if self.length is not None:
            self._charge(self.length)  # refused before a byte is read
        parts: list[bytes] = []
        try:
            # What has arrived, taken at once: most bodies are whole by the time they are read.
            chunk = self._take()
            if self.received != self.length or not chunk:
                if chunk:
                    self._account(chunk, parts, limit)
                while chunk := await self._next():
                    self._account(chunk, parts, limit)
                    if self.received == self.length:
                        break  # all the declared bytes (the parser has ended the stream too)
                chunk = parts[0] if len(parts) == 1 else b"".join(parts)
        except BaseException:
            self.state = BodyState.BROKEN
            self.release()
            raise
        self._data = chunk
        self.state = BodyState.BUFFERED
        return chunk

    def _account(self, chunk: bytes, parts: list[bytes], limit: int) -> None:
        """Keep ``chunk`` of a body read whole, within ``limit`` and the budget."""
        parts.append(chunk)
        if self.received > limit:
            raise BodyTooLarge(self.received, limit)
        if self.received > self._charged:
            self._charge(self.received - self._charged)

    def _charge(self, size: int) -> None:
        budget = self._budget
        if budget is None:
            return
        if not budget.take(size):
            self.state = BodyState.BROKEN
            raise BodiesOverBudget()
        self._charged += size

    def release(self) -> None:
        """Give the body's bytes back to the budget (the request is over)."""
        if self._budget is not None and self._charged:
            self._budget.give(self._charged)
        self._charged = 0

    def stream(self) -> BodyStream:
        """The body as a stream of chunks, for sending on without holding it (once)."""
        if self.state is not BodyState.UNREAD:
            raise RuntimeError(f"the request body is {self.state.value}: it cannot be streamed")
        self.state = BodyState.STREAMING
        return BodyStream(self)

    @property
    def arrived(self) -> bool:
        """Whether every byte of the body has arrived, read or not (or there is none)."""
        source = self._source
        return self._data is not None or source is None or source.is_eof()

    async def _next(self) -> bytes:
        """The next bytes of the body; b"" at its end."""
        chunk = self._take()
        if chunk:
            return chunk
        source = self._source
        assert source is not None
        if source.at_eof():
            return b""
        try:
            async with asyncio.timeout(self.timeout):
                chunk = await source.readany()
        except TimeoutError:
            raise BodyTimeout() from None
        except _READ_ERRORS as exc:
            raise self._failed(exc) from exc
        self.received += len(chunk)
        return chunk

    def _take(self) -> bytes:
        """The bytes of the body that have arrived and are not read yet (b"" for none)."""
        source = self._source
        assert source is not None
        try:
            chunk = source.read_nowait()
        except _READ_ERRORS as exc:
            raise self._failed(exc) from exc
        self.received += len(chunk)
        return chunk

    def _failed(self, exc: Exception) -> Exception:
        """What a read of the client's bytes that failed with ``exc`` raises."""
        if isinstance(exc, TimeoutError):
            return BodyTimeout()
        if isinstance(exc, ConnectionError | asyncio.IncompleteReadError):
            return ClientGone(str(exc))
        # Broken framing, or a body cut short because the connection closed.
        connection = self.connection
        if connection is None or connection.is_closing():
            return ClientGone(str(exc))
        return BadBody()


# What a read of the client's bytes may fail with (``RequestBody._failed`` says what each means).
_READ_ERRORS = (
    TimeoutError,
    ConnectionError,
    asyncio.IncompleteReadError,
    RequestPayloadError,
    HttpProcessingError,
)


class BodyStream:
    """The body as the upstream client reads it: ``readany`` until b""."""

    __slots__ = ("_body",)

    def __init__(self, body: RequestBody) -> None:
        self._body = body

    @property
    def total_bytes(self) -> int:
        """Bytes handed out so far."""
        return self._body.received

    async def readany(self) -> bytes:
        body = self._body
        try:
            return await body._next()
        except BaseException:
            body.state = BodyState.BROKEN
            raise
