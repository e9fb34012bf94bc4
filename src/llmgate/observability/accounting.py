"""Token accounting for every LLM call, whatever plugins its route has (SPEC §4): the LLM
metrics and the usage reporter, fed from one place.

``LlmAccounting`` is one of ``Services.observers``: the data plane calls ``forwarding(ctx)``
just before it sends a request upstream, and ``observe(ctx)`` once the response is done and the
plugins' log phase has run.  A request that made no LLM call (no ``LlmCall`` on its context)
costs one dict lookup.

What counts: a call whose response carried ``usage``, or that the provider answered below 400
(a stream the client dropped early counts as a request, with the tokens seen).  Refused or
failed calls show in ``http_status``, not here, so client-chosen model names of failing calls
never become label values or usage rows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from llmgate.ai.call import LlmCall
from llmgate.observability.metrics import model_label

if TYPE_CHECKING:
    from llmgate.observability.metrics import Metrics
    from llmgate.observability.usage import UsageReporter
    from llmgate.proxy.context import RequestContext

_ACTIVE = "llm_active"  # ctx.state: the LlmActive of a call counted as active


class LlmAccounting:
    def __init__(self, metrics: Metrics | None, usage: UsageReporter | None) -> None:
        self.metrics = metrics
        self.usage = usage

    def forwarding(self, ctx: RequestContext) -> None:
        call = LlmCall.find(ctx)
        if call is not None and self.metrics is not None:
            ctx.state[_ACTIVE] = self.metrics.llm_started(ctx, call)

    def observe(self, ctx: RequestContext) -> None:
        call = LlmCall.find(ctx)
        if call is None:
            return
        active = ctx.state.pop(_ACTIVE, None)
        if active is not None:
            active.done()
        status = ctx.upstream_status
        served = status is not None and status < 400
        if call.usage is None and not served:
            return
        if self.metrics is not None:
            self.metrics.record_llm(ctx, call, served)
        if self.usage is not None:
            consumer = ctx.consumer.username if ctx.consumer is not None else ""
            self.usage.add(consumer, ctx.route.id, model_label(call.model), call.usage)
