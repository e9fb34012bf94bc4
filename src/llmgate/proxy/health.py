"""Node health of one upstream, as APISIX keeps it (lua-resty-healthcheck's state machine).

One ``HealthChecker`` per upstream pool, so one per upstream per process: it lives as long as
the pool, which ``PoolRegistry`` keeps across reloads while the upstream's config holds.  Its
one task probes the nodes (``proxy/probe.py``) every ``active.healthy.interval`` seconds while
they are healthy and every ``active.unhealthy.interval`` seconds while they are not; real
traffic reports what it met when ``passive`` is configured.

Each node has four counters and a state::

    healthy ──failure──> mostly_healthy ──failures reach a threshold──> unhealthy
       ^                                                                    │
       └──successes reach healthy.successes── mostly_unhealthy <──success───┘

A success resets the failure counters; any failure resets the success counter; each kind of
failure (HTTP status, TCP failure, timeout) counts against its own threshold.  A threshold of 0
turns that kind of report off.  ``healthy`` and ``mostly_healthy`` nodes get traffic.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from llmgate.proxy.probe import Outcome, Prober
from llmgate.schemas.checks import Checks
from llmgate.tasks import cancel_and_wait

log = logging.getLogger("llmgate.health")

State = Literal["healthy", "mostly_healthy", "mostly_unhealthy", "unhealthy"]
# (checker name, node host, node port, healthy; None when the checker is gone)
StatusListener = Callable[[str, str, int, bool | None], None]


@dataclass(slots=True)
class Target:
    """One node as the checker sees it."""

    host: str  # where probes connect (the node's host)
    port: int  # the probed port: ``active.port`` or the node's
    host_header: str
    state: State = "healthy"
    successes: int = 0
    http_failures: int = 0
    tcp_failures: int = 0
    timeouts: int = 0

    @property
    def healthy(self) -> bool:
        return self.state in ("healthy", "mostly_healthy")


@dataclass(frozen=True, slots=True)
class Thresholds:
    """One side's (active or passive) counting rules."""

    successes: int
    http_failures: int
    tcp_failures: int
    timeouts: int
    healthy_statuses: frozenset[int]
    unhealthy_statuses: frozenset[int]


def thresholds(checks: Checks) -> tuple[Thresholds, Thresholds | None]:
    active = checks.active
    probes = Thresholds(
        active.healthy.successes,
        active.unhealthy.http_failures,
        active.unhealthy.tcp_failures,
        active.unhealthy.timeouts,
        frozenset(active.healthy.http_statuses),
        frozenset(active.unhealthy.http_statuses),
    )
    passive = checks.passive
    if passive is None:
        return probes, None
    traffic = Thresholds(
        passive.healthy.successes,
        passive.unhealthy.http_failures,
        passive.unhealthy.tcp_failures,
        passive.unhealthy.timeouts,
        frozenset(passive.healthy.http_statuses),
        frozenset(passive.unhealthy.http_statuses),
    )
    return probes, traffic


@dataclass
class HealthChecker:
    """Health of an upstream's nodes (by index), probed by one task and told by traffic."""

    name: str  # the upstream's key as APISIX names it: /apisix/upstreams/1, /apisix/routes/1
    targets: Sequence[Target]
    checks: Checks
    prober: Prober
    listener: StatusListener | None = None
    # Indexes of the nodes that get no traffic (unhealthy, mostly_unhealthy).
    down: frozenset[int] = frozenset()
    _task: asyncio.Task[None] | None = field(default=None, repr=False)
    _probing: set[asyncio.Task[None]] = field(default_factory=set, repr=False)

    def __post_init__(self) -> None:
        self.active, self.passive = thresholds(self.checks)
        self._limit = asyncio.Semaphore(self.checks.active.concurrency)

    # --- reports ------------------------------------------------------------------------------

    def report_status(self, index: int, status: int, active: bool = False) -> None:
        """An HTTP status from a probe or from traffic (0: an unreadable status line)."""
        rules = self.active if active else self.passive
        if rules is None:
            return
        if status in rules.healthy_statuses:
            self._count(index, True, rules.successes, "successes")
        elif status in rules.unhealthy_statuses or status == 0:
            self._count(index, False, rules.http_failures, "http_failures")

    def report_success(self, index: int, active: bool = False) -> None:
        rules = self.active if active else self.passive
        if rules is not None:
            self._count(index, True, rules.successes, "successes")

    def report_tcp_failure(self, index: int, active: bool = False) -> None:
        rules = self.active if active else self.passive
        if rules is not None:
            self._count(index, False, rules.tcp_failures, "tcp_failures")

    def report_timeout(self, index: int, active: bool = False) -> None:
        rules = self.active if active else self.passive
        if rules is not None:
            self._count(index, False, rules.timeouts, "timeouts")

    def _count(self, index: int, success: bool, limit: int, counter: str) -> None:
        if limit == 0:
            return
        target = self.targets[index]
        if target.state == ("healthy" if success else "unhealthy"):
            return  # nothing to count: already all the way there
        if success:
            target.successes += 1
            target.http_failures = target.tcp_failures = target.timeouts = 0
            count = target.successes
        else:
            target.successes = 0
            count = getattr(target, counter) + 1
            setattr(target, counter, count)
        new: State | None = None
        if count >= limit:
            new = "healthy" if success else "unhealthy"
        elif target.state == "healthy" and not success:
            new = "mostly_healthy"
        elif target.state == "unhealthy" and success:
            new = "mostly_unhealthy"
        if new is not None and new != target.state:
            self._set(index, new, f"{counter} {count}/{limit}")

    def _set(self, index: int, state: State, why: str) -> None:
        target = self.targets[index]
        was = target.healthy
        target.state = state
        if target.healthy == was:
            return
        log.warning(
            "upstream %s node %s:%s is now %s (%s)",
            self.name, target.host, target.port, "healthy" if target.healthy else "unhealthy", why,
        )  # fmt: skip
        self.down = frozenset(i for i, t in enumerate(self.targets) if not t.healthy)
        self._tell(target, target.healthy)

    def _tell(self, target: Target, healthy: bool | None) -> None:
        if self.listener is not None:
            try:
                self.listener(self.name, target.host, target.port, healthy)
            except Exception:
                log.exception("health status listener failed")

    # --- the probing task ---------------------------------------------------------------------

    def start(self) -> None:
        """Start probing (in the running event loop); tell the listener every node is up."""
        for target in self.targets:
            self._tell(target, target.healthy)
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return  # compiled outside a server (a check of the config): nothing to probe
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"llmgate-health {self.name}")

    async def stop(self) -> None:
        tasks = [t for t in (self._task, *self._probing) if t is not None]
        self._task = None
        await cancel_and_wait(*tasks)
        for target in self.targets:
            self._tell(target, None)

    async def _run(self) -> None:
        """Probe healthy nodes every healthy.interval, the others every unhealthy.interval
        (the first probes one interval after the start, as lua-resty-healthcheck)."""
        active = self.checks.active
        now = time.monotonic()
        due = {True: now + active.healthy.interval, False: now + active.unhealthy.interval}
        intervals = {True: active.healthy.interval, False: active.unhealthy.interval}
        busy: set[int] = set()
        while True:
            await asyncio.sleep(max(min(due.values()) - time.monotonic(), 0))
            now = time.monotonic()
            for healthy in (True, False):
                if due[healthy] > now:
                    continue
                due[healthy] = now + intervals[healthy]
                for index, target in enumerate(self.targets):
                    if target.healthy == healthy and index not in busy:
                        busy.add(index)
                        task = asyncio.create_task(self._probe(index, busy))
                        self._probing.add(task)
                        task.add_done_callback(self._probing.discard)

    async def _probe(self, index: int, busy: set[int]) -> None:
        target = self.targets[index]
        try:
            async with self._limit:
                outcome = await self.prober.probe(target.host, target.port, target.host_header)
            self._apply(index, outcome)
        except Exception:
            log.exception("probing %s:%s failed", target.host, target.port)
        finally:
            busy.discard(index)

    def _apply(self, index: int, outcome: Outcome) -> None:
        kind, status = outcome
        if kind == "status":
            self.report_status(index, status, active=True)
        elif kind == "up":
            self.report_success(index, active=True)
        elif kind == "timeout":
            self.report_timeout(index, active=True)
        else:
            self.report_tcp_failure(index, active=True)
