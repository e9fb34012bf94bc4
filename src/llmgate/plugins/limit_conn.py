"""limit-conn: a cap on concurrent requests per key, ``burst`` more delayed.

A request is counted in the access phase and uncounted in the log phase (which always runs).
Up to ``conn`` run at once; up to ``burst`` more wait ``unit_delay * ((n - 1) // conn)`` seconds
first (nginx's limit_conn); beyond that ``rejected_code`` and ``{"error_msg": rejected_msg}``.
``unit_delay`` starts at ``default_conn_delay`` and, unless ``only_use_default_delay``, moves
halfway towards each finished request's latency.  ``rules`` apply several limits at once; a rule
whose key's variables are all unset, or whose conn/burst do not resolve, does not apply (as in
APISIX).  Keys and error replies: see ``plugin_api/limiting.py``.

A slot belongs to the process that holds it and heals when that process dies without
releasing it (SIGKILL, a lost node): at once with ``local`` counters, within
``min(key_ttl, 5)`` seconds with Redis (a lease the process renews while it lives).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field, model_validator

from llmgate.http.context import StateKey
from llmgate.http.variables import Template
from llmgate.plugin_api.config import ConfigSection
from llmgate.plugin_api.limiting import (
    BadLimitValue,
    DynamicCount,
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
    var_or_numeral,
)
from llmgate.plugin_api.plugin import Plugin
from llmgate.runtime.counters import CountersUnavailable

if TYPE_CHECKING:
    from llmgate.http.context import Reply, RequestContext
    from llmgate.runtime.services import Services

MIN_DELAY = 0.001

# How many connections over ``conn`` are delayed rather than rejected; may be 0.
DynamicBurst = Annotated[int, Field(ge=0)] | Annotated[str, var_or_numeral(0)]


class LimitConnRule(ConfigSection):
    """One of several limits applied at once, each with its own key."""

    conn: DynamicCount
    burst: DynamicBurst
    key: str


class LimitConnConfig(RedisPolicyConfig):
    conn: DynamicCount | None = None
    burst: DynamicBurst | None = None
    default_conn_delay: Annotated[float, Field(gt=0)] | None = None
    only_use_default_delay: bool = False
    key: str | None = None
    key_type: Literal["var", "var_combination"] = "var"
    rejected_code: RejectedCode = 503
    rejected_msg: RejectedMsg | None = None
    allow_degradation: bool = False
    rules: list[LimitConnRule] | None = None
    # Redis policies: seconds a process's slots outlive it (capped by the lease, 5 s: the slots
    # of a process that died stop counting then) and the keys their last update.  ``local``:
    # a dead worker's slots are freed at once (the counter service sees its connection end).
    key_ttl: int = 3600

    @model_validator(mode="after")
    def _one_form(self) -> LimitConnConfig:
        # APISIX: oneOf {conn, burst, default_conn_delay, key} / {default_conn_delay, rules}.
        if self.default_conn_delay is None:
            raise ValueError('property "default_conn_delay" is required')
        single = self.conn is not None and self.burst is not None and self.key is not None
        if single and self.rules is not None:
            raise ValueError("conn/burst/key and rules cannot be specified at the same time")
        if not single and self.rules is None:
            raise ValueError("conn, burst and key are required unless rules is set")
        return self


@dataclass(frozen=True, slots=True)
class _Rule:
    conn: int | Template
    burst: int | Template
    key: LimitKey
    optional: bool  # a rules entry: skipped when it does not resolve
    counter: str  # the rule's own counters: "" for the plain config, "<n>|" for rules[n-1]


@dataclass(slots=True)
class _Held:
    """What one request holds, released in the log phase."""

    keys: list[str]
    delay: float = 0.0


class LimitConn(Plugin[LimitConnConfig]):
    name = "limit-conn"
    priority = 1003
    Config = LimitConnConfig
    secret_fields = ("redis_password", "sentinel_password")

    def __init__(self, config: LimitConnConfig, services: Services, owner: str = "") -> None:
        super().__init__(config, services, owner)
        self.counters = counters_for(config, services)
        if config.rules is None:
            assert config.conn is not None and config.burst is not None and config.key
            rule = _Rule(
                dynamic_int(config.conn),
                dynamic_int(config.burst),
                LimitKey.compile(config.key, config.key_type),
                optional=False,
                counter="",
            )
            self.rules: tuple[_Rule, ...] = (rule,)
        else:
            self.rules = tuple(
                _Rule(
                    dynamic_int(r.conn),
                    dynamic_int(r.burst),
                    LimitKey.compile(r.key, "var_combination"),
                    optional=True,
                    # Two rules' keys may resolve alike: each still holds its own slot
                    # (APISIX shares one counter, so one request took two slots of it).
                    counter=f"{i}|",
                )
                for i, r in enumerate(config.rules, start=1)
            )
        assert config.default_conn_delay is not None
        self.unit_delay = config.default_conn_delay
        self.prefix = f"{self.name}|{owner}|"
        self.state_key: StateKey[_Held] = StateKey(f"{self.name}|{owner}")

    async def access(self, ctx: RequestContext) -> Reply | None:
        config = self.config
        held = _Held([])
        ctx.state[self.state_key] = held
        for rule in self.rules:
            key = rule.key.resolve(ctx)
            if key is None:
                if rule.optional:
                    continue
                key = ctx.var("remote_addr") or ""
            key = rule.counter + key
            try:
                conn = resolve_int(ctx, rule.conn, "conn")
                burst = resolve_int(ctx, rule.burst, "burst", minimum=0)
                count = await self.counters.acquire(self.prefix + key, conn + burst, config.key_ttl)
            except BadLimitValue as exc:
                if rule.optional or config.allow_degradation:
                    continue
                return bad_value(self.name, exc)
            except CountersUnavailable as exc:
                if config.allow_degradation:
                    continue
                return unavailable(self.name, self.owner, exc)
            if count > conn + burst:
                # When a connection frees is unknown: a second, about one short LLM answer.
                return rejection(
                    config.rejected_code,
                    config.rejected_msg,
                    "too many concurrent requests",
                    retry_after=1,
                )
            held.keys.append(self.prefix + key)
            if count > conn:
                held.delay = max(held.delay, self.unit_delay * ((count - 1) // conn))
        if held.delay >= MIN_DELAY:
            try:
                await asyncio.sleep(held.delay)
            except asyncio.CancelledError:  # the log phase will not run: release now
                await asyncio.shield(self._release(ctx))
                raise
        return None

    async def log(self, ctx: RequestContext) -> None:
        held = await self._release(ctx)
        config = self.config
        if held is not None and held.keys and not config.only_use_default_delay:
            latency = time.perf_counter() - ctx.started - held.delay
            self.unit_delay = (max(latency, 0.0) + self.unit_delay) / 2

    async def _release(self, ctx: RequestContext) -> _Held | None:
        held: _Held | None = ctx.state.pop(self.state_key, None)
        for key in held.keys if held is not None else ():
            with contextlib.suppress(CountersUnavailable):  # its lease ends by itself
                await self.counters.release(key)
        return held
