"""An async batch processor: log entries in, batches out to a sink, off the request path.

APISIX's batch processor (``apisix/utils/batch-processor.lua``) with its knobs, as one
long-lived object with a background task:

    push(entry) --> pending (bounded: full -> dropped) --> collector task --> batch
        --> sink.send(batch)   at most ``max_in_flight`` at once; a failure is retried
                               ``max_retry_count`` times, then the batch is dropped

A batch leaves when it holds ``batch_max_size`` entries, ``inactive_timeout`` seconds after the
last entry arrived, or ``buffer_duration`` seconds after its first one, whichever comes first
(``batch_max_size`` 1 sends each entry at once; ``inactive_timeout`` 0 sends whatever is queued
as soon as the collector wakes).  A failed batch waits ``retry_delay`` seconds before its first
retry and twice as long before each next one (capped at ``MAX_RETRY_DELAY``); APISIX waits the
same delay every time, which hammers a collector that is already down.

``push`` never blocks and never raises: a slow or dead collector fills ``pending`` and then
costs dropped entries, never request latency.  While every delivery slot is busy the collector
stops taking entries, so memory stays bounded by ``max_pending`` plus the batches in flight.

Counters, read by metrics: ``sent`` and ``dropped`` count entries, ``retried`` counts retry
attempts of batches.  After ``idle_timeout`` seconds with nothing to do the task ends and the
sink is closed (its sockets or file released); the next ``push`` starts both again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from typing import Any, Protocol

from llmgate.tasks import cancel_and_wait

log = logging.getLogger("llmgate.observability.batch")

MAX_RETRY_DELAY = 60.0


class Sink(Protocol):
    """Where batches go (an HTTP collector, a file)."""

    async def send(self, entries: list[Any]) -> None:
        """Deliver ``entries``; raise on failure (the batch is then retried or dropped)."""

    async def close(self) -> None:
        """Release what ``send`` opened; a later ``send`` may open it again."""


class BatchProcessor:
    """Queues entries and delivers them in batches to ``sink`` from a background task."""

    def __init__(
        self,
        sink: Sink,
        *,
        name: str = "log buffer",
        batch_max_size: int = 1000,
        inactive_timeout: float = 5.0,
        buffer_duration: float = 60.0,
        max_retry_count: int = 0,
        retry_delay: float = 1.0,
        max_pending: int = 10_000,
        max_in_flight: int = 4,
        idle_timeout: float = 300.0,
        close_timeout: float = 5.0,
    ) -> None:
        self.sink = sink
        self.name = name
        self.batch_max_size = batch_max_size
        self.inactive_timeout = inactive_timeout
        self.buffer_duration = buffer_duration
        self.max_retry_count = max_retry_count
        self.retry_delay = retry_delay
        self.max_pending = max_pending
        self.idle_timeout = idle_timeout
        self.close_timeout = close_timeout
        self.sent = 0
        self.dropped = 0
        self.retried = 0
        self._pending: deque[Any] = deque()
        self._first_at = 0.0
        self._last_at = 0.0
        self._wake = asyncio.Event()
        self._closing = asyncio.Event()
        self._slots = asyncio.Semaphore(max_in_flight)
        self._collector: asyncio.Task[None] | None = None
        self._deliveries: set[asyncio.Task[None]] = set()
        self._overflowing = False
        self._closed = False

    @property
    def pending(self) -> int:
        """Entries waiting for a batch."""
        return len(self._pending)

    def push(self, entry: Any) -> bool:
        """Queue ``entry`` (from within the event loop); False when it was dropped."""
        if self._closed or len(self._pending) >= self.max_pending:
            self.dropped += 1
            if not self._overflowing:
                self._overflowing = True
                log.warning("Batch Processor[%s] is full, dropping entries", self.name)
            return False
        self._overflowing = False
        now = time.monotonic()
        if not self._pending:
            self._first_at = now
        self._last_at = now
        self._pending.append(entry)
        if self._collector is None:
            self._collector = asyncio.get_running_loop().create_task(self._collect())
        elif len(self._pending) == 1 or len(self._pending) >= self.batch_max_size:
            self._wake.set()
        return True

    async def _wait(self, seconds: float) -> None:
        """Sleep up to ``seconds``, or less when ``push`` wakes the collector."""
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._wake.wait()

    async def _collect(self) -> None:
        try:
            while True:
                if not self._pending:
                    await self._wait(self.idle_timeout)
                    if not self._pending and not self._deliveries:
                        break
                    continue
                while len(self._pending) < self.batch_max_size:
                    deadline = min(
                        self._last_at + self.inactive_timeout,
                        self._first_at + self.buffer_duration,
                    )
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    await self._wait(remaining)
                await self._slots.acquire()
                self._start(self._take())
        finally:
            self._collector = None
        # Idle: release the sink's sockets or file until entries come again.
        await self._close_sink()

    def _take(self) -> list[Any]:
        count = min(len(self._pending), self.batch_max_size)
        batch = [self._pending.popleft() for _ in range(count)]
        if self._pending:
            self._first_at = time.monotonic()
        return batch

    def _start(self, batch: list[Any]) -> None:
        task = asyncio.get_running_loop().create_task(self._deliver(batch))
        self._deliveries.add(task)
        task.add_done_callback(self._deliveries.discard)

    def _delay(self, attempt: int) -> float:
        delay: float = self.retry_delay * 2.0 ** (attempt - 1)
        return min(delay, MAX_RETRY_DELAY)

    async def _deliver(self, batch: list[Any]) -> None:
        """Send one batch, retrying it; holds one delivery slot until done."""
        attempt = 0
        try:
            while True:
                try:
                    await self.sink.send(batch)
                except asyncio.CancelledError:
                    self.dropped += len(batch)
                    raise
                except Exception as exc:
                    if attempt >= self.max_retry_count or self._closed:
                        self.dropped += len(batch)
                        log.error(
                            "Batch Processor[%s] failed to process entries, dropping %d after "
                            "%d retries: %s",
                            self.name,
                            len(batch),
                            attempt,
                            exc,
                        )
                        return
                    attempt += 1
                    self.retried += 1
                    log.warning("Batch Processor[%s] failed to process entries: %s", self.name, exc)
                    # Closing cuts the wait short: one last attempt, then the batch is dropped.
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(self._delay(attempt)):
                            await self._closing.wait()
                else:
                    self.sent += len(batch)
                    return
        finally:
            self._slots.release()

    async def close(self) -> None:
        """Stop taking entries, flush what is queued (one attempt each, within
        ``close_timeout``), drop what is left and close the sink."""
        if self._closed:
            return
        self._closed = True
        self._closing.set()
        if self._collector is not None:
            await cancel_and_wait(self._collector)
        try:
            async with asyncio.timeout(self.close_timeout):
                while self._pending:
                    await self._slots.acquire()
                    self._start(self._take())
                if self._deliveries:
                    await asyncio.gather(*self._deliveries, return_exceptions=True)
        except TimeoutError:
            log.warning(
                "Batch Processor[%s] could not flush within %ss", self.name, self.close_timeout
            )
        for task in list(self._deliveries):
            task.cancel()
        if self._deliveries:
            await asyncio.gather(*self._deliveries, return_exceptions=True)
        self.dropped += len(self._pending)
        self._pending.clear()
        await self._close_sink()

    async def _close_sink(self) -> None:
        try:
            await self.sink.close()
        except Exception:
            log.exception("Batch Processor[%s] failed to close its sink", self.name)
