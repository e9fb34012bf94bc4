"""limit-req: a leaky bucket of ``rate`` requests per second with ``burst`` extra queued.

A request within ``rate`` passes at once; one over it but within ``burst`` waits until the bucket
has drained enough (``delay = excess / rate``, nginx's limit_req), or passes at once with
``nodelay``; one beyond ``burst`` gets ``rejected_code`` and ``{"error_msg": rejected_msg}``.
Keys and error replies: see ``plugin_api/limiting.py``.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field

from llmgate.plugin_api.limiting import (
    LimitKey,
    RedisPolicyConfig,
    RejectedCode,
    RejectedMsg,
    counters_for,
    rejection,
    unavailable,
)
from llmgate.plugin_api.plugin import Plugin
from llmgate.runtime.counters import CountersUnavailable

if TYPE_CHECKING:
    from llmgate.http.context import Reply, RequestContext
    from llmgate.runtime.services import Services

# Delays shorter than this are not worth a sleep (APISIX's threshold too).
MIN_DELAY = 0.001


class LimitReqConfig(RedisPolicyConfig):
    rate: Annotated[float, Field(gt=0)]
    burst: Annotated[float, Field(ge=0)]
    key: str
    key_type: Literal["var", "var_combination"] = "var"
    rejected_code: RejectedCode = 503
    rejected_msg: RejectedMsg | None = None
    nodelay: bool = False
    allow_degradation: bool = False


class LimitReq(Plugin[LimitReqConfig]):
    name = "limit-req"
    priority = 1001
    Config = LimitReqConfig
    secret_fields = ("redis_password", "sentinel_password")

    def __init__(self, config: LimitReqConfig, services: Services, owner: str = "") -> None:
        super().__init__(config, services, owner)
        self.counters = counters_for(config, services)
        self.key = LimitKey.compile(config.key, config.key_type)
        self.prefix = f"{self.name}|{owner}|"

    async def access(self, ctx: RequestContext) -> Reply | None:
        config = self.config
        try:
            delay = await self.counters.leaky(
                self.prefix + self.key.render(ctx), config.rate, config.burst
            )
        except CountersUnavailable as exc:
            return None if config.allow_degradation else unavailable(self.name, self.owner, exc)
        if delay is None:
            # Beyond the burst: the bucket lets one more in once it drained one request.
            return rejection(
                config.rejected_code,
                config.rejected_msg,
                "too many requests",
                retry_after=1 / config.rate,
            )
        if delay >= MIN_DELAY and not config.nodelay:
            await asyncio.sleep(delay)
        return None
