"""``ai/settlement.py``: budgets settled once, as soon as the usage is known, and not cut
short by a client that leaves meanwhile."""

from __future__ import annotations

import asyncio

from llmgate.ai.call import LlmCall
from llmgate.ai.settlement import settlement
from llmgate.ai.usage import Usage
from llmgate.http.context import RequestContext
from tests.http.test_variables import make_ctx


async def test_due_once_the_usage_is_known_and_run_once() -> None:
    ctx = make_ctx()
    call = LlmCall.of(ctx)
    ran: list[Usage | None] = []

    async def step(of: RequestContext) -> None:
        ran.append(LlmCall.of(of).usage)

    waiting = settlement(ctx, call)
    assert settlement(ctx, call) is waiting
    waiting.add(step)
    assert not waiting.due
    call.usage = Usage(3, 4, 7)
    assert waiting.due
    await waiting.run(ctx)
    await waiting.run(ctx)
    assert ran == [Usage(3, 4, 7)]
    assert not waiting.due


async def test_a_cancelled_caller_does_not_cut_it_short() -> None:
    ctx = make_ctx()
    call = LlmCall.of(ctx)
    call.usage = Usage(1, 1, 2)
    started, done = asyncio.Event(), asyncio.Event()

    async def step(of: RequestContext) -> None:
        started.set()
        await asyncio.sleep(0.05)
        done.set()

    waiting = settlement(ctx, call)
    waiting.add(step)
    caller = asyncio.ensure_future(waiting.run(ctx))
    await started.wait()
    caller.cancel()
    await asyncio.wait_for(done.wait(), 1)
    assert caller.cancelled()


async def test_a_failing_step_does_not_stop_the_others() -> None:
    ctx = make_ctx()
    call = LlmCall.of(ctx)
    call.usage = Usage(1, 1, 2)
    ran = []

    async def broken(of: RequestContext) -> None:
        raise RuntimeError("counters broke")

    async def step(of: RequestContext) -> None:
        ran.append(True)

    waiting = settlement(ctx, call)
    waiting.add(broken)
    waiting.add(step)
    await waiting.run(ctx)
    assert ran == [True]
