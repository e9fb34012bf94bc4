"""Choosing an upstream node: weighted round-robin, consistent hash, least connections, EWMA.

Balancers are small state machines over a fixed node list; ``pick(key, exclude)`` returns the
index of the next node (never one in ``exclude`` while another is left), ``done(i, seconds)``
reports a finished request.
"""

from __future__ import annotations

import bisect
import hashlib
import random
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
        host = f"[{self.host}]" if ":" in self.host and not self.host.startswith("[") else self.host
        return f"{host}:{self.port}"


class Balancer:
    def __init__(self, nodes: Sequence[Node]) -> None:
        self.nodes = tuple(nodes)
        self.active = [0] * len(nodes)

    def _candidates(self, exclude: frozenset[int]) -> list[int]:
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
    """A hash ring with 160 points per unit of weight (bounded), as nginx's chash."""

    def __init__(self, nodes: Sequence[Node]) -> None:
        super().__init__(nodes)
        ring: list[tuple[int, int]] = []
        for i, node in enumerate(nodes):
            for replica in range(min(max(node.weight, 1), 100) * 16):
                point = f"{node.address}#{replica}".encode()
                ring.append((int.from_bytes(hashlib.md5(point).digest()[:8], "big"), i))
        ring.sort()
        self.points = [p for p, _ in ring]
        self.owners = [i for _, i in ring]

    def pick(self, key: str | None, exclude: frozenset[int] = frozenset()) -> int:
        if not self.points:
            return 0
        value = int.from_bytes(hashlib.md5((key or "").encode()).digest()[:8], "big")
        start = bisect.bisect(self.points, value)
        for step in range(len(self.points)):
            owner = self.owners[(start + step) % len(self.points)]
            if owner not in exclude:
                return owner
        return self.owners[start % len(self.points)]


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
