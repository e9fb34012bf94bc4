"""ai-rate-limiting: a budget of LLM tokens per time window, from each response's ``usage``.

Access phase, after ai-proxy / ai-proxy-multi (1040) picked the instance: when the window's
budget is spent (tokens used >= limit), the request is refused before reaching the upstream
with ``rejected_code`` (503) and ``{"error_msg": rejected_msg}``.  Log phase: the response's
real usage (``limit_strategy``: total, prompt or completion tokens; streams included, from
their final usage chunk) is added to the window.  A request that is not an LLM call (no
ai-proxy on the route) is neither checked nor counted, as in APISIX.

Budgets: ``limit``/``time_window`` is one budget shared by every instance of the route;
``instances`` give an instance (ai-proxy-multi's ``name``; ``ai-proxy-<provider>`` for
ai-proxy) a budget of its own instead; ``rules`` are budgets keyed by ``$variables`` (a rule
whose variables are all unset does not apply).  Headers (``show_limit_quota_header``):
``X-AI-RateLimit-Limit-<instance>``, ``-Remaining-<instance>``, ``-Reset-<instance>`` (seconds
left), or ``X-AI-<prefix>-RateLimit-Limit``... for rules (prefix: ``header_prefix`` or the
rule's 1-based position).

Counters are per route when the plugin is set on a route or a plugin_config, per consumer when
set on a consumer; they live in ``policy``'s counters (the node's, or Redis), so they are as
exact across workers and nodes as those are.  ai-proxy-multi (whose access phase runs first)
asks ``instance_available`` to skip an instance whose budget is spent.

Where llmgate differs from APISIX: without ``rejected_msg`` the body is still JSON (``{"error_msg":
"token limit exceeded"}``); unreachable counters give 503 (APISIX: 500) unless
``allow_degradation``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field, model_validator

from llmgate.ai.call import LlmCall
from llmgate.plugin_api.config import ConfigSection
from llmgate.plugin_api.limiting import (
    BadLimitValue,
    DynamicCount,
    LimitCountRule,
    LimitKey,
    RedisPolicyConfig,
    RejectedCode,
    RejectedMsg,
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
    from llmgate.proxy.context import Reply, RequestContext
    from llmgate.proxy.variables import Template
    from llmgate.runtime.services import Services

log = logging.getLogger("llmgate.plugins")

HEADERS = ("X-AI-RateLimit-Limit", "X-AI-RateLimit-Remaining", "X-AI-RateLimit-Reset")
DEFAULT_MSG = "token limit exceeded"
_REFUSED = "ai-rate-limiting.refused"


class InstanceLimit(ConfigSection):
    """A budget for one ai-proxy-multi instance, by its name."""

    name: str
    limit: DynamicCount
    time_window: DynamicCount


class AIRateLimitingConfig(RedisPolicyConfig):
    limit: DynamicCount | None = None
    time_window: DynamicCount | None = None
    show_limit_quota_header: bool = True
    limit_strategy: Literal["total_tokens", "prompt_tokens", "completion_tokens"] = "total_tokens"
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


def _prefixed(prefix: str) -> tuple[str, str, str]:
    """A rule's headers: ``X-AI-<prefix>-RateLimit-Limit``..."""
    limit, remaining, reset = (h.replace("RateLimit-", f"{prefix}-RateLimit-", 1) for h in HEADERS)
    return limit, remaining, reset


def _suffixed(instance: str) -> tuple[str, str, str]:
    """An instance's headers: ``X-AI-RateLimit-Limit-<instance>``..."""
    limit, remaining, reset = (f"{h}-{instance}" for h in HEADERS)
    return limit, remaining, reset


def instance_of(call: LlmCall) -> str:
    """The instance name budgets and headers use: ai-proxy-multi's, or ``ai-proxy-<provider>``."""
    return call.instance or f"ai-proxy-{call.provider or 'unknown'}"


class AIRateLimiting(Plugin):
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
        config: AIRateLimitingConfig = self.config  # type: ignore[assignment]
        call = LlmCall.find(ctx)
        if call is None:
            return None
        try:
            for window in self._windows(ctx, instance_of(call)):
                used, left = await self.counters.peek(window.key, window.window)
                remaining = window.limit - used
                refused = remaining < 1
                if config.show_limit_quota_header:
                    limit_h, remaining_h, reset_h = window.headers
                    ctx.add_response_header(limit_h, str(window.limit))
                    ctx.add_response_header(remaining_h, str(max(remaining, 0)))
                    ctx.add_response_header(reset_h, str(math.ceil(left)))
                if refused:
                    ctx.state[_REFUSED] = True
                    return rejection(
                        config.rejected_code, config.rejected_msg, DEFAULT_MSG, retry_after=left
                    )
        except BadLimitValue as exc:
            return None if config.allow_degradation else bad_value(self.name, exc)
        except CountersUnavailable as exc:
            return None if config.allow_degradation else unavailable(self.name, self.owner, exc)
        return None

    async def log(self, ctx: RequestContext) -> None:
        call = LlmCall.find(ctx)
        if call is None or call.usage is None or ctx.state.get(_REFUSED):
            return
        tokens = call.usage.get(self.strategy)
        if tokens <= 0:
            return
        try:
            for window in self._windows(ctx, instance_of(call)):
                await self.counters.incr(window.key, window.window, tokens)
        except (BadLimitValue, CountersUnavailable) as exc:
            owner = self.owner.partition("#")[0]
            log.warning("%s of %s could not count %d tokens: %s", self.name, owner, tokens, exc)

    async def instance_available(self, ctx: RequestContext, instance: str) -> bool:
        """Whether ``instance`` has tokens left in its own or the shared budget (rules do not
        depend on the instance, so they never make one unavailable).  When the counters cannot
        answer, the instance counts as available."""
        budget = self.instances.get(instance, self.shared)
        if budget is None:
            return True
        try:
            window = self._window(ctx, budget, instance)
            used, _ = await self.counters.peek(window.key, window.window)
        except (BadLimitValue, CountersUnavailable):
            return True
        return used < window.limit

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
