"""Token accounting for every LLM call, whatever plugins its route has (SPEC §4): the LLM
metrics and the usage reporter, fed from one place.

``LlmAccounting`` is one of ``Services.observers``: the data plane calls ``forwarding(ctx)``
just before it sends a request upstream, and ``observe(ctx)`` once the response is done and the
plugins' log phase has run.  A request that made no LLM call (no ``LlmCall`` on its context)
costs one dict lookup.

What counts: a call whose response carried ``usage``, or that the provider answered below 400
(a stream the client dropped early counts as a request, with the tokens seen), and an answer
proxy-cache replayed (``cache: hit``: its tokens were served, at no cost).  Refused or failed
calls show in ``http_status``, not here, so client-chosen model names of failing calls never
become label values or usage rows.  Each call's cost comes from the price table
(``ai/pricing.py``).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from llmgate.ai.call import STATE_KEY as LLM_CALL
from llmgate.ai.pricing import call_cost
from llmgate.http.context import StateKey
from llmgate.observability.metric_labels import MAX_MODEL_LABEL
from llmgate.observability.usage_ship import CallRecord

if TYPE_CHECKING:
    from llmgate.http.context import RequestContext
    from llmgate.observability.metric_series import LlmActive
    from llmgate.observability.metrics import Metrics
    from llmgate.observability.usage import UsageReporter

_new_record = tuple.__new__
# The LlmActive of a call counted as active.
_ACTIVE: StateKey[LlmActive] = StateKey("llm_active")


class LlmAccounting:
    def __init__(self, metrics: Metrics | None, usage: UsageReporter | None) -> None:
        self.metrics = metrics
        self.usage = usage

    def forwarding(self, ctx: RequestContext) -> None:
        call = ctx.state.get(LLM_CALL)
        if call is not None and self.metrics is not None:
            ctx.state[_ACTIVE] = self.metrics.llm_started(ctx, call)

    def observe(self, ctx: RequestContext) -> None:
        call = ctx.state.get(LLM_CALL)
        if call is None:
            return
        active = ctx.state.pop(_ACTIVE, None)
        if active is not None:
            active.done()
        status = ctx.upstream_status
        served = (status is not None and status < 400) or call.cache_hit
        if call.usage is None and not served:
            return
        cost = call_cost(ctx, call)
        if self.metrics is not None:
            self.metrics.record_llm(ctx, call, served, cost)
        if self.usage is not None:
            consumer = ctx.consumer.username if ctx.consumer is not None else ""
            model = call.model[:MAX_MODEL_LABEL] if call.model else ""  # model_label, inline
            cache = call.cache or ""
            usage = call.usage
            route = ctx.route.id
            # tuple.__new__: the record without the NamedTuple's __new__ (a Python call of 14
            # arguments, on every LLM answer).
            record = _new_record(
                CallRecord,
                (
                    int(time.time() * 1000),
                    ctx.request_id or "",
                    consumer,
                    route,
                    model,
                    (call.provider or "")[:64],
                    (call.instance or "")[:100],
                    call.request_type,
                    cache,
                    ctx.status or 499,
                    usage.prompt_tokens if usage else 0,
                    usage.completion_tokens if usage else 0,
                    usage.cached_tokens if usage else 0,
                    cost,
                ),
            )
            self.usage.add(consumer, route, model, usage, cost=cost or 0, cache=cache, call=record)
