"""Counters that outlive config snapshots: fixed windows for limit-count and token budgets.

``LocalCounters`` keeps them in this process.  The shared (multi-worker) and Redis
implementations follow the same ``Counters`` contract.
"""

from __future__ import annotations

import time
from typing import Protocol


class Counters(Protocol):
    async def incr(self, key: str, window: float, amount: int = 1) -> tuple[int, float]:
        """Add ``amount`` to the fixed-window counter ``key`` (the window starts with the first
        increment and lasts ``window`` seconds); returns the new count and the seconds left."""
        ...

    async def peek(self, key: str, window: float) -> tuple[int, float]:
        """The current count and seconds left, without changing anything."""
        ...

    async def close(self) -> None: ...


class LocalCounters:
    """Fixed-window counters in this process's memory."""

    def __init__(self) -> None:
        self._windows: dict[str, tuple[float, int]] = {}  # key -> (window end, count)
        self._sweep_at = 0.0

    def incr_now(self, key: str, window: float, amount: int = 1) -> tuple[int, float]:
        now = time.monotonic()
        if now >= self._sweep_at:
            self._sweep(now)
        end, count = self._windows.get(key, (0.0, 0))
        if now >= end:
            end, count = now + window, 0
        count += amount
        self._windows[key] = (end, count)
        return count, end - now

    def peek_now(self, key: str, window: float) -> tuple[int, float]:
        now = time.monotonic()
        end, count = self._windows.get(key, (0.0, 0))
        if now >= end:
            return 0, window
        return count, end - now

    async def incr(self, key: str, window: float, amount: int = 1) -> tuple[int, float]:
        return self.incr_now(key, window, amount)

    async def peek(self, key: str, window: float) -> tuple[int, float]:
        return self.peek_now(key, window)

    def _sweep(self, now: float) -> None:
        expired = [key for key, (end, _) in self._windows.items() if end <= now]
        for key in expired:
            del self._windows[key]
        self._sweep_at = now + 10.0

    async def close(self) -> None:
        self._windows.clear()
