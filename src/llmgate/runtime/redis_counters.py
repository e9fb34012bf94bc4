"""``Counters`` in Redis: limits exact across every process and node sharing one Redis.

Each operation is one Lua script (``redis_scripts.py``), so it is atomic in Redis whatever the
number of clients; this module is the client that runs them (EVALSHA, loading a script again
when Redis answers NOSCRIPT).

Keys start with ``llmgate:``.  ``redis-cluster`` uses redis-py's cluster client; when the first
node answers that cluster mode is disabled (a single Redis given as a one-node "cluster"), the
plain client is used against that node instead.  ``redis-sentinel`` asks the sentinels for the
master of ``master_name`` on every new connection, so a failover is followed.

``target_from_url`` reads ``LLMGATE_REDIS_URL`` (``redis://``, ``rediss://``, ``unix://``):
the default Redis of every ``policy: redis`` without a ``redis_host``.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from redis.asyncio import BlockingConnectionPool, Redis, RedisCluster
from redis.asyncio.cluster import ClusterNode
from redis.asyncio.connection import SSLConnection, UnixDomainSocketConnection
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError, RedisClusterException, RedisError

from llmgate.runtime.conn_leases import LEASE, Leases, holder_id
from llmgate.runtime.counters import CountersUnavailable
from llmgate.runtime.redis_scripts import (
    ACQUIRE,
    INCR,
    LEAKY,
    PEEK,
    RELEASE,
    RENEW,
    RESERVE,
    SLIDING,
)

log = logging.getLogger("llmgate.counters")

PREFIX = "llmgate:"


@dataclass(frozen=True, slots=True)
class RedisTarget:
    """Where and how to connect: one server (TCP or a Unix socket), the seed nodes of a
    cluster, or the sentinels that know a master."""

    host: str = "127.0.0.1"
    port: int = 6379
    database: int = 0
    username: str | None = None
    password: str | None = None
    timeout: float = 1.0  # seconds, for connecting and for each answer
    ssl: bool = False
    ssl_verify: bool = False
    pool_size: int = 100
    cluster_nodes: tuple[str, ...] = ()  # "host:port" seeds; empty: a single server
    path: str | None = None  # a Unix socket instead of host and port
    sentinels: tuple[tuple[str, int], ...] = ()  # (host, port) of each sentinel
    master_name: str = ""  # the master the sentinels are asked for
    sentinel_username: str | None = None
    sentinel_password: str | None = None
    connect_timeout: float | None = None  # seconds; None: ``timeout``

    def label(self) -> str:
        """For log lines: never the password."""
        if self.sentinels:
            where = ",".join(f"{host}:{port}" for host, port in self.sentinels)
            return f"redis-sentinel {where} master {self.master_name}/{self.database}"
        where = ",".join(self.cluster_nodes) or (
            f"{self.path or f'{self.host}:{self.port}'}/{self.database}"
        )
        return f"redis {where}"


def target_from_url(url: str) -> RedisTarget:
    """The target of a ``redis://[user:password@]host[:port][/db]`` URL (``rediss://``: TLS,
    verified; ``unix:///path?db=N``: a socket).  ``ValueError`` when it is not one."""
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    if parts.scheme == "unix":
        if not parts.path:
            raise ValueError(f"{parts.scheme}:// URL without a socket path")
        db = query.get("db", ["0"])[0]
        return RedisTarget(path=parts.path, database=int(db), username=username, password=password)
    if parts.scheme not in ("redis", "rediss"):
        raise ValueError(f"unknown scheme {parts.scheme!r}: expected redis, rediss or unix")
    db = parts.path.lstrip("/") or query.get("db", ["0"])[0]
    tls = parts.scheme == "rediss"
    return RedisTarget(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 6379,
        database=int(db),
        username=username,
        password=password,
        ssl=tls,
        ssl_verify=tls,
    )


def _split_node(node: str) -> tuple[str, int]:
    host, _, port = node.rpartition(":")
    return (host.strip("[]"), int(port)) if port.isascii() and port.isdigit() else (node, 6379)


class RedisCounters:
    """The ``Counters`` contract over one Redis (or cluster); connects on first use."""

    def __init__(self, target: RedisTarget, holder: str | None = None) -> None:
        self.target = target
        self.holder = holder or holder_id()
        self._leases = Leases(self._renew)
        self._client: Redis | RedisCluster | None = None
        self._sentinel: Sentinel | None = None
        self._lock = asyncio.Lock()
        self._sha: dict[str, str] = {}

    async def incr(self, key: str, window: float, amount: int = 1) -> tuple[int, float]:
        window_ms = max(1, round(window * 1000))
        count, ttl = await self._run(INCR, "count:" + key, window_ms, amount)
        return int(count), int(ttl) / 1000

    async def reserve(
        self, key: str, window: float, amount: int, limit: int
    ) -> tuple[bool, int, float]:
        window_ms = max(1, round(window * 1000))
        admitted, count, ttl = await self._run(RESERVE, "count:" + key, window_ms, amount, limit)
        return bool(admitted), int(count), int(ttl) / 1000

    async def peek(self, key: str, window: float) -> tuple[int, float]:
        count, ttl = await self._run(PEEK, "count:" + key)
        return (int(count), int(ttl) / 1000) if int(ttl) >= 0 else (0, window)

    async def sliding(self, key: str, limit: int, window: float) -> tuple[bool, int, float]:
        accepted, remaining, reset = await self._run(
            SLIDING, "slide:{" + key + "}", limit, repr(float(window))
        )
        return bool(accepted), int(remaining), float(reset)

    async def leaky(self, key: str, rate: float, burst: float) -> float | None:
        delay = await self._run(LEAKY, "req:" + key, repr(rate), repr(burst))
        return None if delay is None else float(delay)

    async def acquire(self, key: str, limit: int, ttl: int) -> int:
        """One slot on ``key`` for this process, under a lease of ``min(ttl, LEASE)`` seconds
        renewed while the slot is held; the keys outlive their last update by ``ttl``."""
        lease = min(LEASE, max(ttl, 1))
        name = "conn:{" + key + "}"
        life = round(max(ttl, lease) * 1000)
        lease_ms = round(lease * 1000)
        count = int(await self._run(ACQUIRE, name, limit, self.holder, lease_ms, life))
        if count <= limit:
            self._leases.hold(name, lease, life)
        return count

    async def release(self, key: str) -> int:
        name = "conn:{" + key + "}"
        self._leases.drop(name)
        return int(await self._run(RELEASE, name, self.holder))

    async def _renew(self, name: str, lease: float, life: int) -> bool:
        return bool(await self._run(RENEW, name, self.holder, round(lease * 1000), life))

    async def _run(self, script: str, key: str, *args: Any) -> Any:
        try:
            client = self._client or await self._connect()
            sha = self._sha.get(script)
            if sha is not None:
                try:
                    return await client.evalsha(sha, 1, PREFIX + key, *args)
                except NoScriptError:
                    pass  # Redis restarted or flushed its scripts
            self._sha[script] = await client.script_load(script)
            return await client.evalsha(self._sha[script], 1, PREFIX + key, *args)
        except (RedisError, OSError, TimeoutError) as exc:
            raise CountersUnavailable(f"{self.target.label()}: {exc}") from exc

    async def _connect(self) -> Redis | RedisCluster:
        async with self._lock:
            if self._client is None:
                self._client = await self._open()
            return self._client

    async def _open(self) -> Redis | RedisCluster:
        target = self.target
        connect_timeout = target.connect_timeout or target.timeout
        options: dict[str, Any] = {
            "username": target.username,
            "password": target.password or None,
            "socket_timeout": target.timeout,
            "socket_connect_timeout": connect_timeout,
            "retry": Retry(NoBackoff(), 0),  # a limiter answers now or fails; no retry storms
        }
        tls: dict[str, Any] = {
            "ssl_cert_reqs": "required" if target.ssl_verify else "none",
            "ssl_check_hostname": target.ssl_verify,
        }
        if target.sentinels:
            return self._from_sentinels(options)
        if not target.cluster_nodes:
            return self._single(target.host, target.port, target.database, options, tls)
        nodes = [ClusterNode(*_split_node(node)) for node in target.cluster_nodes]
        cluster = RedisCluster(
            startup_nodes=nodes,
            max_connections=target.pool_size,
            ssl=target.ssl,
            **options,
            **(tls if target.ssl else {}),
        )
        try:
            await cluster.initialize()
            return cluster
        except RedisClusterException as exc:
            if "cluster mode is not enabled" not in " ".join(map(str, exc.args)).lower():
                raise
        await cluster.aclose()
        log.warning("%s is not a cluster; using it as a single Redis", target.label())
        host, port = _split_node(target.cluster_nodes[0])
        return self._single(host, port, 0, options, tls)

    def _single(
        self, host: str, port: int, database: int, options: dict[str, Any], tls: dict[str, Any]
    ) -> Redis:
        """A client whose pool holds up to ``pool_size`` connections; past that, a call waits
        for one (up to the timeout) rather than failing."""
        if self.target.path is not None:
            options = {**options, "connection_class": UnixDomainSocketConnection}
            where: dict[str, Any] = {"path": self.target.path}
        else:
            where = {"host": host, "port": port}
            if self.target.ssl:
                options = {**options, **tls, "connection_class": SSLConnection}
        pool = BlockingConnectionPool(
            max_connections=self.target.pool_size,
            timeout=self.target.timeout,
            db=database,
            **where,
            **options,
        )
        return Redis.from_pool(pool)

    def _from_sentinels(self, options: dict[str, Any]) -> Redis:
        """The master's client: each new connection asks the sentinels where the master is."""
        target = self.target
        self._sentinel = Sentinel(
            list(target.sentinels),
            sentinel_kwargs={
                "username": target.sentinel_username,
                "password": target.sentinel_password or None,
                "socket_timeout": options["socket_timeout"],
                "socket_connect_timeout": options["socket_connect_timeout"],
                "retry": Retry(NoBackoff(), 0),
            },
        )
        client: Redis = self._sentinel.master_for(
            target.master_name, db=target.database, max_connections=target.pool_size, **options
        )
        return client

    async def close(self) -> None:
        await self._leases.close()
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        if self._sentinel is not None:
            for sentinel in self._sentinel.sentinels:
                await sentinel.aclose()
            self._sentinel = None


class RedisRegistry:
    """One ``RedisCounters`` per target, shared by every snapshot's plugins (so the pools and
    their connections survive config reloads)."""

    def __init__(self) -> None:
        self._counters: dict[RedisTarget, RedisCounters] = {}
        self.holder = holder_id()

    def get(self, target: RedisTarget) -> RedisCounters:
        counters = self._counters.get(target)
        if counters is None:
            counters = self._counters[target] = RedisCounters(target, self.holder)
        return counters

    async def close(self) -> None:
        for counters in self._counters.values():
            await counters.close()
        self._counters.clear()
