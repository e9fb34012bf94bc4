from __future__ import annotations

import asyncio

import pytest

from llmgate.tasks import cancel_and_wait


async def test_a_running_task_is_cancelled_and_waited_for() -> None:
    cleaned: list[str] = []

    async def runs() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            await asyncio.sleep(0)  # its clean-up takes a turn of the loop
            cleaned.append("done")

    task = asyncio.create_task(runs())
    await asyncio.sleep(0)
    await cancel_and_wait(task)
    assert task.cancelled()
    assert cleaned == ["done"]


async def test_every_task_is_cancelled_before_the_first_is_waited_for() -> None:
    order: list[str] = []

    async def runs(name: str) -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            order.append(name)
            raise

    tasks = [asyncio.create_task(runs(name)) for name in ("a", "b")]
    await asyncio.sleep(0)
    await cancel_and_wait(*tasks)
    assert all(task.cancelled() for task in tasks)
    assert sorted(order) == ["a", "b"]


async def test_a_finished_task_is_fine_and_a_failed_one_raises_its_error() -> None:
    async def returns() -> int:
        return 1

    async def fails() -> None:
        raise ValueError("boom")

    done = asyncio.create_task(returns())
    failed = asyncio.create_task(fails())
    await asyncio.sleep(0)
    await cancel_and_wait(done)
    with pytest.raises(ValueError, match="boom"):
        await cancel_and_wait(failed)
