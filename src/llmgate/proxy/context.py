"""Per-request objects of the data plane, named by direction.

- ``ctx.inbound``: the client's request (aiohttp ``web.Request``, read-only), with its
  ``ctx.target`` (the normalised path, query and host the request was routed on) and
  ``ctx.body`` (its body: unread, streaming or buffered; see ``llmgate.http.body``).
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

from llmgate.http.body import MAX_BUFFERED_BODY, BodyTooLarge, RequestBody
from llmgate.http.paths import RequestTarget, parse_target

if TYPE_CHECKING:
    from llmgate.proxy.client import UpstreamResponse
    from llmgate.proxy.upstream import UpstreamPool
    from llmgate.runtime.snapshot import CompiledRoute, ConsumerEntry, PluginChain, Snapshot

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


@dataclass(slots=True)
class OutboundRequest:
    """What llmgate sends upstream.  ``body`` is a plugin's replacement of the client's body;
    None means: send the client's body (``ctx.body``) as it came."""

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
        "_vars",
        "body",
        "chain",
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
        "target",
        "upstream",
        "upstream_addr",
        "upstream_latency",
        "upstream_status",
    )

    def __init__(
        self,
        inbound: web.BaseRequest,
        snapshot: Snapshot,
        route: CompiledRoute,
        outbound: OutboundRequest,
        target: RequestTarget | None = None,
        body: RequestBody | None = None,
    ) -> None:
        self.inbound = inbound
        self.target = target or parse_target(inbound.raw_path, inbound.headers.get("Host"))
        self.body = body or RequestBody(
            inbound.content, inbound.content_length, inbound.body_exists
        )
        self.snapshot = snapshot
        self.route = route
        self.outbound = outbound
        # The plugins running this request: the route's, merged with the consumer's once known.
        self.chain: PluginChain = route.chain
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

    def add_response_header(self, name: str, value: str) -> None:
        """A header to set on the client response, whatever produces it."""
        if self.response_headers is None:
            self.response_headers = CIMultiDict()
        self.response_headers[name] = value

    async def current_body(self, limit: int = MAX_BUFFERED_BODY) -> bytes:
        """The body as it will go upstream: a plugin's replacement, else the client's, read
        whole.  ``BodyTooLarge`` past ``limit`` bytes, or past ``MAX_BUFFERED_BODY`` (what one
        request may hold in memory) when that is lower: its ``limit`` tells which."""
        limit = min(limit, MAX_BUFFERED_BODY)
        body = self.outbound.body
        if body is None:
            return await self.body.read(limit)
        if len(body) > limit:
            raise BodyTooLarge(len(body), limit)
        return body

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
