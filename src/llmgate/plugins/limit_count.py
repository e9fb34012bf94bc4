"""limit-count: a fixed number of requests per time window, per key.

Each request adds one to its key's window; past ``count`` it gets ``rejected_code`` and
``{"error_msg": rejected_msg}``.  ``X-RateLimit-Limit``, ``-Remaining`` and ``-Reset`` (seconds
left, rounded up) are sent on passes and on rejections (then ``Remaining: 0``) unless
``show_limit_quota_header`` is false.  ``group`` shares one counter between every route naming
it; ``rules`` count several windows at once, each rule's headers prefixed
(``X-<prefix>-RateLimit-Limit``, the prefix defaulting to the rule's 1-based position).

``window_type: sliding`` weighs the previous clock-aligned window's count by how much of it the
sliding window still covers, and counts only accepted requests (APISIX's algorithm).

Where APISIX differs: a rule key without any ``$variable`` always applies (APISIX never applies
it), and no applicable rule lets the request through (APISIX: 500).  See
``plugin_api/limiting.py`` for keys and error replies.

``RedisPolicyConfig`` (APISIX's ``utils/redis-schema``), shared with the other limiters whose
counters may live in Redis (limit-req, limit-conn and ai-rate-limiting), is in
``plugin_api/limiting.py``, with ``SentinelPolicyConfig``, which adds ``redis-sentinel`` (APISIX
has it for limit-count and ai-rate-limiting only).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from multidict import istr
from pydantic import model_validator

from llmgate.http.variables import Template
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
from llmgate.runtime.counters import CountersUnavailable, LocalCounters

if TYPE_CHECKING:
    from llmgate.http.context import Reply, RequestContext
    from llmgate.runtime.services import Services

# APISIX's sync_interval default: every request is counted in Redis synchronously.
NO_DELAYED_SYNC = -1.0


class LimitCountConfig(SentinelPolicyConfig):
    count: DynamicCount | None = None
    time_window: DynamicCount | None = None
    window_type: Literal["fixed", "sliding"] = "fixed"
    rules: list[LimitCountRule] | None = None
    group: str | None = None
    key: str = "remote_addr"
    key_type: Literal["var", "var_combination", "constant"] = "var"
    rejected_code: RejectedCode = 503
    rejected_msg: RejectedMsg | None = None
    allow_degradation: bool = False
    show_limit_quota_header: bool = True
    sync_interval: float = NO_DELAYED_SYNC

    @model_validator(mode="after")
    def _check(self) -> LimitCountConfig:
        if self.rules is not None:
            if self.count is not None or self.time_window is not None:
                raise ValueError("count/time_window and rules cannot be specified at the same time")
            if self.group is not None:
                raise ValueError("group and rules cannot be specified at the same time")
            seen: set[str] = set()
            for rule in self.rules:
                if rule.key in seen:
                    raise ValueError(f"duplicate key '{rule.key}' in rules")
                seen.add(rule.key)
        elif self.count is None or self.time_window is None:
            raise ValueError("count and time_window are required unless rules is set")

        if self.policy != "local" and self.sync_interval != NO_DELAYED_SYNC:
            if self.sync_interval < 0.1:
                raise ValueError("sync_interval should not be smaller than 0.1")
            if isinstance(self.time_window, int) and self.sync_interval >= self.time_window:
                raise ValueError("sync_interval should be smaller than time_window")
        return self


# (``istr``: multidict takes them as already case-folded.)
HEADERS = (istr("X-RateLimit-Limit"), istr("X-RateLimit-Remaining"), istr("X-RateLimit-Reset"))


@dataclass(frozen=True, slots=True)
class _Rule:
    count: int | Template
    window: int | Template
    key: LimitKey
    headers: tuple[str, str, str]  # limit, remaining, reset
    optional: bool  # a rules entry: skipped when its key's variables are all unset
    counter: str  # the rule's own counters: "" for the plain config, "<n>|" for rules[n-1]
    fixed: str | None = None  # the whole counter key, when it is the same for every request
    count_text: str | None = None  # ``count`` as its header shows it, when it is a number

    def compiled(self, prefix: str) -> _Rule:
        """This rule with what does not depend on the request worked out once."""
        constant = self.key.constant
        fixed = None if constant is None else prefix + self.counter + constant
        count_text = str(self.count) if isinstance(self.count, int) else None
        return dataclasses.replace(self, fixed=fixed, count_text=count_text)


def _prefixed(prefix: str) -> tuple[str, str, str]:
    limit, remaining, reset = (
        istr(h.replace("RateLimit-", f"{prefix}-RateLimit-", 1)) for h in HEADERS
    )
    return limit, remaining, reset


class LimitCount(Plugin[LimitCountConfig]):
    name = "limit-count"
    priority = 1002
    Config = LimitCountConfig
    secret_fields = ("redis_password", "sentinel_password")

    def __init__(self, config: LimitCountConfig, services: Services, owner: str = "") -> None:
        super().__init__(config, services, owner)
        self.counters = counters_for(config, services)
        # Counted in this process: its synchronous increment, no coroutine to await.
        self.local = self.counters if type(self.counters) is LocalCounters else None
        # A group's counters are the group's, whichever route counts (APISIX: group .. key).
        label = f"group/{config.group}" if config.group is not None else owner
        self.prefix = f"{self.name}|{label}|"
        if config.rules is None:
            assert config.count is not None and config.time_window is not None
            rule = _Rule(
                dynamic_int(config.count),
                dynamic_int(config.time_window),
                LimitKey.compile(config.key, config.key_type),
                HEADERS,
                optional=False,
                counter="",
            )
            self.rules: tuple[_Rule, ...] = (rule.compiled(self.prefix),)
        else:
            self.rules = tuple(
                _Rule(
                    dynamic_int(r.count),
                    dynamic_int(r.time_window),
                    LimitKey.compile(r.key, "var_combination"),
                    _prefixed(r.header_prefix or str(i)),
                    optional=True,
                    # Two rules' keys may resolve alike ($http_a and $http_b both "1"): each
                    # still counts in its own window (APISIX shares one counter).
                    counter=f"{i}|",
                ).compiled(self.prefix)
                for i, r in enumerate(config.rules, start=1)
            )
        self.sliding = config.window_type == "sliding"

    async def access(self, ctx: RequestContext) -> Reply | None:
        config = self.config
        for rule in self.rules:
            counted = rule.fixed
            if counted is None:
                key = rule.key.resolve(ctx)
                if key is None:
                    if rule.optional:
                        continue
                    key = ctx.var("remote_addr") or ""
                counted = self.prefix + rule.counter + key
            count, window = rule.count, rule.window
            try:
                if type(count) is not int:  # (a number as configured: the usual, no call)
                    count = resolve_int(ctx, count, "count")
                if type(window) is not int:
                    window = resolve_int(ctx, window, "time_window")
                if self.sliding:
                    passed, remaining, left = await self.counters.sliding(counted, count, window)
                else:
                    if self.local is not None:
                        used, left = self.local.incr_now(counted, window)
                    else:
                        used, left = await self.counters.incr(counted, window)
                    passed, remaining = used <= count, count - used
            except BadLimitValue as exc:
                if config.allow_degradation:
                    continue
                return bad_value(self.name, exc)
            except CountersUnavailable as exc:
                if config.allow_degradation:
                    continue
                return unavailable(self.name, self.owner, exc)
            if config.show_limit_quota_header:
                limit_h, remaining_h, reset_h = rule.headers
                ctx.add_response_header(limit_h, rule.count_text or str(count))
                ctx.add_response_header(remaining_h, str(max(remaining, 0)))
                ctx.add_response_header(reset_h, str(math.ceil(left)))
            if not passed:
                return rejection(
                    config.rejected_code, config.rejected_msg, "too many requests", retry_after=left
                )
        return None
