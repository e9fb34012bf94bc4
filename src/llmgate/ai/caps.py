"""ai-proxy's caps on a runaway answer: ``max_stream_duration_ms`` and ``max_response_bytes``.

As APISIX (``ai-providers/base.lua``):

- a non-streamed answer whose ``Content-Length`` exceeds ``max_response_bytes``, or whose body
  grows past it, is never relayed: the client gets a 502 (``max_response_bytes exceeded``);
- a stream is cut when its bytes exceed ``max_response_bytes`` or when it runs past
  ``max_stream_duration_ms`` after the request was sent: the upstream connection is closed,
  and so is the client's (it has what was relayed so far, without the stream's end).  A stream
  cut before anything was relayed gets 504 (duration) or 502 (size).

Better than APISIX, which checks the deadline only when a chunk arrives: the deadline also
bounds a stream that stalls.  The chunk that would exceed ``max_response_bytes`` is not relayed
(APISIX relays it, then cuts).  The call records why it was cut (``LlmCall.aborted``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from llmgate.errors import HttpError
from llmgate.http.context import StateKey
from llmgate.proxy.client_response import BodyBroken

if TYPE_CHECKING:
    from multidict import CIMultiDict

    from llmgate.ai.call import LlmCall
    from llmgate.proxy.client import UpstreamResponse

# The ResponseCaps of the target a request was sent to.
STATE_KEY: StateKey[ResponseCaps] = StateKey("llm_caps")
DURATION = "max_stream_duration_ms"
SIZE = "max_response_bytes"


class CapExceeded(HttpError):
    """A cap tripped before anything was relayed: 504 (duration) or 502 (size)."""

    def __init__(self, cap: str) -> None:
        super().__init__({"error_msg": f"{cap} exceeded"}, 504 if cap == DURATION else 502)


@dataclass(frozen=True, slots=True)
class ResponseCaps:
    max_stream_duration_ms: int | None = None
    max_response_bytes: int | None = None

    @property
    def any(self) -> bool:
        return self.max_stream_duration_ms is not None or self.max_response_bytes is not None

    async def apply(self, response: UpstreamResponse, call: LlmCall) -> UpstreamResponse:
        """``response`` held to the caps: a non-streamed body is read here (at most
        ``max_response_bytes``), a stream is read through a deadline and a byte budget.
        ``CapExceeded`` (the response closed) when a cap trips before anything could be
        relayed."""
        limit = self.max_response_bytes
        if not call.stream:
            if limit is None:
                return response
            length = response.headers.get("Content-Length", "")
            if length.isdigit() and int(length) > limit:
                response.close()
                call.aborted = SIZE
                raise CapExceeded(SIZE)
            body = await response.content.read(limit + 1)
            if len(body) > limit:
                response.close()
                call.aborted = SIZE
                raise CapExceeded(SIZE)
            return _capped(response, _Read(body, response))
        deadline = None
        if self.max_stream_duration_ms is not None:
            started = call.started if call.started is not None else time.perf_counter()
            left = self.max_stream_duration_ms / 1000 - (time.perf_counter() - started)
            if left <= 0:
                response.close()
                call.aborted = DURATION
                raise CapExceeded(DURATION)
            deadline = asyncio.get_running_loop().time() + left
        return _capped(response, _Capped(response, call, deadline, limit))


class CappedResponse:
    """The upstream response as the data plane relays it, its body read through the caps.
    (The upstream connection keeps filling the response's own body.)"""

    __slots__ = ("_response", "content")

    def __init__(self, response: UpstreamResponse, content: _Read | _Capped) -> None:
        self._response = response
        self.content = content

    @property
    def status(self) -> int:
        return self._response.status

    @property
    def reason(self) -> str:
        return self._response.reason

    @property
    def headers(self) -> CIMultiDict[str]:
        return self._response.headers

    def release(self) -> None:
        self._response.release()

    def close(self) -> None:
        self._response.close()


def _capped(response: UpstreamResponse, content: _Read | _Capped) -> UpstreamResponse:
    return cast("UpstreamResponse", CappedResponse(response, content))


class _Read:
    """A body already read whole (it fitted ``max_response_bytes``)."""

    __slots__ = ("_body", "_response")

    def __init__(self, body: bytes, response: UpstreamResponse) -> None:
        self._body = body
        self._response = response

    @property
    def complete(self) -> bool:
        return self._response.content.complete

    def take_all(self) -> bytes:
        body, self._body = self._body, b""
        return body

    async def readany(self) -> bytes:
        return self.take_all()

    async def iter_any(self) -> AsyncIterator[bytes]:
        if self._body:
            yield self.take_all()

    async def read(self, limit: int = -1) -> bytes:
        body = self.take_all()
        return body if limit < 0 else body[:limit]


class _Capped:
    """A streamed body read under a deadline and a byte budget."""

    __slots__ = ("_call", "_deadline", "_ended", "_inner", "_limit", "_read", "_response")

    def __init__(
        self, response: UpstreamResponse, call: LlmCall, deadline: float | None, limit: int | None
    ) -> None:
        self._response = response
        self._inner = response.content
        self._call = call
        self._deadline = deadline
        self._limit = limit
        self._read = 0
        self._ended = False

    @property
    def complete(self) -> bool:
        # Until read through here, the body is relayed chunk by chunk (never in one piece
        # past the caps); once read to its end, the connection may be reused.
        return self._ended and self._inner.complete

    def take_all(self) -> bytes:  # never called: ``complete`` is false until the end
        return b""

    async def readany(self) -> bytes:
        if self._ended:
            return b""
        if self._deadline is None:
            chunk = await self._inner.readany()
        else:
            timer = asyncio.timeout_at(self._deadline)
            try:
                async with timer:
                    chunk = await self._inner.readany()
            except TimeoutError:
                if timer.expired():  # the deadline, not the upstream's read timeout
                    self._cut(DURATION)
                raise
        if not chunk:
            self._ended = True
            return b""
        self._read += len(chunk)
        if self._limit is not None and self._read > self._limit:
            self._cut(SIZE)
        return chunk

    async def iter_any(self) -> AsyncIterator[bytes]:
        while chunk := await self.readany():
            yield chunk

    async def read(self, limit: int = -1) -> bytes:
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

    def _cut(self, cap: str) -> None:
        self._call.aborted = cap
        self._ended = True
        self._response.close()
        raise BodyBroken(f"{cap} exceeded")
