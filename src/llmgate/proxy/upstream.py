"""Upstream pools: keep-alive connections per node, a balancer, retries, timeouts.

``UpstreamPool.send`` returns the upstream's response with its body still unread (the caller
streams it); connection failures and timeouts move on to the next node up to ``retries``
times, then become 502 / 504 JSON errors.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import ssl
import time
from dataclasses import dataclass

from multidict import CIMultiDict

from llmgate.errors import HttpError
from llmgate.proxy.balancer import BALANCERS, Balancer, Node
from llmgate.proxy.client import BodyStream, NodePool, UpstreamError, UpstreamResponse
from llmgate.proxy.variables import Template
from llmgate.schemas.upstream import UpstreamSpec, split_host_port

log = logging.getLogger("llmgate.upstream")

DEFAULT_TIMEOUT = 60.0


class BadGateway(HttpError):
    status = 502

    def __init__(self, detail: str = "502 Bad Gateway") -> None:
        super().__init__({"error_msg": detail})


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


@dataclass(frozen=True, slots=True)
class Outgoing:
    """What to send: already rewritten by plugins."""

    method: str
    path_and_query: str
    headers: CIMultiDict[str]
    body: bytes | BodyStream | None
    client_host: str | None  # the inbound Host, for pass_host "pass"
    hash_key: str | None = None  # chash key, computed by the caller


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _ssl_context(verify: bool) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if not verify:
        # As APISIX: upstream certificates are verified only when tls.verify says so.
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["http/1.1"])
    return context


class UpstreamPool:
    """One upstream: its nodes, a balancer, and a keep-alive ``NodePool`` per node."""

    def __init__(self, spec: UpstreamSpec, label: str) -> None:
        self.spec = spec
        self.label = label
        self.nodes = nodes_of(spec)
        self.balancer: Balancer = BALANCERS[spec.type](self.nodes)
        self.retries = spec.retries if spec.retries is not None else max(len(self.nodes) - 1, 0)
        timeout = spec.timeout
        self.connect_timeout = timeout.connect if timeout else DEFAULT_TIMEOUT
        self.read_timeout = timeout.read if timeout else DEFAULT_TIMEOUT
        self.scheme = "https" if spec.scheme in ("https", "grpcs") else "http"
        # chash on vars_combinations: the key template, compiled once.
        self.hash_template = Template.compile(spec.key or "")
        self._node_pools: list[NodePool | None] = [None] * len(self.nodes)

    def _node_pool(self, index: int) -> NodePool:
        pool = self._node_pools[index]
        if pool is None:
            node = self.nodes[index]
            keepalive = self.spec.keepalive_pool
            context = None
            if self.scheme == "https":
                context = _ssl_context(bool(self.spec.tls is not None and self.spec.tls.verify))
            sni = node.host if not _is_ip(node.host) else self.spec.upstream_host
            pool = self._node_pools[index] = NodePool(
                node.host,
                node.port,
                context,
                sni,
                max_idle=keepalive.size if keepalive else 320,
                idle_timeout=keepalive.idle_timeout if keepalive else 60.0,
            )
        return pool

    def _host_header(self, node: Node, client_host: str | None) -> str | None:
        mode = self.spec.pass_host
        if mode == "rewrite":
            return self.spec.upstream_host
        if mode == "node":
            default = 443 if self.scheme == "https" else 80
            return node.host if node.port == default else node.address
        return client_host

    async def send(self, outgoing: Outgoing) -> tuple[UpstreamResponse, int, float]:
        """The upstream's response (body unread), the index of the node that answered and when
        it was asked; call ``finished(index, started)`` once the response is done."""
        if not self.nodes:
            raise BadGateway("no valid upstream node")
        tried: set[int] = set()
        deadline = time.monotonic() + self.spec.retry_timeout if self.spec.retry_timeout else None
        body = outgoing.body
        replayable = body is None or isinstance(body, bytes)
        while True:
            index = self.balancer.pick(outgoing.hash_key, frozenset(tried))
            node = self.nodes[index]
            headers = outgoing.headers
            host = self._host_header(node, outgoing.client_host)
            if host and headers.get("Host") != host:
                headers = CIMultiDict(headers)
                headers["Host"] = host
            self.balancer.started(index)
            started = time.monotonic()
            try:
                response = await self._node_pool(index).request(
                    outgoing.method,
                    outgoing.path_and_query,
                    headers,
                    body,
                    self.connect_timeout,
                    self.read_timeout,
                )
            except TimeoutError as exc:
                self.balancer.done(index, time.monotonic() - started)
                error: HttpError = GatewayTimeout()
                log.warning("upstream %s (%s) timed out: %s", node.address, self.label, exc)
            except UpstreamError as exc:
                self.balancer.done(index, time.monotonic() - started)
                error = BadGateway()
                log.warning("upstream %s (%s) failed: %s", node.address, self.label, exc)
            else:
                return response, index, started
            tried.add(index)
            out_of_time = deadline is not None and time.monotonic() >= deadline
            # A streamed body that has started flowing cannot be sent again.
            consumed = not replayable and getattr(body, "total_bytes", 1) > 0
            if len(tried) > self.retries or out_of_time or consumed:
                raise error

    def finished(self, index: int, started: float) -> None:
        self.balancer.done(index, time.monotonic() - started)

    async def close(self) -> None:
        for pool in self._node_pools:
            if pool is not None:
                pool.close()
        self._node_pools = [None] * len(self.nodes)


class PoolRegistry:
    """Pools by config fingerprint, reused by successive snapshots while their config holds."""

    def __init__(self) -> None:
        self._pools: dict[str, UpstreamPool] = {}
        self.touched: set[str] = set()  # keys asked for since the last ``begin``

    def begin(self) -> None:
        self.touched = set()

    def get(self, spec: UpstreamSpec, key: str, label: str) -> UpstreamPool:
        self.touched.add(key)
        pool = self._pools.get(key)
        if pool is None:
            pool = self._pools[key] = UpstreamPool(spec, label)
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
