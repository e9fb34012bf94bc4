"""Token usage and cost per consumer, route and model: counted in memory by each data-plane
process, spooled to local disk, shipped to the store in the background, summarised by
``GET /apisix/admin/usage``.

    data-plane process                                     admin API
      UsageReporter.add(consumer, route, model, usage,       parse_query(request.query)
                        cost=, cache=, call=)                summarize(store, query)
        pending[(minute, consumer, route, model, cache)]       SUM(...) GROUP BY consumer,
          += 1, tokens, cost                                   route, model, day, cache
        calls += [CallRecord]       (``llm_calls``: one row per call, with its request id)
        (each call first appended to the node's spool, ``usage_spool.py``: a memory copy)
      every ``spool_interval`` (50 ms): the spool fsync'd (when a record was appended)
      every ``interval`` s and at stop: what was counted becomes a Batch (the spool segment's
        id), and the batches not shipped yet go in one transaction (``usage_ship.py``): their
        ids into ``usage_batches`` (a batch already there is skipped), upserts-by-increment
        into ``usage``, inserts into ``llm_calls``; then their spool segments are deleted
      at start and every ``ORPHAN_SCAN`` s: the spools of the node's dead processes, shipped

A killed process loses nothing it counted (the kernel has its writes), an OS crash at most
``spool_interval``; a restart ships what was spooled, and no batch counts twice.  Nothing here
runs on the request path but ``add`` (a memory copy into the spool, a dict update and a list
append).  A shipment that fails keeps its batches for the next one.  Writing never bumps the
configuration revision.

Per-call records are bounded: at most ``MAX_PENDING_CALLS`` wait for a flush (beyond that they
are dropped, and the drops logged; the counts stay exact), and rows older than
``calls_days`` days are deleted (``calls_days=0``: no per-call records at all).

``cost`` is in ``PICO`` units of the price table's currency (``ai/pricing.py``); the summary
shows it in the currency.  ``cache`` is "" for calls a provider answered and "hit" for answers
proxy-cache replayed (their tokens were served from the cache: cost 0).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from pathlib import Path

import orjson

from llmgate.ai.usage import Usage
from llmgate.observability.usage_ship import Batch, CallRecord, Key, Shipper
from llmgate.observability.usage_spool import Spool, holder_id
from llmgate.store import Store

__all__ = ["CallRecord", "UsageReporter"]

log = logging.getLogger("llmgate.usage")

FLUSH_INTERVAL = 1.0  # seconds between two shipments to the store
SPOOL_INTERVAL = 0.05  # seconds between two fsyncs of the spool: what an OS crash may lose
ORPHAN_SCAN = 5.0  # seconds between two looks for the spools of dead processes
MAX_PENDING_CALLS = 50_000
CALLS_DAYS = 30  # how long per-call records are kept, by default
PRUNE_EVERY = 600.0  # seconds between two deletions of expired per-call records


class UsageReporter:
    """One data-plane process's usage counts on their way to the store, through the node's
    spool (``usage_spool.py``) when it has one."""

    def __init__(
        self,
        store: Store,
        interval: float = FLUSH_INTERVAL,
        clock: Callable[[], float] = time.time,
        calls_days: int = CALLS_DAYS,
        spool: Spool | None = None,
        spool_interval: float = SPOOL_INTERVAL,
    ) -> None:
        self.store = store
        self.interval = interval
        self.spool_interval = spool_interval
        self.calls_days = calls_days
        self.spool = spool
        self._holder = spool.holder if spool is not None else holder_id()
        self._sequence = 0
        self._clock = clock
        self._pending: dict[Key, list[int]] = {}
        self._calls: list[CallRecord] = []
        self._unshipped: list[Batch] = []
        self._backlog_calls = 0  # per-call records in ``_unshipped``
        self._dropped = 0
        self._pruned = 0.0
        self._scanned = 0.0
        self._shipper = Shipper(store.engine)
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._io = asyncio.Lock()  # the spool's fsyncs and segment changes, one at a time
        self._shipping = asyncio.Lock()
        self._failing = False
        self._spool_failing = False

    def add(
        self,
        consumer: str,
        route: str,
        model: str,
        usage: Usage | None,
        *,
        cost: int = 0,
        cache: str = "",
        call: CallRecord | None = None,
    ) -> None:
        """Count one LLM call (its tokens when its response carried ``usage``, and its
        ``cost``); keep ``call`` as its own record.  With a spool, the call is appended to it
        first (a memory copy into its mapped segment)."""
        minute = int(self._clock()) // 60 * 60
        key = (minute, consumer, route, model, cache)
        if usage is None:
            prompt = completion = total = cached = 0
        else:
            prompt, completion = usage.prompt_tokens, usage.completion_tokens
            total, cached = usage.total_tokens, usage.cached_tokens
        keep = None
        if call is not None and self.calls_days > 0:
            if len(self._calls) + self._backlog_calls < MAX_PENDING_CALLS:
                keep = call
            else:
                self._dropped += 1
        if self.spool is not None and self.spool.ready:
            # (*key, *counts, call): ``Batch.from_records`` reads it back.
            row = tuple(keep) if keep is not None else None  # orjson takes no NamedTuple
            record = (
                minute, consumer, route, model, cache,
                1, prompt, completion, total, cached, cost, row,
            )  # fmt: skip
            try:
                self.spool.append(orjson.dumps(record))
            except OSError as exc:
                if not self._spool_failing:  # once per outage
                    log.warning("writing the usage spool failed: %s", exc.strerror or exc)
                self._spool_failing = True
        counts = self._pending.get(key)
        if counts is None:
            self._pending[key] = [1, prompt, completion, total, cached, cost]
        else:
            counts[0] += 1
            counts[1] += prompt
            counts[2] += completion
            counts[3] += total
            counts[4] += cached
            counts[5] += cost
        if keep is not None:
            self._calls.append(keep)

    async def start(self) -> None:
        """Hold this process's spool, then sync and ship in the background (the spools of
        the node's dead processes first)."""
        if self.spool is not None:
            try:
                await asyncio.to_thread(self.spool.open)
            except OSError as exc:
                log.warning(
                    "cannot use the usage spool %s (%s): usage a crash interrupts is lost",
                    self.spool.directory,
                    exc.strerror or exc,
                )
                self.spool = None
        self._stopping.clear()
        self._tasks = [asyncio.create_task(self._run(), name="llmgate-usage-flush")]
        if self.spool is not None:
            self._tasks.append(asyncio.create_task(self._syncing(), name="llmgate-usage-sync"))

    async def stop(self) -> None:
        """Stop in the background, after one last flush."""
        self._stopping.set()
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            await task
        if not tasks:
            await self.flush()
        if self.spool is not None and self.spool.ready:
            async with self._io:
                await asyncio.to_thread(self.spool.close, shipped=not self._unshipped)

    async def _run(self) -> None:
        # Never cancelled mid-write (a cancelled commit could count twice): ``stop`` sets the
        # event, and the loop ends after its last flush.
        await self.recover()
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.interval)
            await self.flush()
            if self._clock() - self._scanned >= ORPHAN_SCAN:
                await self.recover()
        await self.flush()  # what was added while the last one was writing

    async def _syncing(self) -> None:
        """fsync the spool every ``spool_interval``: what an OS crash may lose."""
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.spool_interval)
            await self.sync()

    async def sync(self) -> None:
        if self.spool is None or not self.spool.ready:
            return
        async with self._io:
            if not self.spool.dirty:  # idle: no thread woken for nothing
                return
            try:
                await asyncio.to_thread(self.spool.sync)
            except OSError as exc:
                if not self._spool_failing:
                    log.warning("syncing the usage spool failed: %s", exc.strerror or exc)
                self._spool_failing = True

    def _take(self) -> int | None:
        """End the batch being counted (and its spool segment); returns the segment's file
        descriptor, for ``Spool.close_detached``."""
        segment = None
        if self.spool is not None and self.spool.ready:
            id = f"{self._holder}:{self.spool.number}"
            segment = self.spool.detach()
        else:
            self._sequence += 1
            id = f"{self._holder}:{self._sequence}"
        if self._pending or self._calls:
            self._unshipped.append(Batch(id, self._pending, self._calls))
            self._backlog_calls += len(self._calls)
            self._pending, self._calls = {}, []
        return segment

    async def flush(self) -> int:
        """Ship every batch not shipped yet (what is pending first) in one transaction; how
        many usage rows were written."""
        if self._dropped:
            log.warning("%d per-call usage records dropped: too many waiting", self._dropped)
            self._dropped = 0
        async with self._shipping:
            segments: list[Path] = []
            async with self._io:
                segment = self._take()
                batches = list(self._unshipped)
                if self.spool is not None and self.spool.ready:
                    close = self.spool.close_detached
                    try:  # no segment (nothing counted): no file to close, no thread woken
                        if segment is None:
                            segments = close(None)
                        else:
                            segments = await asyncio.to_thread(close, segment)
                    except OSError as exc:
                        log.warning("closing a usage spool segment failed: %s", exc)
            if not batches:
                return 0
            try:
                written = await self._ship(batches)
            except Exception:
                if not self._failing:  # once per outage, not every second
                    log.exception("writing token usage failed; keeping it for the next flush")
                self._failing = True
                return 0
            self._failing = False
            del self._unshipped[: len(batches)]  # later batches were only appended
            self._backlog_calls -= sum(len(batch.calls) for batch in batches)
            if self.spool is not None and segments:
                await asyncio.to_thread(self.spool.shipped, segments)
        await self._prune()
        return written

    async def recover(self) -> None:
        """Ship the spools of the node's processes that died, then delete them."""
        self._scanned = self._clock()
        if self.spool is None or not self.spool.ready:
            return
        try:
            orphans = await asyncio.to_thread(self.spool.claim_orphans)
        except OSError as exc:
            log.warning("cannot read the usage spool: %s", exc.strerror or exc)
            return
        for orphan in orphans:
            shipped = False
            try:
                batches = [
                    Batch.from_records(f"{orphan.holder}:{number}", payloads)
                    for number, payloads in await asyncio.to_thread(orphan.read)
                    if payloads
                ]
                if batches:
                    await self._ship(batches)
                    log.info("shipped %d spooled usage batches of %s", len(batches), orphan.holder)
                shipped = True
            except (ValueError, TypeError, IndexError) as exc:  # not a record this writes
                log.warning(
                    "the usage spool of %s is damaged (%s): left as it is", orphan.holder, exc
                )
            except Exception as exc:  # the store is down: the next scan tries again
                log.warning("shipping the usage spool of %s failed: %s", orphan.holder, exc)
            finally:
                await asyncio.to_thread(self.spool.release, orphan, shipped=shipped)

    async def _ship(self, batches: list[Batch]) -> int:
        """Write the batches the store has not received yet (``Shipper.ship``)."""
        return await self._shipper.ship(batches, int(self._clock()))

    async def _prune(self) -> None:
        """Delete per-call records older than ``calls_days`` and batch ids older than
        ``BATCH_DAYS`` (every ``PRUNE_EVERY`` s)."""
        now = self._clock()
        if now - self._pruned < PRUNE_EVERY:
            return
        self._pruned = now
        try:
            await self._shipper.prune(self.calls_days, now)
        except Exception as exc:
            log.warning("deleting expired usage records failed: %s", exc)
