"""Per-request objects of the data plane, named by direction.

- ``ctx.inbound``: the client's request (aiohttp ``web.Request``, read-only), with its
  ``ctx.target`` (the normalised path, query and host the request was routed on) and
  ``ctx.body`` (its body: unread, streaming or buffered; see ``llmgate.http.body``).
- ``ctx.outbound``: the request llmgate will send upstream (mutable by plugins).
- ``ResponseHead``: status and headers of the response on its way to the client (mutable in
  ``header_filter``), whether it came from the upstream or from a plugin's ``Reply``.
  (These messages are ``llmgate.http.messages``', the typed state ``llmgate.http.state``'s;
  their names are importable from here too.)

The context's own fields are the facts every layer may read: the route (``RouteInfo``), the
consumer once identified (``Consumer``), the upstream pool and what it answered, the status,
the request id, the bytes sent.  Anything else a request carries (a plugin's per-request
state, the snapshot and plugin chain the handler runs it with) is in ``ctx.state``, under a
typed key (``StateKey[T]``) owned by the module that writes it: the context itself never names
a type from above its layer, and a reader gets the type the key declares.

This module sits above the upstream client (``ctx.upstream`` is a pool, ``Sent`` a response)
and below ``ai/`` and the plugin API (docs/architecture.md).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aiohttp import web
from multidict import CIMultiDict

from llmgate.http.body import MAX_BUFFERED_BODY, BodyTooLarge, RequestBody
from llmgate.http.messages import OutboundRequest, Reply, ResponseHead
from llmgate.http.paths import RequestTarget, parse_target
from llmgate.http.state import State, StateKey
from llmgate.http.variables import (
    args_variable,
    header_value,
    is_args_variable,
    request_variable,
)
from llmgate.schemas.common import Timeout

if TYPE_CHECKING:
    from llmgate.proxy.client import UpstreamResponse
    from llmgate.proxy.upstream import UpstreamPool

__all__ = [
    "BODY_BYTES",
    "CONTEXT",
    "HEAD_BYTES",
    "SENT_HEADERS",
    "UPSTREAM_HEADERS",
    "UPSTREAM_TRIES",
    "Consumer",
    "Forwarder",
    "OutboundRequest",
    "Reply",
    "RequestContext",
    "ResponseHead",
    "RouteInfo",
    "Sent",
    "State",
    "StateKey",
    "upstream_addrs",
    "upstream_host",
    "upstream_response_times",
    "upstream_scheme",
    "upstream_statuses",
]

# Variables whose value changes while the request runs: never cached.
_CHANGING = frozenset(
    {
        "status",
        "upstream_addr",
        "upstream_status",
        "upstream_response_time",
        "consumer_name",
        "request_id",
        "apisix_request_id",
        "balancer_ip",
        "balancer_port",
    }
)
# nginx's response header variables: read where they stand, never kept (they change).
_RESPONSE_HEADER_VARS = ("sent_http_", "upstream_http_")

# (response with its body unread, the pool, the node index and when it was asked)
Sent = tuple["UpstreamResponse", "UpstreamPool", int, float]
Forwarder = Callable[["RequestContext"], Awaitable[Sent]]


@dataclass(frozen=True, slots=True)
class RouteInfo:
    """What a request knows of its route: ids for logs and metrics, the patterns it was written
    with (metrics label which one matched), its upstream timeouts.  The runtime's
    ``CompiledRoute`` extends it with the plugin chain and the upstream pool."""

    id: str
    name: str | None
    # The route's URI and host patterns as written.
    uris: tuple[str, ...] = ()
    hosts: tuple[str, ...] = ()
    timeout: Timeout | None = None  # the route's upstream timeouts (override the upstream's)
    # The service the route takes its upstream, plugins and hosts from (metric labels).
    service_id: str | None = None
    service_name: str | None = None
    # The upstream the route (or its service) names by id: when it is gone, 502 (no upstream
    # at all: 503), as APISIX.
    upstream_id: str | None = None


@dataclass(frozen=True, slots=True)
class Consumer:
    """Who a request is from, once an auth plugin identified it.  The runtime's
    ``ConsumerEntry`` extends it with the consumer's plugins."""

    username: str
    labels: Mapping[str, str] = field(default_factory=dict)
    group_id: str | None = None


class RequestContext:
    """Everything one request carries through the phases. Created per request; never shared."""

    __slots__ = (
        "_args",
        "_vars",
        "body",
        "bytes_sent",
        "client_aborted",
        "consumer",
        "credential_id",
        "forwarder",
        "inbound",
        "outbound",
        "request_id",
        "response_headers",
        "route",
        "started",
        "state",
        "status",
        "target",
        "upstream",
        "upstream_addr",
        "upstream_broken",
        "upstream_latency",
        "upstream_status",
    )

    def __init__(
        self,
        inbound: web.BaseRequest,
        route: RouteInfo,
        outbound: OutboundRequest,
        upstream: UpstreamPool | None = None,
        target: RequestTarget | None = None,
        body: RequestBody | None = None,
    ) -> None:
        self.inbound = inbound
        self.target = target or parse_target(inbound.raw_path, inbound.headers.get("Host"))
        self.body = body or RequestBody(
            inbound.content, inbound.content_length, inbound.body_exists
        )
        self.route = route
        self.outbound = outbound
        self.consumer: Consumer | None = None
        self.credential_id: str | None = None
        self.upstream = upstream
        # A plugin that sends the upstream request itself (ai-proxy-multi's fallback) sets this.
        self.forwarder: Forwarder | None = None
        self.upstream_addr: str | None = None
        self.upstream_status: int | None = None
        self.upstream_latency: float | None = None
        self.response_headers: CIMultiDict[str] | None = None
        self.status = 0
        self.started = time.perf_counter()
        # The request's id (request-id's header, or an LLM route's X-Request-Id).
        self.request_id: str | None = None
        # Bytes written to the client, head included when known (nginx's $bytes_sent).
        self.bytes_sent: int | None = None
        # The client went away before its answer was done (status 499).
        self.client_aborted = False
        # The upstream broke off its response midway (the client was cut off too).
        self.upstream_broken = False
        self.state = State()
        self._vars: dict[str, str | None] | None = None
        # The query a plugin set in place of the client's (``set_args``); None: the client's.
        self._args: str | None = None

    def add_response_header(self, name: str, value: str) -> None:
        """A header to set on the client response, whatever produces it."""
        if self.response_headers is None:
            self.response_headers = CIMultiDict()
        self.response_headers[name] = value

    def request_headers_changed(self, *names: str) -> None:
        """After a plugin set, added or removed these outbound request headers: ``$http_<name>``
        reads them as changed from now on (APISIX's ``core.request.set_header`` does so)."""
        headers = self.outbound.headers
        self.set_header_vars(
            ("http_" + name.lower().replace("-", "_"), header_value(headers, name))
            for name in names
        )

    def set_header_vars(self, values: Iterable[tuple[str, str | None]]) -> None:
        """``$http_<name>`` of outbound headers a plugin has just set (None: removed), by
        variable name, when the plugin knows them without reading the headers back."""
        if self._vars is None:
            self._vars = {}
        self._vars.update(values)

    def set_args(self, query: str) -> None:
        """Replace the request's query, as APISIX's ``core.request.set_uri_args``: it goes
        upstream, and ``$args``, ``$query_string``, ``$is_args`` and ``$arg_<name>`` read it
        from now on (``$request_uri`` keeps the query as sent, as nginx's)."""
        self.outbound.query = query
        self._args = query
        if self._vars:
            for name in [name for name in self._vars if is_args_variable(name)]:
                del self._vars[name]

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
        if name in _CHANGING:
            return _changing(self, name)
        getter = _KNOWN.get(name)
        if getter is not None:
            return getter(self)
        if name.startswith(_RESPONSE_HEADER_VARS):
            return _response_header(self, name)
        if self._args is not None and is_args_variable(name):
            return args_variable(self._args, name)
        if self._vars is None:
            self._vars = {}
        elif name in self._vars:
            return self._vars[name]
        value = request_variable(self.inbound, self.target, name)
        self._vars[name] = value
        return value


def _changing(ctx: RequestContext, name: str) -> str | None:
    if name == "status":
        return str(ctx.status) if ctx.status else None
    if name == "upstream_status":
        return upstream_statuses(ctx)
    if name == "upstream_addr":
        return upstream_addrs(ctx)
    if name == "upstream_response_time":
        return upstream_response_times(ctx)
    if name == "consumer_name":
        return ctx.consumer.username if ctx.consumer else None
    if name in ("balancer_ip", "balancer_port"):
        if ctx.upstream_addr is None:
            return None
        host, _, port = ctx.upstream_addr.rpartition(":")
        return host.strip("[]") if name == "balancer_ip" else port
    return ctx.request_id  # request_id, apisix_request_id


def _response_header(ctx: RequestContext, name: str) -> str | None:
    """``$sent_http_<name>``: the client response's header as the header filters left it so
    far; ``$upstream_http_<name>``: the upstream's.  None before there is such a response."""
    sent = name.startswith("sent_http_")
    headers = ctx.state.get(SENT_HEADERS if sent else UPSTREAM_HEADERS)
    if headers is None:
        return None
    return header_value(headers, name.partition("http_")[2].replace("_", "-"))


# Variables of the request's route: known when the context is made, never changing.
_KNOWN: dict[str, Callable[[RequestContext], str | None]] = {
    "route_id": lambda ctx: ctx.route.id,
    "route_name": lambda ctx: ctx.route.name,
}


# Where the data plane keeps a routed request's context on its aiohttp request, for the access
# log written once the response is finished (``observability/request_log.py``).
CONTEXT = web.RequestKey("llmgate.ctx", RequestContext)
# The size of a streamed response's head, once sent: what nginx's $body_bytes_sent leaves out
# of $bytes_sent for a client that left mid-response (written by the proxy handler).
HEAD_BYTES: StateKey[int] = StateKey("handler.head_bytes")
# The headers of the response to the client, as its header filters change them, and of the
# upstream's response (nginx's ``$sent_http_*`` and ``$upstream_http_*``; written by the proxy
# handler).
SENT_HEADERS: StateKey[CIMultiDict[str]] = StateKey("handler.sent_headers")
UPSTREAM_HEADERS: StateKey[CIMultiDict[str]] = StateKey("handler.upstream_headers")
# The body of a response sent whole (not streamed): nginx's $body_bytes_sent, known before the
# log phase, while aiohttp writes the response after it (written by the proxy handler).
BODY_BYTES: StateKey[int] = StateKey("handler.body_bytes")
# The upstream tries that failed before the last, as (address, 502 or 504, seconds): the first
# entries of nginx's $upstream_addr, $upstream_status and $upstream_response_time (written by
# the proxy handler, read by the access log and X-APISIX-Upstream-Status).
UPSTREAM_TRIES: StateKey[list[tuple[str, int, float]]] = StateKey("handler.upstream_tries")


def upstream_addrs(ctx: RequestContext) -> str | None:
    """nginx's ``$upstream_addr``: every try's address, ", "-separated, the failed ones first
    ("127.0.0.1:1, 127.0.0.1:2"); None when no upstream was tried."""
    tries = ctx.state.get(UPSTREAM_TRIES)
    if not tries:
        return ctx.upstream_addr
    addresses = [address for address, _, _ in tries]
    if ctx.upstream_addr is not None:
        addresses.append(ctx.upstream_addr)
    return ", ".join(addresses)


def upstream_scheme(ctx: RequestContext) -> str | None:
    """APISIX's ``$upstream_scheme``: http or https; None when no upstream was tried."""
    if ctx.upstream_addr is None:
        return None
    return ctx.upstream.scheme if ctx.upstream is not None else "http"


def upstream_host(ctx: RequestContext) -> str | None:
    """APISIX's ``$upstream_host``: the Host the upstream request carried (proxy-rewrite's
    ``host``, else as the upstream's ``pass_host`` says); None when no upstream was tried."""
    if ctx.upstream_addr is None:
        return None
    if ctx.outbound.host:
        return ctx.outbound.host
    pool = ctx.upstream
    pass_host = pool.spec.pass_host if pool is not None else "node"
    if pass_host == "pass":
        return ctx.target.authority
    if pool is not None and pass_host == "rewrite":
        return pool.spec.upstream_host
    return ctx.upstream_addr


def upstream_statuses(ctx: RequestContext) -> str | None:
    """nginx's ``$upstream_status``: every try's status, ", "-separated, the failed ones first
    ("502, 200"); None when no upstream answered or failed."""
    last = str(ctx.upstream_status) if ctx.upstream_status else None
    tries = ctx.state.get(UPSTREAM_TRIES)
    if not tries:
        return last
    statuses = [str(status) for _, status, _ in tries]
    if last is not None:
        statuses.append(last)
    return ", ".join(statuses)


def upstream_response_times(ctx: RequestContext) -> str | None:
    """nginx's ``$upstream_response_time``: every try's seconds (milliseconds precision),
    ", "-separated, the failed ones first ("0.002, 0.010"); None when no upstream was tried.
    The last try is listed once its response is over (the log phase)."""
    times = [_seconds(seconds) for _, _, seconds in ctx.state.get(UPSTREAM_TRIES, ())]
    if ctx.upstream_latency is not None:
        times.append(_seconds(ctx.upstream_latency))
    return ", ".join(times) if times else None


def _seconds(value: float) -> str:
    return f"{max(value, 0.0):.3f}"
