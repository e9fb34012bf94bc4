"""ai-rate-limiting: a budget of LLM tokens (or cost) per time window, reserved before each
call and settled with the call's real usage.

Access phase, after ai-proxy / ai-proxy-multi (1040) picked the instance: each budget that
applies reserves the call's estimate (``ai/estimate.py``: the prompt's size, plus the request's
``max_tokens`` / ``max_completion_tokens``, else ``completion_estimate``), atomically, while the
window's count is below its limit; a budget already spent refuses the request before it reaches
the upstream, with ``rejected_code`` (503) and ``{"error_msg": rejected_msg}`` (reservations
the request made in other budgets are given back).  The reservation is settled with what the
call consumed as soon as the relay knows it, before the client sees the end of the answer (so
its next call, on any node, finds the budget as it really is: ``ai/settlement.py``), else in
the log phase (``limit_strategy``: total, prompt or completion tokens, or ``cost``):
its usage, streams included; for a stream that ended without usage (client abort, upstream
drop), the prompt estimate plus the text relayed so far, never 0, and for a call whose client
left while the provider worked on it, the prompt estimate (``tracking.settle_usage``: the
usage the metrics and logs show too); nothing for a call the provider refused or failed;
nothing for a proxy-cache HIT (no provider consumed anything).  On a route without ai-proxy /
ai-proxy-multi, a POST to a chat, completions or embeddings endpoint is an LLM call too (its
answer is accounted: ``ai/tracking.py``), budgeted under the instance name
``openai-compatible`` (APISIX budgets only the AI plugins' calls); any other request is neither
checked nor counted.

So concurrent calls cannot overspend: the overshoot of a window is bounded by one call's
estimate (the last one admitted while the count was below the limit) plus, for calls in
flight, what they used beyond their estimate -- never by their number.  Counters are atomic
with ``policy`` local (one process, or a node's workers through its counter service) and
redis / redis-cluster (one Lua script per reservation, across nodes).

``limit_strategy: cost`` (llmgate's): ``limit`` is in millionths of the price table's currency
(``ai/pricing.py``; ``500000`` = 0.50 USD) and each call is charged its cost; a model without
a price costs nothing.

Budgets: ``limit``/``time_window`` is one budget shared by every instance of the route;
``instances`` give an instance (ai-proxy-multi's ``name``; ``ai-proxy-<provider>`` for
ai-proxy) a budget of its own instead; ``rules`` are budgets keyed by ``$variables`` (a rule
whose variables are all unset does not apply).  Headers (``show_limit_quota_header``):
``X-AI-RateLimit-Limit-<instance>``, ``-Remaining-<instance>`` (what was left when the call was
admitted), ``-Reset-<instance>`` (seconds left), or ``X-AI-<prefix>-RateLimit-Limit``... for
rules (prefix: ``header_prefix`` or the rule's 1-based position).

Counters are per route when the plugin is set on a route or a plugin_config, per consumer when
set on a consumer; they live in ``policy``'s counters (the node's, or Redis).  ai-proxy-multi
(whose access phase runs first) asks ``instance_wait`` to skip an instance whose budget
is spent, and how long until it is not.

Where llmgate differs from APISIX: APISIX checks the budget and charges after the call (so
concurrent calls overspend it); without ``rejected_msg`` the body is still JSON
(``{"error_msg": "token limit exceeded"}``); unreachable counters give 503 (APISIX: 500)
unless ``allow_degradation``.
"""

from __future__ import annotations

import contextlib
import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field, model_validator

from llmgate.ai import tracking
from llmgate.ai.call import PASSIVE_PROVIDER, LlmCall
from llmgate.ai.estimate import Estimate, request_estimate
from llmgate.ai.settlement import settlement
from llmgate.ai.tracking import settle_usage
from llmgate.http.context import StateKey
from llmgate.plugin_api.config import ConfigSection
from llmgate.plugin_api.limiting import (
    BadLimitValue,
    DynamicCount,
    LimitCountRule,
    LimitKey,
    RejectedCode,
    RejectedMsg,
    SentinelPolicyConfig,
    bad_value,
    counters_for,
    dynamic_int,
    rejection,
    resolve_int,
    unavailable,
)
from llmgate.plugin_api.plugin import Plugin
from llmgate.runtime.counters import CountersUnavailable

if TYPE_CHECKING:
    from llmgate.http.context import Reply, RequestContext
    from llmgate.http.variables import Template
    from llmgate.runtime.services import Services

log = logging.getLogger("llmgate.plugins")

HEADERS = ("X-AI-RateLimit-Limit", "X-AI-RateLimit-Remaining", "X-AI-RateLimit-Reset")
DEFAULT_MSG = "token limit exceeded"
MICRO = 10**6  # cost budgets count millionths of the currency; prices give 10^-12 units


class InstanceLimit(ConfigSection):
    """A budget for one ai-proxy-multi instance, by its name."""

    name: str
    limit: DynamicCount
    time_window: DynamicCount


class AIRateLimitingConfig(SentinelPolicyConfig):
    limit: DynamicCount | None = None
    time_window: DynamicCount | None = None
    show_limit_quota_header: bool = True
    limit_strategy: Literal["total_tokens", "prompt_tokens", "completion_tokens", "cost"] = (
        "total_tokens"
    )
    # llmgate's: the completion a request without max_tokens is reserved for.
    completion_estimate: Annotated[int, Field(ge=0, le=10_000_000)] = 256
    instances: Annotated[list[InstanceLimit], Field(min_length=1)] | None = None
    rejected_code: RejectedCode = 503
    rejected_msg: RejectedMsg | None = None
    allow_degradation: bool = False
    rules: list[LimitCountRule] | None = None

    @model_validator(mode="after")
    def _one_form(self) -> AIRateLimitingConfig:
        # APISIX: limit and time_window go together; then oneOf {limit+time_window and/or
        # instances} / {rules}.
        if (self.limit is None) != (self.time_window is None):
            raise ValueError("limit and time_window must be specified together")
        budgets = self.limit is not None or self.instances is not None
        if budgets and self.rules is not None:
            raise ValueError("limit/time_window/instances and rules cannot be specified together")
        if not budgets and self.rules is None:
            raise ValueError("one of limit and time_window, instances or rules is required")
        return self


@dataclass(frozen=True, slots=True)
class _Budget:
    limit: int | Template
    window: int | Template
    counter: str  # the counter's name within the plugin's scope
    key: LimitKey | None = None  # a rule's key: one counter per value
    headers: tuple[str, str, str] | None = None  # None: HEADERS suffixed with the instance


@dataclass(frozen=True, slots=True)
class _Window:
    """A budget as it applies to one request."""

    key: str
    limit: int
    window: int
    headers: tuple[str, str, str]


@dataclass(frozen=True, slots=True)
class _Reservation:
    """What a request reserved, to be settled in the log phase."""

    amount: int
    windows: tuple[_Window, ...]


def _prefixed(prefix: str) -> tuple[str, str, str]:
    """A rule's headers: ``X-AI-<prefix>-RateLimit-Limit``..."""
    limit, remaining, reset = (h.replace("RateLimit-", f"{prefix}-RateLimit-", 1) for h in HEADERS)
    return limit, remaining, reset


def _suffixed(instance: str) -> tuple[str, str, str]:
    """An instance's headers: ``X-AI-RateLimit-Limit-<instance>``..."""
    limit, remaining, reset = (f"{h}-{instance}" for h in HEADERS)
    return limit, remaining, reset


def instance_of(call: LlmCall) -> str:
    """The instance name budgets and headers use: ai-proxy-multi's, ``ai-proxy-<provider>``,
    or ``openai-compatible`` for a plain route's call."""
    if call.instance:
        return call.instance
    if call.provider == PASSIVE_PROVIDER:
        return "openai-compatible"
    return f"ai-proxy-{call.provider or 'unknown'}"


class AIRateLimiting(Plugin[AIRateLimitingConfig]):
    name = "ai-rate-limiting"
    priority = 1030
    Config = AIRateLimitingConfig
    secret_fields = ("redis_password", "sentinel_password")

    def __init__(self, config: AIRateLimitingConfig, services: Services, owner: str = "") -> None:
        super().__init__(config, services, owner)
        self.counters = counters_for(config, services)
        self.prefix = f"{self.name}|{owner}|"
        # A consumer's budget follows the consumer across routes; any other is the route's.
        self.per_route = not owner.startswith("consumer/")
        self.strategy = config.limit_strategy
        # One reservation per plugin instance (a route's and a consumer's may both apply).
        self._state_key: StateKey[_Reservation] = StateKey("ai-rate-limiting.reserved")
        self.shared: _Budget | None = None
        if config.limit is not None and config.time_window is not None:
            self.shared = _Budget(
                dynamic_int(config.limit), dynamic_int(config.time_window), "#global"
            )
        self.instances = {
            item.name: _Budget(dynamic_int(item.limit), dynamic_int(item.time_window), item.name)
            for item in config.instances or ()
        }
        self.rules = tuple(
            _Budget(
                dynamic_int(rule.count),
                dynamic_int(rule.time_window),
                f"rule{i}",
                LimitKey.compile(rule.key, "var_combination"),
                _prefixed(rule.header_prefix or str(i)),
            )
            for i, rule in enumerate(config.rules or (), start=1)
        )

    async def access(self, ctx: RequestContext) -> Reply | None:
        config = self.config
        # Without an AI plugin, a POST to an OpenAI-style endpoint (the seed blog's route) is
        # an LLM call too: its answer is accounted (``tracking.passive_tracker``).
        call = LlmCall.find(ctx) or tracking.expect_passive_call(ctx)
        if call is None:
            return None
        outbound = getattr(ctx, "outbound", None)
        estimate = request_estimate(
            outbound.body if outbound is not None else None,
            config.completion_estimate,
            call.protocol,
        )
        amount = self._amount(ctx, call, estimate)
        reserved: list[_Window] = []
        try:
            for window in self._windows(ctx, instance_of(call)):
                admitted, count, left = await self.counters.reserve(
                    window.key, window.window, amount, window.limit
                )
                used = count - amount if admitted else count
                if config.show_limit_quota_header:
                    limit_h, remaining_h, reset_h = window.headers
                    ctx.add_response_header(limit_h, str(window.limit))
                    ctx.add_response_header(remaining_h, str(max(window.limit - used, 0)))
                    ctx.add_response_header(reset_h, str(math.ceil(left)))
                if not admitted:
                    await self._give_back(reserved, amount)
                    return rejection(
                        config.rejected_code, config.rejected_msg, DEFAULT_MSG, retry_after=left
                    )
                reserved.append(window)
        except BadLimitValue as exc:
            await self._give_back(reserved, amount)
            return None if config.allow_degradation else bad_value(self.name, exc)
        except CountersUnavailable as exc:
            await self._give_back(reserved, amount)
            return None if config.allow_degradation else unavailable(self.name, self.owner, exc)
        ctx.state[self._state_key] = _Reservation(amount, tuple(reserved))
        # Settled before the client sees the end of the answer (``ai/settlement.py``).
        settlement(ctx, call).add(self._settle)
        return None

    async def log(self, ctx: RequestContext) -> None:
        await self._settle(ctx)  # unless the relay settled it already

    async def _settle(self, ctx: RequestContext) -> None:
        """Charge the call's consumption in place of its reservation, once."""
        reservation: _Reservation | None = ctx.state.pop(self._state_key, None)
        call = LlmCall.find(ctx)
        if reservation is None or call is None:
            return  # not an LLM call, refused, or answered by proxy-cache before the access
        used = self._consumed(ctx, call)
        try:
            final = {w.key: w for w in self._windows(ctx, instance_of(call))}
        except BadLimitValue:
            final = {}
        try:
            for window in reservation.windows:
                # An instance that fell back to another gives its reservation back.
                charge = used if final.pop(window.key, None) is not None else 0
                if charge != reservation.amount:
                    await self.counters.incr(window.key, window.window, charge - reservation.amount)
            for window in final.values():  # the instance that answered, reserved nothing
                if used > 0:
                    await self.counters.incr(window.key, window.window, used)
        except CountersUnavailable as exc:
            owner = self.owner.partition("#")[0]
            log.warning("%s of %s could not count %d: %s", self.name, owner, used, exc)

    def _amount(self, ctx: RequestContext, call: LlmCall, estimate: Estimate) -> int:
        """What ``estimate`` counts for in this plugin's budgets."""
        if self.strategy == "cost":
            rate = self.services.prices.rate(call.provider, call.request_model)
            if rate is None:
                return 0
            return -(-rate.cost(estimate.prompt, estimate.completion, 0) // MICRO)
        if self.strategy == "prompt_tokens":
            return estimate.prompt
        if self.strategy == "completion_tokens":
            return estimate.completion
        return estimate.total

    def _consumed(self, ctx: RequestContext, call: LlmCall) -> int:
        """What the call consumed, in this plugin's budget units."""
        if call.cache_hit:
            return 0
        # A stream that ended before its usage, a call its client left waiting: the estimate
        # of what was sent and relayed, the one the metrics, usage records and logs show
        # (``tracking.settle_usage``); nothing for a call the provider did not answer.
        settle_usage(ctx)
        usage = call.consumed
        if usage is None:
            return 0
        if self.strategy == "cost":
            cost = self.services.prices.cost(call)
            return 0 if cost is None else -(-cost // MICRO)
        return usage.get(self.strategy)

    async def _give_back(self, reserved: list[_Window], amount: int) -> None:
        for window in reserved:
            # Unreachable counters: the reservation ends with its window.
            with contextlib.suppress(CountersUnavailable):
                await self.counters.incr(window.key, window.window, -amount)

    async def instance_wait(self, ctx: RequestContext, instance: str) -> float:
        """0 when ``instance`` has tokens left in its own or the shared budget (rules do not
        depend on the instance, so they never make one unavailable), else the seconds until
        that budget's window resets.  When the counters cannot answer, the instance counts as
        available."""
        budget = self.instances.get(instance, self.shared)
        if budget is None:
            return 0.0
        try:
            window = self._window(ctx, budget, instance)
            used, left = await self.counters.peek(window.key, window.window)
        except (BadLimitValue, CountersUnavailable):
            return 0.0
        return 0.0 if used < window.limit else max(left, 1e-3)

    def _windows(self, ctx: RequestContext, instance: str) -> list[_Window]:
        if self.rules:
            windows = []
            for rule in self.rules:
                assert rule.key is not None
                value = rule.key.resolve(ctx)
                if value is not None:
                    windows.append(self._window(ctx, rule, value))
            return windows
        budget = self.instances.get(instance, self.shared)
        return [] if budget is None else [self._window(ctx, budget, instance)]

    def _window(self, ctx: RequestContext, budget: _Budget, suffix: str) -> _Window:
        """``suffix``: the instance name (in the headers), or a rule key's value (in the
        counter's name)."""
        scope = f"{self.prefix}{ctx.route.id}|" if self.per_route else self.prefix
        if budget.key is None:
            key = scope + budget.counter
            headers = budget.headers or _suffixed(suffix)
        else:
            key = f"{scope}{budget.counter}|{suffix}"
            assert budget.headers is not None
            headers = budget.headers
        return _Window(
            key,
            resolve_int(ctx, budget.limit, "limit"),
            resolve_int(ctx, budget.window, "time_window"),
            headers,
        )
