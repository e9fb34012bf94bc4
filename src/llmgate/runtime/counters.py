"""Counters that outlive config snapshots: what limit-count, limit-req, limit-conn and token
budgets count.

Three implementations follow one ``Counters`` contract:

- ``LocalCounters``: this process's memory (one worker, the default);
- ``SharedCounters`` (``counter_server.py``): one node's workers, through the counter service
  their parent process runs over a Unix socket, so the node's limits are exact;
- ``RedisCounters`` (``redis_counters.py``): every node sharing one Redis.

Each operation is atomic where the state lives, so no interleaving of requests (tasks, worker
processes or nodes) lets more through than a limit allows.  A backend that cannot be reached
raises ``CountersUnavailable``; the caller decides between failing open and failing closed.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from typing import Protocol


class CountersUnavailable(Exception):
    """The counters' store (counter service, Redis) could not answer."""


class Counters(Protocol):
    async def incr(self, key: str, window: float, amount: int = 1) -> tuple[int, float]:
        """Add ``amount`` to the fixed-window counter ``key`` (the window starts with the first
        increment and lasts ``window`` seconds); returns the new count and the seconds left.
        A negative ``amount`` (a reservation settled for less) never opens a window and never
        takes the count below 0."""
        ...

    async def reserve(
        self, key: str, window: float, amount: int, limit: int
    ) -> tuple[bool, int, float]:
        """Add ``amount`` to the fixed-window counter ``key`` if its count is below ``limit``,
        in one step: (whether it was added, the count after, the seconds left).  A refused
        reservation changes nothing."""
        ...

    async def peek(self, key: str, window: float) -> tuple[int, float]:
        """The current count and seconds left, without changing anything."""
        ...

    async def sliding(self, key: str, limit: int, window: float) -> tuple[bool, int, float]:
        """One request into the sliding window ``key`` of ``limit`` per ``window`` seconds
        (APISIX's estimate: this clock-aligned window's count plus the previous one's, weighted
        by the share of it still inside the sliding window).  Returns whether it is accepted
        (only then is it counted), the quota left, and the seconds until the window resets
        (when rejected: until a request could pass)."""
        ...

    async def leaky(self, key: str, rate: float, burst: float) -> float | None:
        """One request into the leaky bucket ``key`` draining ``rate`` requests a second with
        room for ``burst`` more: the seconds it should wait, or None when the bucket is full
        (then nothing is recorded)."""
        ...

    async def acquire(self, key: str, limit: int, ttl: int) -> int:
        """One more concurrent request on ``key``: the count including it.  A count above
        ``limit`` means rejected, and then nothing was recorded.  The slot belongs to this
        process: when it dies without releasing it, the slot is freed (the counter service:
        when the worker's connection ends; Redis: when its lease ends, within
        ``min(ttl, LEASE)`` seconds, ``conn_leases.py``)."""
        ...

    async def release(self, key: str) -> int:
        """One concurrent request on ``key`` is done: the count left."""
        ...

    async def close(self) -> None: ...


def slide(
    current: int, previous: int, limit: int, window: float, now: float
) -> tuple[bool, int, float]:
    """The sliding-window decision for one request, given the counts of the current and the
    previous clock-aligned windows: (accepted, quota left, seconds to wait or to the reset)."""
    left_in_window = window - now % window
    previous_rate = min(previous, limit) / window
    estimate = previous_rate * left_in_window + current
    if current >= limit or estimate >= limit:
        if current >= limit or previous_rate == 0:
            return False, 0, left_in_window
        return False, 0, max(left_in_window - (limit - current) / previous_rate, 0.0)
    return True, math.floor(limit - 1 - estimate), left_in_window


def leak(
    state: tuple[float, float] | None, now: float, rate: float, burst: float
) -> tuple[float, float] | None:
    """The leaky bucket step (nginx's limit_req): ``state`` is (excess, time of the last
    request), ``excess`` counting the requests queued beyond ``rate``.  Returns the new state,
    or None when one more request would overflow ``burst``."""
    if state is None:
        return 0.0, now
    excess, last = state
    excess = max(excess - rate * abs(now - last) + 1.0, 0.0)
    if excess > burst:
        return None
    return excess, now


def _left(end: float, now: float, window: float) -> float:
    """The seconds until ``end``.  A window opened at ``now`` ends at ``now + window``, and that
    float sum can round up: ``end - now`` is then one ulp over ``window``, which rounded up is a
    whole second more (``X-RateLimit-Reset: 61`` for a 60 s window).  Never more than the window
    itself, unless ``end`` was set with a longer one."""
    left = end - now
    return window if window < left < window + 1e-6 else left


class LocalCounters:
    """All counters in this process's memory; the state behind the node's counter service too.

    The ``*_now`` methods are synchronous: the counter service calls them between two awaits,
    which is what makes each operation atomic.
    """

    SWEEP_EVERY = 10.0
    # Windows (and buckets) kept at most; past it the least recently used is forgotten, as
    # APISIX's shared dicts evict: clients choosing keys (a header) cannot grow memory for good.
    MAX_KEYS = 200_000

    def __init__(self) -> None:
        # key -> (window end, count); key -> (excess, last request): least recently used first
        self._windows: OrderedDict[str, tuple[float, int]] = OrderedDict()
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._bucket_rates: dict[str, float] = {}  # key -> rate, to know when a bucket is empty
        self._conns: dict[str, int] = {}  # key -> slots held
        self._holders: dict[str, dict[str, int]] = {}  # holder -> key -> its slots there
        self._sweep_at = 0.0

    def incr_now(self, key: str, window: float, amount: int = 1) -> tuple[int, float]:
        now = time.monotonic()
        if now >= self._sweep_at:
            self._sweep(now)
        end, count = self._windows.get(key, (0.0, 0))
        if now >= end:
            if amount < 0:  # the window it settles has ended: nothing to give back
                return 0, window
            end, count = now + window, 0
        count = max(count + amount, 0)
        self._set_window(key, (end, count))
        return count, _left(end, now, window)

    def reserve_now(
        self, key: str, window: float, amount: int, limit: int
    ) -> tuple[bool, int, float]:
        now = time.monotonic()
        end, count = self._windows.get(key, (0.0, 0))
        if now >= end:
            end, count = now + window, 0
        if count >= limit:
            return False, count, _left(end, now, window)
        self.incr_now(key, window, amount)
        return True, count + amount, _left(end, now, window)

    def peek_now(self, key: str, window: float) -> tuple[int, float]:
        now = time.monotonic()
        end, count = self._windows.get(key, (0.0, 0))
        if now >= end:
            return 0, window
        return count, _left(end, now, window)

    def sliding_now(self, key: str, limit: int, window: float) -> tuple[bool, int, float]:
        now = time.time()  # windows aligned on the clock, as in APISIX and in Redis
        monotonic = time.monotonic()
        if monotonic >= self._sweep_at:
            self._sweep(monotonic)
        number = math.floor(now / window)
        current_key, previous_key = f"{key}\x00{number}", f"{key}\x00{number - 1}"
        current = self._windows.get(current_key, (0.0, 0))[1]
        previous = self._windows.get(previous_key, (0.0, 0))[1]
        accepted, remaining, reset = slide(current, previous, limit, window, now)
        if accepted:  # kept until the next window no longer looks back at it
            self._set_window(current_key, (monotonic + reset + window, current + 1))
        return accepted, remaining, reset

    def leaky_now(self, key: str, rate: float, burst: float) -> float | None:
        now = time.monotonic()
        if now >= self._sweep_at:
            self._sweep(now)
        state = leak(self._buckets.get(key), now, rate, burst)
        if state is None:
            return None
        self._buckets[key] = state
        self._buckets.move_to_end(key)
        self._bucket_rates[key] = rate
        while len(self._buckets) > self.MAX_KEYS:
            forgotten, _ = self._buckets.popitem(last=False)
            del self._bucket_rates[forgotten]
        return state[0] / rate

    def _set_window(self, key: str, value: tuple[float, int]) -> None:
        self._windows[key] = value
        self._windows.move_to_end(key)
        while len(self._windows) > self.MAX_KEYS:
            self._windows.popitem(last=False)

    def acquire_now(self, key: str, limit: int, holder: str = "") -> int:
        """One slot on ``key`` for ``holder`` (the counter service: one worker's connection)."""
        count = self._conns.get(key, 0) + 1
        if count <= limit:
            self._conns[key] = count
            held = self._holders.setdefault(holder, {})
            held[key] = held.get(key, 0) + 1
        return count

    def release_now(self, key: str, holder: str = "") -> int:
        """One slot of ``holder`` on ``key`` is free again; a slot the holder no longer holds
        (``drop_holder`` freed it) changes nothing."""
        held = self._holders.get(holder)
        if held is None or key not in held:
            return self._conns.get(key, 0)
        held[key] -= 1
        if held[key] <= 0:
            del held[key]
            if not held:
                del self._holders[holder]
        return self._free(key, 1)

    def drop_holder(self, holder: str) -> None:
        """Free every slot ``holder`` holds (a worker whose connection ended: it died)."""
        for key, slots in self._holders.pop(holder, {}).items():
            self._free(key, slots)

    def _free(self, key: str, slots: int) -> int:
        count = self._conns.get(key, 0) - slots
        if count > 0:
            self._conns[key] = count
        else:
            self._conns.pop(key, None)
        return max(count, 0)

    async def incr(self, key: str, window: float, amount: int = 1) -> tuple[int, float]:
        return self.incr_now(key, window, amount)

    async def reserve(
        self, key: str, window: float, amount: int, limit: int
    ) -> tuple[bool, int, float]:
        return self.reserve_now(key, window, amount, limit)

    async def peek(self, key: str, window: float) -> tuple[int, float]:
        return self.peek_now(key, window)

    async def sliding(self, key: str, limit: int, window: float) -> tuple[bool, int, float]:
        return self.sliding_now(key, limit, window)

    async def leaky(self, key: str, rate: float, burst: float) -> float | None:
        return self.leaky_now(key, rate, burst)

    async def acquire(self, key: str, limit: int, ttl: int) -> int:
        return self.acquire_now(key, limit)

    async def release(self, key: str) -> int:
        return self.release_now(key)

    def _sweep(self, now: float) -> None:
        """Forget windows that ended and buckets that drained (so memory stays flat)."""
        expired = [key for key, (end, _) in self._windows.items() if end <= now]
        for key in expired:
            del self._windows[key]
        drained = [
            key
            for key, (excess, last) in self._buckets.items()
            # past this, the next request finds the bucket as empty as a new one
            if last + (excess + 1.0) / self._bucket_rates[key] <= now
        ]
        for key in drained:
            del self._buckets[key]
            del self._bucket_rates[key]
        self._sweep_at = now + self.SWEEP_EVERY

    async def close(self) -> None:
        self._windows.clear()
        self._buckets.clear()
        self._bucket_rates.clear()
        self._conns.clear()
        self._holders.clear()
