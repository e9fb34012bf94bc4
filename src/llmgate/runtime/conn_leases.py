"""Leases on limit-conn slots in a shared Redis: a process holds its slots only while it lives.

A holder is one process (node, pid and a random part).  Each key it holds a slot on carries
the holder's lease end (``redis_scripts.py``: a sorted set beside the key's {holder: slots}
hash); ``Leases`` renews it a third of a lease after the last renewal while a slot is held, so
the slots of a process that died without releasing them (SIGKILL, a lost node) stop counting
when its lease ends: within ``LEASE`` seconds.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable

from llmgate.runtime.counters import CountersUnavailable
from llmgate.tasks import cancel_and_wait

log = logging.getLogger("llmgate.counters")

# The longest a dead holder's slots stay counted (limit-conn's ``key_ttl`` may shorten it).
LEASE = 5.0


def holder_id() -> str:
    """This process, as a holder of limit-conn slots: node, pid and a random part (a pid is
    reused after a restart)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


class Leases:
    """The limit-conn keys this process holds slots on, each renewed a third of its lease
    after the last renewal, for as long as the process lives and holds a slot there.

    ``renew(name, lease, life)`` renews one key (False: the key no longer counts this holder,
    e.g. Redis lost it; it is then forgotten).  A renewal that fails is tried again at the next
    tick: the lease still runs meanwhile.
    """

    TICK = 0.2

    def __init__(self, renew: Callable[[str, float, int], Awaitable[bool]]) -> None:
        self._renew = renew
        self._held: dict[str, list[float]] = {}  # name -> [slots, lease, life (ms), due]
        self._task: asyncio.Task[None] | None = None

    def hold(self, name: str, lease: float, life: int) -> None:
        entry = self._held.get(name)
        due = time.monotonic() + lease / 3
        if entry is None:
            self._held[name] = [1, lease, life, due]
        else:
            entry[0] += 1
            entry[1] = min(entry[1], lease)
            entry[2] = max(entry[2], life)
            entry[3] = min(entry[3], due)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="llmgate-conn-leases")

    def drop(self, name: str) -> None:
        entry = self._held.get(name)
        if entry is not None:
            entry[0] -= 1
            if entry[0] <= 0:
                del self._held[name]

    async def _run(self) -> None:
        while self._held:
            await asyncio.sleep(self.TICK)
            now = time.monotonic()
            for name, entry in list(self._held.items()):
                if entry[3] > now:
                    continue
                try:
                    kept = await self._renew(name, entry[1], int(entry[2]))
                except CountersUnavailable as exc:
                    log.warning("cannot renew the limit-conn lease of %s: %s", name, exc)
                    continue
                if not kept:
                    self._held.pop(name, None)
                else:
                    entry[3] = time.monotonic() + entry[1] / 3

    async def close(self) -> None:
        self._held.clear()
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None
