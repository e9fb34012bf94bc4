"""Choosing an ai-proxy-multi instance: priorities, weights, and a cool-down after failures.

``InstancePicker.pick(key, exclude)`` returns the index of the instance to try next:

1. instances the health checks hold unhealthy are out, unless every instance is unhealthy
   (APISIX: then all are used);
2. instances in ``exclude`` (already tried, or unusable) are out;
3. instances cooling down after a failure are out too, unless that leaves none;
4. among the rest, instances with a weight above 0 are preferred (weight 0: a standby);
5. of those, only the highest ``priority`` counts;
6. weighted round-robin picks among them (or the consistent hash of ``key`` with ``chash``).

``Cooldowns`` outlives config snapshots (it is kept in ``Services.shared``) so an instance that
just failed is skipped by the next requests too, for ``COOLDOWN_SECONDS``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from llmgate.proxy.balancer import Balancer, ConsistentHash, Node, RoundRobin

COOLDOWN_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class Weighted:
    name: str
    weight: int
    priority: int


class Cooldowns:
    """Instance name -> when its cool-down ends (``time.monotonic``)."""

    def __init__(self) -> None:
        self._until: dict[str, float] = {}

    def failed(self, name: str, seconds: float = COOLDOWN_SECONDS) -> None:
        self._until[name] = time.monotonic() + seconds

    def succeeded(self, name: str) -> None:
        self._until.pop(name, None)

    def cooling(self, name: str) -> bool:
        until = self._until.get(name)
        if until is None:
            return False
        if until <= time.monotonic():
            del self._until[name]
            return False
        return True


class InstancePicker:
    def __init__(
        self,
        instances: Sequence[Weighted],
        algorithm: str,
        cooldowns: Cooldowns,
        healthy: Callable[[int], bool] = lambda _: True,
    ) -> None:
        self.instances = tuple(instances)
        self.cooldowns = cooldowns
        self.healthy = healthy
        # The instance name is the node's identity (a hash ring needs a stable one).
        nodes = [Node(i.name, 0, i.weight, i.priority) for i in self.instances]
        self.balancer: Balancer = (
            ConsistentHash(nodes) if algorithm == "chash" else RoundRobin(nodes)
        )
        self._all = frozenset(range(len(self.instances)))

    def pick(self, key: str | None, exclude: frozenset[int] | set[int]) -> int | None:
        """The next instance to try, or None when every one is excluded."""
        every = range(len(self.instances))
        up = [i for i in every if self.healthy(i)] or every
        left = [i for i in up if i not in exclude]
        if not left:
            return None
        healthy = [i for i in left if not self.cooldowns.cooling(self.instances[i].name)]
        pool = healthy or left
        weighted = [i for i in pool if self.instances[i].weight > 0]
        pool = weighted or pool
        top = max(self.instances[i].priority for i in pool)
        candidates = frozenset(i for i in pool if self.instances[i].priority == top)
        if len(candidates) == 1:
            return next(iter(candidates))
        return self.balancer.pick(key, self._all - candidates)
