"""Running a coroutine's first step on the spot, and finishing it later in a task.

Python 3.11 has no eager tasks: ``asyncio.ensure_future(coro)`` schedules even a coroutine
that would return without ever waiting, and costs a task and a turn of the loop.  The log phase
steps each plugin's ``log`` by hand (``coro.send(None)``): most return at once.  One that
suspends yields what it waits on, and ``drive`` finishes it from there inside a task.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any


async def drive(step: Coroutine[Any, Any, None], waiting: Any) -> None:
    """Finish ``step``, a coroutine suspended on ``waiting`` (the future its last
    ``send(None)`` yielded, or None for a bare ``yield``, as ``asyncio.sleep(0)`` does),
    waiting as the task running it would.  Its exceptions propagate; cancelling the caller
    throws ``CancelledError`` into it."""
    while True:
        try:
            if waiting is None:
                await asyncio.sleep(0)
            else:
                waiting._asyncio_future_blocking = False
                # Wait for the future without taking its outcome: ``step`` reads it.
                await asyncio.wait((waiting,))
        except asyncio.CancelledError:
            try:
                waiting = step.throw(asyncio.CancelledError())
            except StopIteration:
                return
            continue
        try:
            waiting = step.send(None)
        except StopIteration:
            return
