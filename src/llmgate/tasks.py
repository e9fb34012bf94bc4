"""Stopping background tasks: ``cancel_and_wait``."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any


async def cancel_and_wait(*tasks: asyncio.Future[Any]) -> None:
    """Cancel ``tasks``, then wait for each to end in turn (its clean-up done).  The
    ``CancelledError`` a task ends with is swallowed (and so is a cancellation of the caller
    arriving meanwhile: the two look the same here); an error a task had failed with is
    raised."""
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
