"""Settling an LLM call's token budgets before its client sees the end of the answer.

A budget reserves a call's estimate in the access phase and charges what the call really
consumed once it is known.  The log phase runs after the response's last byte: a client that
starts its next call as soon as a stream ends (on ``[DONE]`` or on the end of the body) --
on another node sharing the counters, or on this one -- would find the estimate still counted
and could be refused while the budget is far from spent.  So a budget also registers its
settlement here (``settlement(ctx, call).add(step)``, ``step(ctx)`` settling it), and the
relay runs it

- as soon as the call's usage is known: before the chunk that carries it is written;
- at the end of the answer at the latest (``settle_usage``'s estimate when no usage came),
  before the last bytes go out.

Each step runs once (its log phase then finds nothing left to settle); a client that leaves
while it runs does not cut it short (shielded, as the log phase is).  A call whose answer the
client never saw the end of (it left, the upstream broke) is settled by the log phase.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from llmgate.ai.tracking import settle_usage
from llmgate.http.context import StateKey

if TYPE_CHECKING:
    from llmgate.ai.call import LlmCall
    from llmgate.http.context import RequestContext

log = logging.getLogger("llmgate.plugins")

Step = Callable[["RequestContext"], Awaitable[None]]
STATE_KEY: StateKey[Settlement] = StateKey("llm_settlement")
# Settlements running for a handler that was cancelled meanwhile (kept until done).
_running: set[asyncio.Task[None]] = set()


class Settlement:
    """The budgets waiting for one call's usage."""

    __slots__ = ("_steps", "call")

    def __init__(self, call: LlmCall) -> None:
        self.call = call
        self._steps: list[Step] = []

    def add(self, step: Step) -> None:
        self._steps.append(step)

    @property
    def due(self) -> bool:
        """Whether steps wait and the call's usage is known."""
        return bool(self._steps) and self.call.usage is not None

    async def run(self, ctx: RequestContext) -> None:
        """Run the waiting steps (the answer ends: its usage, else its estimate)."""
        if not self._steps:
            return
        settle_usage(ctx)
        steps, self._steps = self._steps, []
        task = asyncio.ensure_future(_run_all(ctx, steps))
        _running.add(task)
        task.add_done_callback(_running.discard)
        await asyncio.shield(task)


async def _run_all(ctx: RequestContext, steps: list[Step]) -> None:
    for step in steps:
        try:
            await step(ctx)
        except Exception:
            log.exception("settling a token budget failed")


def settlement(ctx: RequestContext, call: LlmCall) -> Settlement:
    """The request's settlement for ``call``, created on first use."""
    found = ctx.state.get(STATE_KEY)
    if found is None:
        found = ctx.state[STATE_KEY] = Settlement(call)
    return found
