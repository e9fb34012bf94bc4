"""Choosing an upstream node: weighted round-robin, consistent hash, least connections, EWMA.

Balancers are small state machines over a fixed node list; ``pick(key, exclude)`` returns the
index of the next node (never one in ``exclude`` while another is left), ``done(i, seconds)``
reports a finished request.
"""

from __future__ import annotations

import bisect
import functools
import random
import zlib
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Node:
    host: str
    port: int
    weight: int
    priority: int = 0

    @property
    def address(self) -> str:
        return _address(self.host, self.port)


@functools.lru_cache(maxsize=4096)
def _address(host: str, port: int) -> str:
    """``host:port``, an IPv6 host in brackets (cached: asked on every request)."""
    host = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return f"{host}:{port}"


class Balancer:
    def __init__(self, nodes: Sequence[Node]) -> None:
        self.nodes = tuple(nodes)
        self.active = [0] * len(nodes)
        self._preferred = self._choose(frozenset())  # the candidates when none is excluded

    def _candidates(self, exclude: frozenset[int]) -> list[int]:
        return self._choose(exclude) if exclude else self._preferred

    def _choose(self, exclude: frozenset[int]) -> list[int]:
        if not self.nodes:
            return []
        usable = [i for i, n in enumerate(self.nodes) if n.weight > 0 and i not in exclude]
        if not usable:
            usable = [i for i in range(len(self.nodes)) if i not in exclude] or list(
                range(len(self.nodes))
            )
        top = max(self.nodes[i].priority for i in usable)
        return [i for i in usable if self.nodes[i].priority == top]

    def pick(self, key: str | None, exclude: frozenset[int] = frozenset()) -> int:
        raise NotImplementedError

    def started(self, index: int) -> None:
        self.active[index] += 1

    def done(self, index: int, seconds: float) -> None:
        self.active[index] -= 1


class RoundRobin(Balancer):
    """nginx's smooth weighted round-robin."""

    def __init__(self, nodes: Sequence[Node]) -> None:
        super().__init__(nodes)
        self.current = [0] * len(nodes)

    def pick(self, key: str | None, exclude: frozenset[int] = frozenset()) -> int:
        candidates = self._candidates(exclude)
        if len(candidates) == 1:
            return candidates[0]
        total = 0
        best = candidates[0]
        for i in candidates:
            weight = max(self.nodes[i].weight, 1)
            self.current[i] += weight
            total += weight
            if self.current[i] > self.current[best]:
                best = i
        self.current[best] -= total
        return best


class ConsistentHash(Balancer):
    """nginx's ``hash $key consistent`` (ketama), which APISIX's ``chash`` follows: 160 ring
    points per unit of weight, point ``j`` of a node being ``crc32(host "\\0" port prev)`` where
    ``prev`` is its point ``j - 1`` (4 bytes, little-endian; 0 for the first), so a ring built
    from the same ``host:port`` list and weights is nginx's ring.  A key goes to the first point
    at or after ``crc32(key)``, wrapping around; an excluded node passes the key on along the ring.

    Nodes of weight 0 get no points (unless every node has weight 0: then 1 each).  Only nodes of
    the highest priority are on the ring; lower priorities have their own rings, used when every
    node above is excluded.  The ring is bounded: past ``MAX_POINTS`` in total, weights are
    scaled down (each node keeping at least one unit's worth), so a weight of 10**9 cannot
    build a ring of 10**11 points.
    """

    POINTS = 160  # per unit of weight, nginx's and lua-resty-chash's constant
    MAX_POINTS = POINTS * 1000

    def __init__(self, nodes: Sequence[Node]) -> None:
        super().__init__(nodes)
        weighted = any(node.weight > 0 for node in nodes)
        weights = [max(node.weight, 0) if weighted else 1 for node in nodes]
        total = sum(weights) * self.POINTS
        scale = min(1.0, self.MAX_POINTS / total) if total else 1.0
        self.rings: list[tuple[list[int], list[int]]] = []  # by priority, highest first
        for priority in sorted({node.priority for node in nodes}, reverse=True):
            ring: dict[int, int] = {}
            for i, node in enumerate(nodes):
                if node.priority != priority or weights[i] == 0:
                    continue
                count = max(round(weights[i] * self.POINTS * scale), 1)
                for point in _ring_points(node.address, count):
                    ring.setdefault(point, i)  # nginx keeps the first of equal points
            if ring:
                points = sorted(ring)
                self.rings.append((points, [ring[p] for p in points]))
        self.points = [p for points, _ in self.rings for p in points]

    def pick(self, key: str | None, exclude: frozenset[int] = frozenset()) -> int:
        if not self.rings:
            return 0
        value = zlib.crc32((key or "").encode())
        for points, owners in self.rings:
            start = bisect.bisect_left(points, value)
            for step in range(len(points)):
                owner = owners[(start + step) % len(points)]
                if owner not in exclude:
                    return owner
        points, owners = self.rings[0]
        return owners[bisect.bisect_left(points, value) % len(points)]


def _ring_points(address: str, count: int) -> list[int]:
    """A node's ``count`` ring points as nginx computes them (``ngx_http_upstream_update_chash``):
    the address split at its last colon into host and port."""
    host, _, port = address.rpartition(":")
    base = host.encode() + b"\0" + port.encode()
    points = []
    previous = 0
    for _ in range(count):
        previous = zlib.crc32(base + previous.to_bytes(4, "little"))
        points.append(previous)
    return points


class LeastConn(Balancer):
    def pick(self, key: str | None, exclude: frozenset[int] = frozenset()) -> int:
        candidates = self._candidates(exclude)
        return min(
            candidates, key=lambda i: ((self.active[i] + 1) / max(self.nodes[i].weight, 1), i)
        )


class Ewma(Balancer):
    """Peak-EWMA of latency times load; picks the better of two random candidates."""

    DECAY = 10.0

    def __init__(self, nodes: Sequence[Node]) -> None:
        super().__init__(nodes)
        self.ewma = [0.0] * len(nodes)

    def _score(self, i: int) -> float:
        return self.ewma[i] * (self.active[i] + 1)

    def pick(self, key: str | None, exclude: frozenset[int] = frozenset()) -> int:
        candidates = self._candidates(exclude)
        if len(candidates) == 1:
            return candidates[0]
        a, b = random.sample(candidates, 2)
        return a if self._score(a) <= self._score(b) else b

    def done(self, index: int, seconds: float) -> None:
        super().done(index, seconds)
        previous = self.ewma[index]
        self.ewma[index] = (
            seconds if seconds > previous else previous + (seconds - previous) / self.DECAY
        )


BALANCERS: dict[str, type[Balancer]] = {
    "roundrobin": RoundRobin,
    "chash": ConsistentHash,
    "least_conn": LeastConn,
    "ewma": Ewma,
}
