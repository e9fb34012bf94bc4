"""Watches the store's revision and swaps in a freshly compiled snapshot when it moves.

Within one process the admin API's commits wake the loader at once; on PostgreSQL every commit
wakes it through LISTEN/NOTIFY; and it polls the revision every ``interval`` seconds (one
single-row SELECT) whatever happens.  A new revision's changed rows are fetched and only what
they touch is compiled (``incremental.update_steps``; everything when it cannot say), in steps
with requests served between them.  A request keeps the snapshot it started with; an old
snapshot's upstream pools are closed only once its last request is done.

When the store does not answer at start, the node's last-good snapshot on disk is served
(``last_good.py``) until it does; the store's state is reported (and logged once per change)
through ``store_state``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import Generator
from typing import TypeVar

from llmgate.observability.logs import Notices
from llmgate.runtime.compiler import compile_steps
from llmgate.runtime.incremental import update_steps
from llmgate.runtime.last_good import SnapshotFile
from llmgate.runtime.services import Services
from llmgate.runtime.snapshot import Snapshot
from llmgate.store import Item, Store
from llmgate.store.health import StoreState, is_store_error
from llmgate.store.notify import RevisionListener, listener_for
from llmgate.store.revision_probe import RevisionProbe, revision_probe

log = logging.getLogger("llmgate.runtime")

_R = TypeVar("_R")

# Changed rows past which a reload reads and compiles everything (a bulk ``config apply``).
MAX_INCREMENTAL = 2000


class SnapshotLoader:
    def __init__(
        self,
        store: Store,
        services: Services,
        interval: float = 0.1,
        last_good: SnapshotFile | None = None,
        *,
        freeze: bool = False,
    ) -> None:
        self.store = store
        # Whether full compilations run with the collector off and end with ``gc.freeze()``
        # (a serving process: yes; a test sharing its interpreter with others: no).
        self.freeze = freeze
        self.last_good = last_good
        # Where ``current`` came from: "store", or "disk" (the last-good snapshot, while the
        # store has not answered since this process started).
        self.source = "store"
        self.services = services
        self.interval = interval
        self.pools = services.pools
        self.current: Snapshot | None = None
        # Pool keys of every snapshot that may still have requests in flight.
        self._live: dict[int, tuple[Snapshot, set[str]]] = {}
        # Requests in flight per snapshot (by id): kept here, so serving never writes into one.
        self._in_flight: dict[int, int] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._retiring: set[asyncio.Task[None]] = set()
        self._lock = asyncio.Lock()
        self._probe: RevisionProbe = store.revision
        self.store_state = StoreState()
        self._listener: RevisionListener | None = None
        # Every row of the revision served, by kind and id in creation order: what a change
        # is applied to.
        self.rows: dict[str, dict[str, Item]] | None = None
        self.reloads = {"full": 0, "incremental": 0}  # how each revision was compiled
        self.last_held = (0.0, 0.0)  # the last compilation's seconds in all, longest step
        # Monotonic time the store last confirmed that ``current`` is its newest revision.
        self.confirmed: float | None = None
        self.notices = Notices()  # configuration warnings said once while they hold

    async def start(self) -> None:
        """Load the store's newest revision, or, when the store does not answer, the node's
        last-good snapshot (then the watcher catches up once the store answers); raises the
        store's error when there is neither."""
        self._probe = revision_probe(self.store)
        self._listener = listener_for(self.store, self._wake.set)
        if self._listener is not None:
            self._listener.start()
        try:
            await self.reload()
            self.store_state.succeeded()
        except Exception as exc:
            if not is_store_error(exc):
                raise
            kept = self.last_good.read() if self.last_good is not None else None
            if kept is None:
                raise
            self.store_state.failed(exc)
            revision, items = kept
            await self._install(revision, items)
            self.source = "disk"
            self.confirmed = None
            log.warning(
                "serving revision %s from the last-good snapshot %s until the store answers",
                revision,
                self.last_good.path if self.last_good is not None else None,
            )
        self.store.on_commit(self.notify)
        self._task = asyncio.create_task(self._watch(), name="llmgate-snapshot-watch")

    def notify(self, _revision: int) -> None:
        """Called after a commit in this process: reload now rather than at the next poll."""
        self._wake.set()

    async def _watch(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval)
            self._wake.clear()
            try:
                revision = await self._probe()
                if self.current is None or revision != self.current.revision:
                    await self.reload()
                else:
                    self.confirmed = time.monotonic()
                self.source = "store"
                self.store_state.succeeded()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the store may be unreachable: keep serving, retry
                if is_store_error(exc):
                    self.store_state.failed(exc)  # logged once per change of state
                else:
                    log.exception(
                        "reloading the configuration failed; keeping revision %s",
                        self.current.revision if self.current else None,
                    )

    def snapshot_age(self) -> float | None:
        """Seconds since the store last confirmed the served snapshot is its newest."""
        return None if self.confirmed is None else time.monotonic() - self.confirmed

    async def reload(self) -> Snapshot:
        async with self._lock:
            async with self.store.read() as reader:
                revision = await reader.revision()
                current = self.current
                if current is not None and revision == current.revision:
                    self.confirmed = time.monotonic()
                    return current
                changed = None
                if current is not None and self.rows is not None:
                    changed = await reader.changed_since(current.revision, revision)
                if changed is not None and len(changed) <= MAX_INCREMENTAL:
                    fetched = await reader.get_many(changed)
                    items = None
                else:
                    items = await reader.all()
            if items is None:
                assert changed is not None
                snapshot = await self._update(revision, changed, fetched)
            else:
                snapshot = await self._install(revision, items)
            self.confirmed = time.monotonic()
            if self.last_good is not None and self.rows is not None:
                self.last_good.save(revision, self._all_rows())
            return snapshot

    def _all_rows(self) -> list[Item]:
        assert self.rows is not None
        return [item for rows in self.rows.values() for item in rows.values()]

    async def _update(
        self, revision: int, changed: list[tuple[str, str]], fetched: list[Item]
    ) -> Snapshot:
        """Apply the changed rows, then compile only what they touch (everything when the
        compiler cannot say)."""
        assert self.rows is not None and self.current is not None
        found = {(item.kind, item.id): item for item in fetched}
        for kind, id in changed:
            rows = self.rows.setdefault(kind, {})
            item = found.get((kind, id))
            if item is None:
                rows.pop(id, None)
                continue
            last = next(reversed(rows.values()), None) if id not in rows else None
            rows[id] = item
            if last is not None and (last.created_index, last.id) > (item.created_index, id):
                ordered = sorted(rows.values(), key=lambda i: (i.created_index, i.id))
                self.rows[kind] = {i.id: i for i in ordered}
        self.pools.begin()
        steps = update_steps(revision, self.rows, changed, self.services, self.pools, self.current)
        snapshot: Snapshot | None
        try:
            with self.notices.round(full=False):  # only the changed rows: nothing forgotten
                snapshot = await self._stepped(steps)
        except Exception:  # a bug, not the config: compile everything instead
            log.exception("compiling revision %s incrementally failed", revision)
            snapshot = None
        held, longest = self.last_held
        if snapshot is None:
            return await self._install(revision, self._all_rows())
        self.reloads["incremental"] += 1
        self._swap(snapshot)
        log.info("configuration revision %s is live", revision)
        log.debug(
            "revision %s: %d changed rows compiled in %.1f ms (longest step %.1f ms)",
            revision,
            len(changed),
            held * 1000,
            longest * 1000,
        )
        return snapshot

    async def _install(self, revision: int, items: list[Item]) -> Snapshot:
        """Compile ``items`` (every row of ``revision``) and serve them from now on.  While
        a snapshot is served, in steps of a few ms with requests running between them."""
        rows: dict[str, dict[str, Item]] = {}
        for item in items:
            rows.setdefault(item.kind, {})[item.id] = item
        self.reloads["full"] += 1
        self.pools.begin()
        steps = compile_steps(revision, items, self.services, self.pools, previous=self.current)
        # The collector's full passes over a big config would hold the loop for 100 ms and
        # more in the middle of the steps: off while compiling, and what was built (it lives
        # until the next full compilation) kept out of its passes.  A snapshot holds no
        # reference cycles, so reference counting frees a frozen one once it retires.
        collecting = gc.isenabled()
        if self.freeze:
            gc.disable()
        try:
            with self.notices.round():  # a warning is said once while it holds
                snapshot = await self._stepped(steps, pause=self.current is not None)
        finally:
            if collecting:
                gc.enable()
        if self.freeze:
            gc.freeze()
        self.rows = rows
        self._swap(snapshot)
        log.info("configuration revision %s is live", revision)
        log.debug(
            "revision %s: every row compiled in %.1f ms (longest step %.1f ms)",
            revision,
            self.last_held[0] * 1000,
            self.last_held[1] * 1000,
        )
        return snapshot

    async def _stepped(self, steps: Generator[None, None, _R], pause: bool = True) -> _R:
        """Run ``steps`` to the end, letting requests run between two steps (``pause``);
        the time held is kept in ``last_held`` (in all, longest step)."""
        held = longest = 0.0
        while True:
            started = time.perf_counter()
            try:
                with self.notices.step():
                    next(steps)
            except StopIteration as done:
                result: _R = done.value
                return result
            finally:
                step = time.perf_counter() - started
                held, longest = held + step, max(longest, step)
                self.last_held = (held, longest)
            if pause:
                await asyncio.sleep(0)

    def _swap(self, snapshot: Snapshot) -> None:
        self._report(snapshot)
        old, self.current = self.current, snapshot
        self._live[id(snapshot)] = (snapshot, self.pools.touched)
        if old is not None:
            task = asyncio.create_task(self._retire(old))
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)

    def _report(self, snapshot: Snapshot) -> None:
        """Log each resource that stops (or starts again) compiling once, not at every
        reload, and keep the ``config_errors`` gauge current."""
        before = self.current.problems if self.current is not None else {}
        for key, why in sorted(snapshot.problems.items()):
            if before.get(key) != why:
                unit = snapshot.units.get(key)
                fallback = (
                    "its last good version"
                    if unit is not None and unit.good
                    else "a 503 in its place"
                    if unit is not None
                    else "nothing"
                )
                log.error("%s does not compile (serving %s): %s", key, fallback, why)
        for key in sorted(before.keys() - snapshot.problems.keys()):
            log.info("%s compiles again", key)
        if self.services.metrics is not None:
            self.services.metrics.config_errors.set(len(snapshot.problems))

    async def sync(self) -> None:
        """Load the newest revision now (bounded: a slow store never blocks the caller long)."""
        try:
            await asyncio.wait_for(self.reload(), timeout=2.0)
        except Exception:
            log.exception("synchronous reload failed; the watcher will retry")

    def enter(self, snapshot: Snapshot) -> None:
        """A request starts on ``snapshot`` (its pools stay open until ``leave``)."""
        key = id(snapshot)
        self._in_flight[key] = self._in_flight.get(key, 0) + 1

    def leave(self, snapshot: Snapshot) -> None:
        key = id(snapshot)
        left = self._in_flight[key] - 1
        if left:
            self._in_flight[key] = left
        else:
            del self._in_flight[key]

    async def _retire(self, old: Snapshot) -> None:
        """Close pools nothing uses any more, once ``old``'s in-flight requests are done."""
        while id(old) in self._in_flight:  # noqa: ASYNC110 (a plain count, checked twice a second)
            await asyncio.sleep(0.5)
        async with self._lock:
            self._live.pop(id(old), None)
            keep = set().union(*(keys for _, keys in self._live.values()))
            await self.pools.retire(keep)

    async def stop(self) -> None:
        if self._listener is not None:
            await self._listener.stop()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for task in list(self._retiring):
            task.cancel()
        close = getattr(self._probe, "close", None)
        if close is not None:
            close()
        if self.last_good is not None:
            await self.last_good.close()
        await self.pools.close()
