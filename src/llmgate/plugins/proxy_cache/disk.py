"""The ``disk_cache_one`` zone: one file per entry, shared by every process using the directory.

Layout (nginx's ``levels=1:2`` on the SHA-256 of the primary key, then one file per variant):

    <root>/disk_cache_one/<h[-1]>/<h[-3:-1]>/<h>/<variant>
    <root>/disk_cache_one/.ledger          bytes and entries held (ledger.py)

``<root>`` is ``$LLMGATE_CACHE_DIR`` when set: entries are then shared by the workers given the
same value and kept across restarts. Otherwise it is a private temporary directory
(``$TMPDIR/llmgate-cache-XXXXXXXX``, mode 0700) removed when the store closes, so separate
gateways never see each other's entries; one left behind by a killed gateway is removed when
the next store opens (sweep.py). Writes run in a thread after the response (entry_files.py),
to a temporary file renamed into place, so a reader (or a crash) never sees half an entry; until
the rename lands, this process answers from its own pending copy.

Writes wait in a queue for one of ``WRITERS`` writing tasks.  The queue is bounded
(``MAX_PENDING``, ``MAX_PENDING_BYTES``): when writes fall behind (a flood), the oldest waiting
one is skipped, never the newest, since the newest are what an LRU cache must hold afterwards.
An entry's atime (its last use, what the sweep evicts by) is the time it was put or last hit,
not the time its write landed: a backlog landing late must not look newer than the entries
written meanwhile (by this process or another), or the sweep would evict those first.

Caps (``CacheCaps``): a write is admitted only while the zone stays within ``max_bytes`` and
``max_entries``; one that finds no room starts a sweep (which removes expired entries, then the
least recently used ones down to ``LOW_WATER``) and tries again after it.  A sweep also runs
every ``SWEEP_EVERY`` seconds (less often for a zone so large that counting it takes a while).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import functools
import hashlib
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from llmgate.plugins.proxy_cache.entry import Entry
from llmgate.plugins.proxy_cache.entry_files import (
    read_entry,
    remove_entries,
    unlink_entry,
    write_entry,
)
from llmgate.plugins.proxy_cache.ledger import Ledger
from llmgate.plugins.proxy_cache.policy import CacheKey
from llmgate.plugins.proxy_cache.sweep import Swept, new_root, remove_stale_roots, sweep
from llmgate.runtime.services import CacheCaps

log = logging.getLogger("llmgate.plugins.proxy_cache")

CACHE_DIR_ENV = "LLMGATE_CACHE_DIR"
SWEEP_EVERY = 10.0  # seconds between two sweeps (nginx's cache manager: 10 s)
SWEEP_SHARE = 0.1  # at most this share of the time goes to counting a large zone
WRITE_ATTEMPTS = 5  # a write that keeps finding the zone full is given up after this many
MAX_PENDING = 256  # writes waiting to land (queued or being written)
MAX_PENDING_BYTES = 64 * 1024 * 1024
WRITERS = 4  # writes in flight at once (each in a thread)


@dataclasses.dataclass(slots=True)
class _Pending:
    """An entry put and not landed yet."""

    entry: Entry
    used: float  # when it was put, or last hit since: its atime once it lands


class DiskStore:
    def __init__(
        self,
        directory: Path,
        caps: CacheCaps | None = None,
        temporary_root: Path | None = None,
        owner: int | None = None,
    ) -> None:
        self.directory = directory
        self.caps = caps or CacheCaps()
        self.clock: Callable[[], float] = time.time
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # a bad directory costs the cache, never the snapshot
            log.warning("cache directory %s unusable: %s", directory, exc)
        self.ledger = Ledger(directory)
        self._temporary_root = temporary_root
        self._owner = owner  # the locked .owner file of a temporary root
        # Every entry put and not landed yet (what this process answers from meanwhile): the
        # ones waiting for a writer, oldest first, and the ones being written.
        self._pending: dict[CacheKey, _Pending] = {}
        self._queue: collections.OrderedDict[CacheKey, _Pending] = collections.OrderedDict()
        self._pending_bytes = 0  # of the entries queued or being written
        self._in_flight = 0  # entries being written
        self._writers = 0  # writing tasks running (counted by the tasks themselves)
        self._writes: set[asyncio.Task[None]] = set()
        self._sweeping: asyncio.Task[Swept | None] | None = None
        self._waiting = 0  # bytes of the writes waiting for a sweep to make room
        # The least recently used entries the last sweep saw: what a write evicts when the
        # zone is full (popped by the writing threads).
        self._candidates: collections.deque[tuple[str, int]] = collections.deque()
        self._periodic: asyncio.Task[None] | None = None

    @classmethod
    def open(cls, zone: str, caps: CacheCaps | None = None) -> DiskStore:
        """The zone under ``$LLMGATE_CACHE_DIR``, else under a new temporary directory (read
        once, when the store is created, never per request)."""
        configured = os.environ.get(CACHE_DIR_ENV)
        if configured:
            return cls(Path(configured) / zone, caps)
        parent = Path(tempfile.gettempdir())
        for stale in remove_stale_roots(parent):
            log.warning("removed the cache directory %s of a gateway that is gone", stale)
        root, owner = new_root(parent)
        return cls(root / zone, caps, temporary_root=root, owner=owner)

    def _folder(self, primary: str) -> Path:
        digest = hashlib.sha256(primary.encode("utf-8", "surrogatepass")).hexdigest()
        return self.directory / digest[-1] / digest[-3:-1] / digest

    def path(self, key: CacheKey) -> Path:
        return self._folder(key.primary) / key.variant

    async def get(self, key: CacheKey) -> Entry | None:
        pending = self._pending.get(key)
        if pending is not None:
            pending.used = time.time()
            return pending.entry
        path = self.path(key)
        try:
            path.stat()  # one stat: misses stay on the loop, cheap
        except OSError:
            return None
        return await asyncio.to_thread(read_entry, path, key, self.ledger)

    async def put(self, entry: Entry) -> None:
        """Store ``entry`` in the background; visible to this process at once.  Beyond
        ``MAX_PENDING`` writes, or ``MAX_PENDING_BYTES``, not landed yet, the oldest waiting
        one is skipped: a cache that falls behind must not grow the gateway's memory, and it
        keeps the newest entries, as least recently used eviction would."""
        self._start_periodic()
        self._unqueue(entry.key)  # an older entry for the key, not written yet: replaced
        pending = _Pending(entry, time.time())
        self._pending[entry.key] = pending  # a write of an older one in flight: cancelled
        self._queue[entry.key] = pending
        self._pending_bytes += entry.size
        while self._queue and (
            len(self._queue) + self._in_flight > MAX_PENDING
            or self._pending_bytes > MAX_PENDING_BYTES
        ):
            self._unqueue(next(iter(self._queue)))
        while self._writers < min(WRITERS, len(self._queue)):
            self._writers += 1
            task = asyncio.create_task(self._write_queued())
            self._writes.add(task)
            task.add_done_callback(self._writes.discard)

    def _unqueue(self, key: CacheKey) -> None:
        """Drop the write of ``key`` waiting in the queue, if any."""
        pending = self._queue.pop(key, None)
        if pending is not None:
            self._pending_bytes -= pending.entry.size
            if self._pending.get(key) is pending:
                del self._pending[key]

    async def purge(self, primary: str, variant: str | None = None) -> bool:
        """Remove one variant, or all of ``primary``'s; whether anything was there."""
        if variant is None:
            dropped = [key for key in self._pending if key.primary == primary]
            target = self._folder(primary)
        else:
            dropped = [key for key in (CacheKey(primary, variant),) if key in self._pending]
            target = self.path(CacheKey(primary, variant))
        for key in dropped:
            self._unqueue(key)
            self._pending.pop(key, None)  # its write in flight, if any, is cancelled
        removed = await asyncio.to_thread(remove_entries, target, variant is None, self.ledger)
        return removed or bool(dropped)

    async def flush(self) -> None:
        """Wait for the writes in flight (and the sweep they started)."""
        while self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)
        if self._sweeping is not None:
            await asyncio.gather(self._sweeping, return_exceptions=True)

    async def sweep(self, room: int = 0) -> Swept | None:
        """Sweep the zone now, making ``room`` bytes (None: another process is sweeping)."""
        swept = await asyncio.to_thread(
            sweep, self.directory, self.ledger, self.caps, time.time(), room
        )
        if swept is not None and swept.candidates:
            self._candidates = collections.deque(swept.candidates)
        return swept

    def _evict(self, keep: Path) -> bool:
        """Remove the least recently used entry the last sweep saw (never ``keep``); False
        when there is none left.  Runs in a writing thread."""
        while True:
            try:
                path, _ = self._candidates.popleft()
            except IndexError:
                return False
            if path == str(keep):
                continue
            if self.ledger.remove(functools.partial(unlink_entry, path)) != (0, 0):
                return True
            # else purged, or evicted by another process, meanwhile

    async def close(self) -> None:
        if self._periodic is not None:
            self._periodic.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._periodic
            self._periodic = None
        await self.flush()
        self.ledger.close()
        if self._temporary_root is not None:
            await asyncio.to_thread(shutil.rmtree, self._temporary_root, True)
        if self._owner is not None:
            os.close(self._owner)
            self._owner = None

    async def _write_queued(self) -> None:
        """One writing task: write the queued entries, oldest first, until none is left."""
        try:
            while self._queue:
                _, pending = self._queue.popitem(last=False)
                self._in_flight += 1
                try:
                    await self._write(pending)
                finally:
                    self._in_flight -= 1
        finally:
            self._writers -= 1

    async def _write(self, pending: _Pending) -> None:
        """Write ``pending``'s entry; when the zone is full, again after a sweep made room (the
        entry stays visible from ``_pending`` meanwhile), up to ``WRITE_ATTEMPTS`` times."""
        entry = pending.entry
        path = self.path(entry.key)
        wanted = self._wanted(pending)
        try:
            for attempt in range(1, WRITE_ATTEMPTS + 1):
                room = await asyncio.to_thread(
                    write_entry,
                    path,
                    entry,
                    pending.used,
                    wanted,
                    self.ledger,
                    self.caps,
                    self._evict,
                )
                if not room or not wanted() or attempt == WRITE_ATTEMPTS:
                    break
                self._waiting += room
                try:
                    await asyncio.gather(self._sweep_soon(), return_exceptions=True)
                finally:
                    self._waiting -= room
        except OSError as exc:
            log.warning("could not write cache entry %s: %s", path, exc)
        finally:
            self._pending_bytes -= entry.size
            if self._pending.get(entry.key) is pending:
                del self._pending[entry.key]

    def _wanted(self, pending: _Pending) -> Callable[[], bool]:
        # A PURGE (or a newer entry) arriving while the file is written cancels this one.
        return lambda: self._pending.get(pending.entry.key) is pending

    def _sweep_soon(self) -> asyncio.Task[Swept | None]:
        """The sweep a write that found no room waits for: the one running (the write may
        have to wait for the next one too), or a new one."""
        if self._sweeping is None or self._sweeping.done():
            self._sweeping = asyncio.create_task(self._sweep_for_waiting())
        return self._sweeping

    async def _sweep_for_waiting(self) -> Swept | None:
        """A sweep that frees at least ``LOW_WATER`` of the caps, and room for the writes
        waiting when it starts (up to half the zone: a burst never empties the cache)."""
        return await self.sweep(min(self._waiting, self.caps.max_bytes // 2))

    def _start_periodic(self) -> None:
        if self._periodic is None:
            self._periodic = asyncio.create_task(self._sweep_periodically())

    async def _sweep_periodically(self) -> None:
        pause = SWEEP_EVERY
        while True:
            await asyncio.sleep(pause)
            began = time.monotonic()
            try:
                await self.sweep()
            except OSError as exc:
                log.warning("could not sweep the cache directory %s: %s", self.directory, exc)
            pause = max(SWEEP_EVERY, (time.monotonic() - began) / SWEEP_SHARE)
