"""A timeout that moves often and fires rarely: one loop timer, re-armed lazily.

Moving the deadline only records it; the timer is set again only when it would fire after the
new deadline, and when it fires early it sets itself for the deadline it finds.  Creating and
cancelling a timer costs ~3 us on uvloop: a connection that moves its deadline for every
request or read then costs no timer at all.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class Deadline:
    __slots__ = ("_at", "_expired", "_loop", "_timer")

    def __init__(self, loop: asyncio.AbstractEventLoop, expired: Callable[[], None]) -> None:
        self._loop = loop
        self._expired = expired  # called once the deadline has passed
        self._at: float | None = None
        self._timer: asyncio.TimerHandle | None = None

    def expire_in(self, delay: float) -> None:
        """The deadline is ``delay`` seconds from now."""
        loop = self._loop
        at = loop.time() + delay
        self._at = at
        timer = self._timer
        if timer is None or timer.when() > at:
            if timer is not None:
                timer.cancel()
            self._timer = loop.call_at(at, self._fire)

    def clear(self) -> None:
        """No deadline: the timer, if it fires, finds nothing to do."""
        self._at = None

    def stop(self) -> None:
        """No deadline, and the timer goes (it holds its owner until it fires)."""
        self._at = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _fire(self) -> None:
        self._timer = None
        at = self._at
        if at is None:
            return
        if self._loop.time() < at:  # moved since the timer was set: wait for it
            self._timer = self._loop.call_at(at, self._fire)
            return
        self._at = None
        self._expired()
