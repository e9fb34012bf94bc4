"""ai-proxy-multi: balances requests over several LLM instances, with fallback.

Each request goes to one instance, picked in access (see ``llmgate.ai.balancing``: highest
priority first, weighted round-robin or chash within it, instances cooling down after a failure
skipped).  The plugin then sends it itself (``ctx.forwarder``): when the instance fails in a way
``fallback_strategy`` / ``fallback_http_statuses`` name, that answer is dropped, the instance
cools down for a few seconds, and the next instance is tried, within ``max_retries`` and
``retry_on_failure_within_ms``.  The last instance's answer (or error) is what the client gets.

    fallback_strategy                        falls back on
    (unset)                                  as ["http_429", "http_5xx"] (APISIX: nothing)
    "http_429" / "http_5xx"                  that status (5xx: also refused / timed out)
    "instance_health_and_rate_limiting"      refused / timed out; skips rate-limited instances
    ["rate_limiting", "http_429", ...]       each named case
    fallback_http_statuses: [401, ...]       those statuses too
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import ConfigDict, Field, model_validator

from llmgate.ai import forward, tracking
from llmgate.ai.balancing import Cooldowns, InstancePicker, Weighted
from llmgate.ai.models import models_answer, models_target, unique
from llmgate.ai.replies import give_retry_after
from llmgate.ai.target import AiRequest, compile_target
from llmgate.ai.target_config import CallOptions, ProviderTarget
from llmgate.errors import HttpError
from llmgate.http.context import Reply
from llmgate.http.variables import chash_key_reader
from llmgate.plugin_api.config import ConfigSection, UniqueItems
from llmgate.plugin_api.limiting import rejection
from llmgate.plugin_api.plugin import Plugin
from llmgate.plugins.request_id import llm_request_id
from llmgate.proxy.client import UpstreamError
from llmgate.runtime.snapshot import CHAIN
from llmgate.schemas.checks import ActiveCheck, Checks
from llmgate.schemas.upstream import check_chash_key

if TYPE_CHECKING:
    from llmgate.ai.protocols import Protocol
    from llmgate.http.context import RequestContext, ResponseHead, Sent
    from llmgate.runtime.services import Services

log = logging.getLogger("llmgate.ai")

_ERROR_BODY_LOGGED = 2048


class Balancer(ConfigSection):
    algorithm: Literal["chash", "roundrobin"] = "roundrobin"
    hash_on: Literal["vars", "header", "cookie", "consumer", "vars_combinations"] = "vars"
    # What chash hashes: a variable, header or cookie name, per hash_on.
    key: str | None = None


class HealthChecks(ConfigSection):
    """APISIX's upstream active health check (no passive ones for instances, as APISIX):
    probes carry the instance's auth headers and query; an unhealthy instance gets no
    requests until it is healthy again, unless every instance is unhealthy."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    active: ActiveCheck


class AIInstance(ProviderTarget):
    # Unique: it names the instance in the balancer, health checks and ai-rate-limiting.
    name: Annotated[str, Field(min_length=1, max_length=100)]
    # Higher priorities are tried first; weight balances within one priority.
    priority: int = 0
    weight: Annotated[int, Field(ge=0)]
    checks: HealthChecks | None = None
    # llmgate's: this instance's timeout (ms) for each attempt, in place of the plugin's.
    timeout: Annotated[int, Field(ge=1, le=600000)] | None = None


FallbackStrategy = (
    Literal["instance_health_and_rate_limiting", "http_429", "http_5xx"]
    | list[Literal["rate_limiting", "http_429", "http_5xx"]]
)


# Without ``fallback_strategy``: SPEC §4's "fallback on 429/5xx" (APISIX falls back on nothing).
DEFAULT_FALLBACK: FallbackStrategy = ["http_429", "http_5xx"]


class AIProxyMultiConfig(CallOptions):
    balancer: Balancer = Balancer()
    instances: Annotated[list[AIInstance], Field(min_length=1)]
    fallback_strategy: FallbackStrategy | None = None
    # More statuses that move the request to the next instance, e.g. 401 for an expired key.
    fallback_http_statuses: (
        Annotated[list[Annotated[int, Field(ge=400, le=599)]], Field(min_length=1), UniqueItems()]
        | None
    ) = None
    max_retries: Annotated[int, Field(ge=0)] | None = None
    # Fall back only when the failed attempt took less than this; slower failures are returned.
    retry_on_failure_within_ms: Annotated[int, Field(ge=1)] | None = None

    @model_validator(mode="after")
    def _check(self) -> AIProxyMultiConfig:
        seen: dict[str, int] = {}
        for i, instance in enumerate(self.instances, start=1):
            if instance.name in seen:
                raise ValueError(
                    f"duplicate instance name '{instance.name}' at "
                    f"instances[{seen[instance.name]}] and instances[{i}]"
                )
            seen[instance.name] = i
        balancer = self.balancer
        if balancer.algorithm == "chash" and balancer.hash_on != "consumer" and not balancer.key:
            raise ValueError(
                "must configure `balancer.key` when balancer `hash_on` is not consumer"
            )
        if balancer.algorithm == "chash":
            check_chash_key(balancer.hash_on, balancer.key)
        return self


class AIProxyMulti(Plugin[AIProxyMultiConfig]):
    name = "ai-proxy-multi"
    priority = 1041
    Config = AIProxyMultiConfig
    llm_route = True  # OpenAI errors, /models, X-Request-Id (see ai-proxy)
    llm_provider = None  # several; a cache hit is not attributed to one
    secret_fields = (
        "instances.auth.header", "instances.auth.query", "instances.auth.gcp.service_account_json",
        "instances.auth.aws.secret_access_key", "instances.auth.aws.session_token",
    )  # fmt: skip

    def __init__(self, config: AIProxyMultiConfig, services: Services, owner: str = "") -> None:
        super().__init__(config, services, owner)
        conf = self.config
        # The instance's name as APISIX's health checks call it (upstream_status's label).
        kind, _, ident = owner.partition("#")[0].partition("/")
        parent = f"/apisix/{kind}s/{ident}"
        self.targets = tuple(
            compile_target(
                i.name,
                i,
                conf,
                services.pools,
                f"{parent}#plugins['ai-proxy-multi'].instances[{n}]",
                Checks(active=i.checks.active) if i.checks is not None else None,
                i.timeout,
            )
            for n, i in enumerate(conf.instances)
        )
        # GET …/models: each instance's model, else its name.
        self.models = unique(
            ((i.options.model if i.options and i.options.model else i.name), i.provider)
            for i in conf.instances
        )
        self.refused = frozenset(i for i, t in enumerate(self.targets) if t.refusal is not None)
        # Cool-downs outlive snapshots, and survive edits of this route's config.
        key = f"ai-proxy-multi:{owner.partition('#')[0]}"
        cooldowns = services.shared.get_or_make(key, Cooldowns, Cooldowns)
        self.picker = InstancePicker(
            [Weighted(i.name, i.weight, i.priority) for i in conf.instances],
            conf.balancer.algorithm,
            cooldowns,
            self._healthy,
        )
        self.cooldowns: Cooldowns = cooldowns
        strategy = conf.fallback_strategy
        if strategy is None:
            strategy = DEFAULT_FALLBACK
        names = {strategy} if isinstance(strategy, str) else set(strategy)
        statuses = set(conf.fallback_http_statuses or ())
        if "http_429" in names:
            statuses.add(429)
        if "http_5xx" in names:
            statuses.update(range(500, 600))
        self.fallback_statuses = frozenset(statuses)
        self.fallback_on_error = bool(names & {"http_5xx", "instance_health_and_rate_limiting"})
        self.check_rate_limits = bool(
            names & {"rate_limiting", "instance_health_and_rate_limiting"}
        )
        self.hash_key = (
            chash_key_reader(conf.balancer.hash_on, conf.balancer.key)
            if conf.balancer.algorithm == "chash"
            else None
        )

    def _healthy(self, index: int) -> bool:
        pool = self.targets[index].pool
        return pool is None or pool.healthy(0)

    async def access(self, ctx: RequestContext) -> Reply | None:
        if not tracking.claim(ctx, self):
            return None
        listing, model = models_target(ctx.inbound.method, ctx.inbound.path)
        if listing:
            return Reply.json(*models_answer(self.models, model))
        refused = forward.wrong_method(ctx)
        if refused is not None:
            return refused
        request = await forward.read_request(ctx, self.config.max_req_body_size)
        if len(self.refused) == len(self.targets):
            return Reply.error(501, self.targets[0].refusal or "")
        # Instances that cannot serve this protocol are never tried.
        unable = {i for i, t in enumerate(self.targets) if not t.serves(request.protocol)}
        if len(unable | self.refused) == len(self.targets):
            raise self.targets[min(unable)].unsupported(request.protocol)
        skipped = set(self.refused | unable)
        index, wait = await self._pick(ctx, set(skipped))
        if index is None:
            if wait is not None:  # the budgets excluded them: a limiter's rejection
                return rejection(503, None, "all servers tried", retry_after=wait)
            return Reply.error(503, "all servers tried")
        self.targets[index].apply(ctx, request)

        async def forwarder(ctx: RequestContext) -> Sent:
            return await self._forward(ctx, request, index, skipped)

        ctx.forwarder = forwarder
        return None

    def header_filter(self, ctx: RequestContext, head: ResponseHead) -> None:
        llm_request_id(ctx, head)
        give_retry_after(head)
        tracking.track_head(ctx, self, head, self._hides_usage)

    def body_filter(self, ctx: RequestContext, chunk: bytes, eof: bool) -> bytes:
        return tracking.track_chunk(ctx, self, chunk, eof)

    def _hides_usage(self, body: dict[str, Any], protocol: Protocol) -> bool:
        return any(target.hides_usage(body, protocol) for target in self.targets)

    async def _pick(
        self, ctx: RequestContext, exclude: set[int]
    ) -> tuple[int | None, float | None]:
        """The instance to try next; when there is none and token budgets excluded some,
        also the seconds until the first of those budgets resets."""
        key = self.hash_key(ctx) if self.hash_key is not None else None
        soonest: float | None = None
        while (index := self.picker.pick(key, exclude)) is not None:
            name = self.targets[index].name
            wait = await _budget_wait(ctx, name) if self.check_rate_limits else 0.0
            if wait <= 0:
                return index, None
            log.warning("ai instance %s is rate limited, trying another one", name)
            soonest = wait if soonest is None else min(soonest, wait)
            exclude.add(index)
        return None, soonest

    async def _forward(
        self, ctx: RequestContext, request: AiRequest, index: int, tried: set[int]
    ) -> Sent:
        """Send to instance ``index``; while its failure calls for a fallback, to the next."""
        retries = 0
        while True:
            name = self.targets[index].name
            began = time.monotonic()
            sent, error = await _attempt(ctx)
            falls_back = (
                self.fallback_on_error if sent is None else sent[0].status in self.fallback_statuses
            )
            if not falls_back:
                if sent is not None and sent[0].status < 500:
                    self.cooldowns.succeeded(name)
                return _result(sent, error)
            self.cooldowns.failed(name)
            tried.add(index)
            try:
                following = (
                    (await self._pick(ctx, tried))[0] if self._may_retry(retries, began) else None
                )
            except BaseException:  # cancelled (client gone) while asking ai-rate-limiting
                if sent is not None:
                    _release(sent)
                raise
            if following is None:
                return _result(sent, error)
            detail = await _discard(sent) if sent is not None else _describe(error)
            log.warning(
                "ai instance %s failed (%s), falling back to %s",
                name, detail, self.targets[following].name,
            )  # fmt: skip
            index, retries = following, retries + 1
            self.targets[index].apply(ctx, request)

    def _may_retry(self, retries: int, began: float) -> bool:
        conf = self.config
        if conf.max_retries is not None and retries >= conf.max_retries:
            return False
        limit = conf.retry_on_failure_within_ms
        return limit is None or (time.monotonic() - began) * 1000 <= limit


async def _attempt(ctx: RequestContext) -> tuple[Sent | None, HttpError | None]:
    try:
        return await forward.send(ctx), None
    except HttpError as error:  # refused, timed out: 502 / 504
        return None, error


def _describe(error: HttpError | None) -> str:
    return f"{error.status} {error.body.get('error_msg')}" if error is not None else ""


def _result(sent: Sent | None, error: HttpError | None) -> Sent:
    if sent is None:
        assert error is not None
        raise error
    return sent


async def _discard(sent: Sent) -> str:
    """Release a response that will not be relayed; the start of its body, for the log."""
    response = sent[0]
    try:
        body = await response.content.read(_ERROR_BODY_LOGGED)
    except (UpstreamError, TimeoutError):
        body = b""
    finally:
        _release(sent)
    return f"status {response.status}: {body.decode(errors='replace')}"


def _release(sent: Sent) -> None:
    response, pool, index, started = sent
    response.release()
    pool.finished(index, started)


async def _budget_wait(ctx: RequestContext, instance: str) -> float:
    """0 when the route's ai-rate-limiting still lets ``instance`` be used, else the seconds
    until it does.

    ai-rate-limiting runs after this plugin, so it is asked directly: its
    ``instance_wait(ctx, name)`` (a float, or an awaitable of one) when it has one.
    """
    chain = ctx.state[CHAIN]  # the route's, with the consumer's merged in
    longest = 0.0
    for plugin in chain.plugins:
        check = (
            getattr(plugin, "instance_wait", None) if plugin.name == "ai-rate-limiting" else None
        )
        if check is not None:
            answer = check(ctx, instance)
            if not isinstance(answer, (int, float)):
                answer = await answer
            longest = max(longest, float(answer))
    return longest
