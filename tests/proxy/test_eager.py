"""drive: finishing a coroutine whose first step ran by hand, as its task would."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from llmgate.proxy.eager import drive


async def _first_step(coro: Any) -> Any:
    try:
        return coro.send(None)
    except StopIteration:
        pytest.fail("the coroutine finished on its first step")


async def test_a_coroutine_waiting_on_a_future_gets_its_result() -> None:
    future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    seen: list[int] = []

    async def waits() -> None:
        seen.append(await future)
        await asyncio.sleep(0)  # a bare yield, then another future
        await asyncio.sleep(0.01)
        seen.append(2)

    coro = waits()
    waiting = await _first_step(coro)
    assert waiting is future
    asyncio.get_running_loop().call_later(0.01, future.set_result, 1)
    await drive(coro, waiting)
    assert seen == [1, 2]


async def test_an_exception_of_the_awaited_future_reaches_the_coroutine() -> None:
    future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    caught: list[BaseException] = []

    async def waits() -> None:
        try:
            await future
        except KeyError as exc:
            caught.append(exc)
            raise ValueError("after") from exc

    coro = waits()
    waiting = await _first_step(coro)
    future.set_exception(KeyError("boom"))
    with pytest.raises(ValueError, match="after"):
        await drive(coro, waiting)
    assert len(caught) == 1


async def test_cancelling_the_driver_cancels_the_coroutine() -> None:
    future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    cleaned: list[str] = []

    async def waits() -> None:
        try:
            await future
        finally:
            cleaned.append("finally")

    coro = waits()
    waiting = await _first_step(coro)
    task = asyncio.ensure_future(drive(coro, waiting))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cleaned == ["finally"]
