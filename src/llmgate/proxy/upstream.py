"""Upstream pools: keep-alive connections per node, a balancer, health checks, retries,
timeouts.

``UpstreamPool.send`` returns the upstream's response with its body still unread (the caller
streams it).  Connection failures and timeouts move on to the next node, as nginx's
``proxy_next_upstream error timeout``: up to ``retries`` times, within ``retry_timeout``, and
only while the request may be sent again (not yet sent, or an idempotent method with a body
that can be replayed); then they become 502 / 504 JSON errors.  Nodes the health checker
(``proxy/health.py``) holds unhealthy get no traffic, unless every node is unhealthy.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import ssl
import time
from collections.abc import Callable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass

from multidict import CIMultiDict

from llmgate.errors import HttpError
from llmgate.http.tls import upstream_context
from llmgate.http.variables import chash_key_reader
from llmgate.proxy.balancer import BALANCERS, Balancer, Node
from llmgate.proxy.client import (
    IDEMPOTENT,
    BodyStream,
    NodePool,
    Timeouts,
    UpstreamError,
    UpstreamResponse,
)
from llmgate.proxy.health import HealthChecker, StatusListener, Target
from llmgate.proxy.probe import Prober
from llmgate.schemas.common import Timeout
from llmgate.schemas.upstream import UpstreamSpec, split_host_port

log = logging.getLogger("llmgate.upstream")

DEFAULT_TIMEOUT = 60.0
_NONE: frozenset[int] = frozenset()  # no node excluded


class BadGateway(HttpError):
    status = 502

    def __init__(self, detail: str = "502 Bad Gateway") -> None:
        super().__init__({"error_msg": detail})


class MissingUpstream(HttpError):
    """A route whose service gives it no upstream either: APISIX's 503."""

    status = 503

    def __init__(self) -> None:
        super().__init__({"error_msg": "missing upstream configuration in Route or Service"})


def no_upstream(upstream_id: str | None) -> HttpError:
    """The error of a request whose route has no upstream pool: 502 when it names an upstream
    (``upstream_id``) that is gone (APISIX: "failed to find upstream by id"), else 503."""
    return BadGateway() if upstream_id is not None else MissingUpstream()


class GatewayTimeout(HttpError):
    status = 504

    def __init__(self, detail: str = "504 Gateway Timeout") -> None:
        super().__init__({"error_msg": detail})


def nodes_of(spec: UpstreamSpec) -> list[Node]:
    default_port = 443 if spec.scheme in ("https", "grpcs") else 80
    if isinstance(spec.nodes, dict):
        result = []
        for address, weight in spec.nodes.items():
            host, port = split_host_port(address)
            result.append(Node(host.strip("[]"), port or default_port, weight))
        return result
    return [
        Node(n.host.strip("[]"), n.port or default_port, n.weight, n.priority) for n in spec.nodes
    ]


@dataclass(slots=True)
class Outgoing:
    """What to send: already rewritten by plugins."""

    method: str
    path_and_query: str
    headers: CIMultiDict[str]
    body: bytes | BodyStream | None
    client_host: str | None  # the inbound Host, for pass_host "pass"
    hash_key: str | None = None  # chash key, computed by the caller
    timeout: Timeout | None = None  # the route's, overriding the upstream's (as APISIX)
    # ``headers`` is the sender's own copy, made for this request: the Host header of a try is
    # set in it, not in a copy of it.
    own_headers: bool = False
    # Each failed try as (address, 502 or 504, seconds), filled in by ``UpstreamPool.send``
    # (the first entries of nginx's $upstream_addr, $upstream_status, ...); None until a try
    # fails.
    failed: list[tuple[str, int, float]] | None = None


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _timeouts(timeout: Timeout | None) -> Timeouts:
    if timeout is None:
        return Timeouts(DEFAULT_TIMEOUT, DEFAULT_TIMEOUT, DEFAULT_TIMEOUT)
    return Timeouts(timeout.connect, timeout.send, timeout.read)


class UpstreamPool:
    """One upstream: its nodes, a balancer, a keep-alive ``NodePool`` per node, and a health
    checker when ``checks`` is set (started by ``start``, stopped by ``close``).

    ``tls``: the client context of an https upstream that presents a client certificate
    (mutual TLS, built by the runtime); without it one is made from ``tls.verify``.  Either
    way every node shares the upstream's one context."""

    def __init__(
        self,
        spec: UpstreamSpec,
        label: str,
        listener: StatusListener | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.spec = spec
        self._tls = tls
        self.label = label
        self.nodes = nodes_of(spec)
        self.balancer: Balancer = BALANCERS[spec.type](self.nodes)
        self.retries = spec.retries if spec.retries is not None else max(len(self.nodes) - 1, 0)
        self.timeouts = _timeouts(spec.timeout)
        self.scheme = "https" if spec.scheme in ("https", "grpcs") else "http"
        # How chash reads a request's key (per ``hash_on``), made once.
        self.hash_key = chash_key_reader(spec.hash_on, spec.key)
        self._node_pools: list[NodePool | None] = [None] * len(self.nodes)
        # The Host header sent to each node when the client's is not (``_host_header``).
        self._pass_host = spec.pass_host == "pass"
        self._node_hosts = [self._host_header(node, None) for node in self.nodes]
        self.checker: HealthChecker | None = None
        if spec.checks is not None:
            self.checker = HealthChecker(
                label, self._targets(), spec.checks, Prober(spec.checks.active), listener
            )

    def _targets(self) -> list[Target]:
        """The health checker's view of the nodes: probed port and Host, as APISIX's
        healthcheck_manager (``active.host`` first, then a rewritten Host, then the node)."""
        assert self.spec.checks is not None
        active = self.spec.checks.active
        rewrite = self.spec.upstream_host if self.spec.pass_host == "rewrite" else None
        return [
            Target(node.host, active.port or node.port, active.host or rewrite or node.host)
            for node in self.nodes
        ]

    def start(self) -> None:
        """Start the health checker's probes (in the running event loop)."""
        if self.checker is not None:
            self.checker.start()

    def healthy(self, index: int) -> bool:
        return self.checker is None or index not in self.checker.down

    def _node_pool(self, index: int) -> NodePool:
        pool = self._node_pools[index]
        if pool is None:
            node = self.nodes[index]
            keepalive = self.spec.keepalive_pool
            context = None
            if self.scheme == "https":
                if self._tls is None:
                    # As APISIX: upstream certificates are verified only when tls.verify says.
                    self._tls = upstream_context(self.spec.tls is not None and self.spec.tls.verify)
                context = self._tls
            # APISIX's ``proxy_ssl_name $upstream_host`` where it is the upstream's own: the
            # rewritten Host; else a domain node's name (not the client's Host: see
            # docs/compatibility.md), none for an address (nginx sends no IP as SNI).
            if self.spec.pass_host == "rewrite":
                sni = self.spec.upstream_host
            else:
                sni = None if _is_ip(node.host) else node.host
            pool = self._node_pools[index] = NodePool(
                node.host,
                node.port,
                context,
                sni,
                max_idle=keepalive.size if keepalive else 320,
                idle_timeout=keepalive.idle_timeout if keepalive else 60.0,
                max_requests=keepalive.requests if keepalive else 1000,
            )
        return pool

    def _host_header(self, node: Node, client_host: str | None) -> str | None:
        """The Host header of a request to ``node`` (made once per node, in ``_node_hosts``,
        for the requests that do not pass the client's)."""
        mode = self.spec.pass_host
        if mode == "rewrite":
            return self.spec.upstream_host
        if mode == "node" or client_host is None:  # a request without Host: the node's
            default = 443 if self.scheme == "https" else 80
            return node.host if node.port == default else node.address
        return client_host

    def _excluded(self, tried: AbstractSet[int]) -> frozenset[int] | None:
        """The nodes the next attempt must not use (None: none is left to try).

        Unhealthy nodes are out while one node is healthy (all unhealthy: all are used); nodes
        already tried are out, except an upstream's only node, which is tried again.
        """
        down = self.checker.down if self.checker is not None else _NONE
        if not tried and not down:
            return _NONE  # the common case: a first attempt, every node healthy
        if len(down) >= len(self.nodes):
            down = frozenset()
        excluded = down.union(tried)
        if len(excluded) < len(self.nodes):
            return excluded
        return frozenset() if len(self.nodes) == 1 else None

    async def send(self, outgoing: Outgoing) -> tuple[UpstreamResponse, int, float]:
        """The upstream's response (body unread), the index of the node that answered and when
        it was asked; call ``finished(index, started)`` once the response is done.

        Cancelling the caller while this waits closes the connection it was using.
        """
        if not self.nodes:
            raise BadGateway("no valid upstream node")
        timeouts = self.timeouts if outgoing.timeout is None else _timeouts(outgoing.timeout)
        checker = self.checker
        balancer = self.balancer
        client_host = outgoing.client_host if self._pass_host else None
        tried = _NONE
        deadline: float | None = None
        error: HttpError | None = None
        while True:
            # ``_excluded``: none on a first try while no node is down (the common case).
            if tried or (checker is not None and checker.down):
                excluded = self._excluded(tried)
                if excluded is None:
                    raise error or BadGateway()
            else:
                excluded = _NONE
            index = balancer.pick(outgoing.hash_key, excluded)
            node = self.nodes[index]
            headers = outgoing.headers
            host = self._node_hosts[index] if client_host is None else client_host
            if host and headers.get("Host") != host:
                if not outgoing.own_headers:
                    headers = CIMultiDict(headers)
                headers["Host"] = host
            balancer.started(index)
            started = time.monotonic()
            if deadline is None and self.spec.retry_timeout:
                deadline = started + self.spec.retry_timeout
            try:
                response = await (self._node_pools[index] or self._node_pool(index)).request(
                    outgoing.method, outgoing.path_and_query, headers, outgoing.body, timeouts
                )
            except TimeoutError as exc:
                balancer.done(index, time.monotonic() - started)
                error, sent = GatewayTimeout(), getattr(exc, "request_sent", True)
                next_upstream = True
                log.warning("upstream %s (%s) timed out: %s", node.address, self.label, exc)
                if checker is not None:
                    checker.report_timeout(index)
            except UpstreamError as exc:
                balancer.done(index, time.monotonic() - started)
                error, sent = BadGateway(), exc.request_sent
                next_upstream = exc.next_upstream
                log.warning("upstream %s (%s) failed: %s", node.address, self.label, exc)
                if checker is not None:
                    checker.report_tcp_failure(index)
            except BaseException:  # cancelled (the client left), or a request body that broke
                balancer.done(index, time.monotonic() - started)
                raise
            else:
                if checker is not None:
                    checker.report_status(index, response.status)
                return response, index, started
            failed = outgoing.failed
            if failed is None:
                failed = outgoing.failed = []
            failed.append((node.address, error.status, time.monotonic() - started))
            tried = tried.union((index,))
            # Tries, not nodes: an only node is tried again, up to ``retries`` times.
            if len(failed) > self.retries:
                raise error
            if deadline is not None and time.monotonic() >= deadline:
                raise error
            if not next_upstream:  # a failure nginx does not try elsewhere (too big header)
                raise error
            # nginx: a request the node may have seen is sent again only when idempotent (and
            # its body can be replayed: a streamed one is gone).
            body = outgoing.body
            replayable = body is None or isinstance(body, bytes)
            if sent and (outgoing.method not in IDEMPOTENT or not replayable):
                raise error

    def finished(self, index: int, started: float) -> None:
        self.balancer.done(index, time.monotonic() - started)

    async def close(self) -> None:
        if self.checker is not None:
            await self.checker.stop()
        for pool in self._node_pools:
            if pool is not None:
                pool.close()
        self._node_pools = [None] * len(self.nodes)


class PoolRegistry:
    """Pools by config fingerprint, reused by successive snapshots while their config holds.

    A pool with ``checks`` is also keyed by its label (the upstream's name): each upstream gets
    its own health checker, as in APISIX, which lives as long as the pool.  ``listener`` hears
    every node's health (the server points it at the ``upstream_status`` metric).
    """

    def __init__(self, listener: StatusListener | None = None) -> None:
        self._pools: dict[str, UpstreamPool] = {}
        self.touched: set[str] = set()  # keys asked for since the last ``begin``
        self.listener = listener

    def begin(self) -> None:
        self.touched = set()

    def get(
        self,
        spec: UpstreamSpec,
        key: str,
        label: str,
        tls: Callable[[], ssl.SSLContext] | None = None,
    ) -> UpstreamPool:
        """The pool of ``key``, made when there is none (``tls`` then makes its client
        context, once: a pool kept across snapshots keeps its context)."""
        if spec.checks is not None:
            key = f"{key}@{label}"
        self.touched.add(key)
        pool = self._pools.get(key)
        if pool is None:
            context = tls() if tls is not None else None
            pool = self._pools[key] = UpstreamPool(spec, label, self.listener, context)
            pool.start()
        return pool

    async def retire(self, keep: set[str]) -> None:
        """Close the pools whose key is not in ``keep``."""
        for key in list(self._pools):
            if key not in keep:
                pool = self._pools.pop(key)
                await pool.close()

    async def close(self) -> None:
        await self.retire(set())
        await asyncio.sleep(0)
