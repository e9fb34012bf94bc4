"""Per-request objects of the data plane, named by direction.

- ``ctx.inbound``: the client's request (aiohttp ``web.Request``, read-only).
- ``ctx.outbound``: the request llmgate will send upstream (mutable by plugins).
- ``ResponseHead``: status and headers of the response on its way to the client (mutable in
  ``header_filter``), whether it came from the upstream or from a plugin's ``Reply``.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web
from multidict import CIMultiDict

from llmgate.errors import HttpError

if TYPE_CHECKING:
    from llmgate.proxy.client import UpstreamResponse
    from llmgate.proxy.upstream import UpstreamPool
    from llmgate.runtime.snapshot import CompiledRoute, ConsumerEntry, Snapshot

MAX_BUFFERED_BODY = 16 * 1024 * 1024

# Variables whose value changes while the request runs: never cached.
_CHANGING = frozenset(
    {
        "status",
        "upstream_addr",
        "upstream_status",
        "consumer_name",
        "request_id",
        "apisix_request_id",
    }
)

# (response with its body unread, the pool, the node index and when it was asked)
Sent = tuple["UpstreamResponse", "UpstreamPool", int, float]
Forwarder = Callable[["RequestContext"], Awaitable[Sent]]


class PayloadTooLarge(HttpError):
    status = 413

    def __init__(self) -> None:
        super().__init__({"error_msg": "request body too large"})


@dataclass(slots=True)
class OutboundRequest:
    """What llmgate sends upstream. ``body`` None means: stream the inbound body through."""

    method: str
    path: str
    query: str
    headers: CIMultiDict[str]
    body: bytes | None = None
    host: str | None = None  # a Host header set by a plugin (proxy-rewrite ``host``)


@dataclass(slots=True)
class Reply:
    """A response produced by a plugin, which ends the request."""

    status: int
    body: bytes | AsyncIterator[bytes] = b""
    headers: CIMultiDict[str] = field(default_factory=CIMultiDict)

    @classmethod
    def json(cls, status: int, payload: Any, headers: dict[str, str] | None = None) -> Reply:
        head: CIMultiDict[str] = CIMultiDict(headers or {})
        head["Content-Type"] = "application/json"
        return cls(status, orjson.dumps(payload), head)

    @classmethod
    def error(cls, status: int, error_msg: str, **headers: str) -> Reply:
        return cls.json(status, {"error_msg": error_msg}, headers or None)

    @classmethod
    def message(cls, status: int, message: str, headers: dict[str, str] | None = None) -> Reply:
        return cls.json(status, {"message": message}, headers)


@dataclass(slots=True)
class ResponseHead:
    status: int
    headers: CIMultiDict[str]
    from_upstream: bool = True


class RequestContext:
    """Everything one request carries through the phases. Created per request; never shared."""

    __slots__ = (
        "_body",
        "_vars",
        "consumer",
        "credential_id",
        "forwarder",
        "inbound",
        "outbound",
        "response_headers",
        "route",
        "snapshot",
        "started",
        "state",
        "status",
        "upstream",
        "upstream_addr",
        "upstream_latency",
        "upstream_status",
    )

    def __init__(
        self,
        inbound: web.Request,
        snapshot: Snapshot,
        route: CompiledRoute,
        outbound: OutboundRequest,
    ) -> None:
        self.inbound = inbound
        self.snapshot = snapshot
        self.route = route
        self.outbound = outbound
        self.consumer: ConsumerEntry | None = None
        self.credential_id: str | None = None
        self.upstream: UpstreamPool | None = route.upstream
        # A plugin that sends the upstream request itself (ai-proxy-multi's fallback) sets this.
        self.forwarder: Forwarder | None = None
        self.upstream_addr: str | None = None
        self.upstream_status: int | None = None
        self.upstream_latency: float | None = None
        self.response_headers: CIMultiDict[str] | None = None
        self.status = 0
        self.started = time.perf_counter()
        self.state: dict[str, Any] = {}
        self._vars: dict[str, str | None] | None = None
        self._body: bytes | None = None

    def add_response_header(self, name: str, value: str) -> None:
        """A header to set on the client response, whatever produces it."""
        if self.response_headers is None:
            self.response_headers = CIMultiDict()
        self.response_headers[name] = value

    @property
    def buffered_body(self) -> bytes | None:
        """The inbound body if ``read_body`` already read it, else None (never reads)."""
        return self._body

    async def read_body(self) -> bytes:
        """The inbound body, read once and kept (413 past ``MAX_BUFFERED_BODY``)."""
        if self._body is None:
            if (self.inbound.content_length or 0) > MAX_BUFFERED_BODY:
                raise PayloadTooLarge()
            body = await self.inbound.content.read(MAX_BUFFERED_BODY + 1)
            if len(body) > MAX_BUFFERED_BODY:
                raise PayloadTooLarge()
            self._body = body
            if self.outbound.body is None:
                self.outbound.body = body
        return self._body

    def var(self, name: str) -> str | None:
        """An APISIX/nginx variable (``remote_addr``, ``uri``, ``arg_x``, ``http_x``...)."""
        from llmgate.proxy.variables import lookup

        if name in _CHANGING:
            return lookup(self, name)
        if self._vars is None:
            self._vars = {}
        elif name in self._vars:
            return self._vars[name]
        value = lookup(self, name)
        self._vars[name] = value
        return value
