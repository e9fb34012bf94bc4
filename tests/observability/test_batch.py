"""The batch processor: batching triggers, retries, drops, close and idle behaviour."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from llmgate.observability.batch import MAX_RETRY_DELAY, BatchProcessor


class Sink:
    """Records batches; fails the first ``failures`` sends (all when negative); ``gate`` holds
    each send until it is set."""

    def __init__(self, failures: int = 0, gate: asyncio.Event | None = None) -> None:
        self.batches: list[list[Any]] = []
        self.attempts = 0
        self.failures = failures
        self.gate = gate
        self.closed = 0
        self.arrived = asyncio.Event()

    async def send(self, entries: list[Any]) -> None:
        self.attempts += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.failures < 0 or self.attempts <= self.failures:
            raise ConnectionError("collector down")
        self.batches.append(list(entries))
        self.arrived.set()

    async def close(self) -> None:
        self.closed += 1


async def until(predicate: Any, seconds: float = 2.0) -> None:
    async with asyncio.timeout(seconds):
        while not predicate():  # noqa: ASYNC110 (polls what another task changes)
            await asyncio.sleep(0.005)


async def test_full_batch_is_sent_at_once() -> None:
    sink = Sink()
    processor = BatchProcessor(sink, batch_max_size=3, inactive_timeout=60)
    for i in range(7):
        assert processor.push(i)
    await until(lambda: len(sink.batches) == 2)
    assert sink.batches == [[0, 1, 2], [3, 4, 5]]
    assert processor.pending == 1
    assert processor.sent == 6
    await processor.close()
    assert sink.batches[-1] == [6]
    assert (processor.sent, processor.dropped, processor.retried) == (7, 0, 0)
    assert sink.closed == 1


async def test_batch_of_one_is_sent_per_entry() -> None:
    sink = Sink()
    processor = BatchProcessor(sink, batch_max_size=1, inactive_timeout=60)
    processor.push("a")
    processor.push("b")
    await until(lambda: processor.sent == 2)
    assert sorted(sink.batches) == [["a"], ["b"]]
    await processor.close()


async def test_inactive_timeout_sends_a_partial_batch() -> None:
    sink = Sink()
    processor = BatchProcessor(sink, batch_max_size=100, inactive_timeout=0.05)
    started = time.monotonic()
    processor.push(1)
    processor.push(2)
    await asyncio.wait_for(sink.arrived.wait(), 2)
    assert time.monotonic() - started >= 0.05
    assert sink.batches == [[1, 2]]
    await processor.close()


async def test_buffer_duration_caps_a_busy_batch() -> None:
    sink = Sink()
    processor = BatchProcessor(sink, batch_max_size=1000, inactive_timeout=0.2, buffer_duration=0.1)
    started = time.monotonic()
    while not sink.batches:
        # An entry every 20 ms: never inactive for 0.2 s, so only buffer_duration sends.
        processor.push(time.monotonic())
        await asyncio.sleep(0.02)
        assert time.monotonic() - started < 1.0
    assert 0.1 <= time.monotonic() - started < 0.2
    assert len(sink.batches[0]) >= 3
    await processor.close()


async def test_failed_batch_is_retried_then_sent() -> None:
    sink = Sink(failures=2)
    processor = BatchProcessor(
        sink, batch_max_size=2, max_retry_count=2, retry_delay=0.01, inactive_timeout=60
    )
    processor.push("a")
    processor.push("b")
    await until(lambda: processor.sent == 2)
    assert sink.batches == [["a", "b"]]
    assert (processor.retried, processor.dropped, sink.attempts) == (2, 0, 3)
    await processor.close()


async def test_batch_is_dropped_after_max_retry_count() -> None:
    sink = Sink(failures=-1)
    processor = BatchProcessor(
        sink, batch_max_size=2, max_retry_count=3, retry_delay=0, inactive_timeout=60
    )
    processor.push("a")
    processor.push("b")
    await until(lambda: processor.dropped == 2)
    assert (processor.sent, processor.retried, sink.attempts) == (0, 3, 4)
    await processor.close()


def test_retry_delay_doubles_up_to_a_cap() -> None:
    processor = BatchProcessor(Sink(), retry_delay=2)
    assert [processor._delay(n) for n in (1, 2, 3, 4)] == [2, 4, 8, 16]
    assert processor._delay(30) == MAX_RETRY_DELAY


async def test_full_queue_drops_and_counts_without_blocking() -> None:
    gate = asyncio.Event()
    sink = Sink(gate=gate)
    processor = BatchProcessor(sink, batch_max_size=1, max_pending=3, max_in_flight=1)
    processor.push(0)
    await until(lambda: sink.attempts == 1)  # the only slot is busy on entry 0
    started = time.perf_counter()
    accepted = [processor.push(i) for i in range(1, 11)]
    assert time.perf_counter() - started < 0.01
    assert accepted == [True] * 3 + [False] * 7
    assert processor.dropped == 7
    gate.set()
    await until(lambda: processor.sent == 4)
    assert [batch[0] for batch in sink.batches] == [0, 1, 2, 3]
    await processor.close()


async def test_close_flushes_pending_entries() -> None:
    sink = Sink()
    processor = BatchProcessor(sink, batch_max_size=100, inactive_timeout=60)
    for i in range(5):
        processor.push(i)
    await processor.close()
    assert sink.batches == [[0, 1, 2, 3, 4]]
    assert processor.sent == 5
    assert not processor.push(5)
    assert processor.dropped == 1


async def test_close_does_not_wait_out_retry_delays() -> None:
    sink = Sink(failures=-1)
    processor = BatchProcessor(
        sink, batch_max_size=1, max_retry_count=5, retry_delay=30, close_timeout=5
    )
    processor.push("x")
    await until(lambda: processor.retried == 1)
    started = time.monotonic()
    await processor.close()
    assert time.monotonic() - started < 0.5
    assert processor.dropped == 1
    assert sink.attempts == 2  # one last attempt when closing


async def test_close_gives_up_on_a_stuck_sink() -> None:
    sink = Sink(gate=asyncio.Event())  # never opens
    processor = BatchProcessor(sink, batch_max_size=1, close_timeout=0.05)
    processor.push("x")
    processor.push("y")
    await until(lambda: sink.attempts == 2)
    await processor.close()
    assert processor.dropped == 2
    assert sink.closed == 1


async def test_idle_processor_closes_its_sink_and_restarts() -> None:
    sink = Sink()
    processor = BatchProcessor(sink, batch_max_size=1, idle_timeout=0.05)
    processor.push(1)
    await until(lambda: sink.closed == 1)
    processor.push(2)
    await until(lambda: processor.sent == 2)
    assert sink.batches == [[1], [2]]
    await processor.close()


@pytest.mark.parametrize("size", [1, 5])
async def test_order_is_kept_with_one_delivery_at_a_time(size: int) -> None:
    sink = Sink()
    processor = BatchProcessor(sink, batch_max_size=size, inactive_timeout=0, max_in_flight=1)
    for i in range(23):
        processor.push(i)
        if i % 4 == 0:
            await asyncio.sleep(0)
    await until(lambda: processor.sent == 23)
    assert [entry for batch in sink.batches for entry in batch] == list(range(23))
    await processor.close()
