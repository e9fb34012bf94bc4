"""Long-lived state shared by every snapshot: what must survive a config change.

Rate-limit counters, cache entries and verified credentials live here, not in a snapshot, so
editing one route never resets another route's limits (STYLE.md habit 9).

``counters`` are the node's counters (``policy: local``): in this process with one worker, in
the parent's counter service with ``--workers N``.  ``redis`` hands out the counters of the
limiters whose ``policy`` names a Redis, one client per server, kept across reloads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from llmgate.ai.pricing import NO_PRICES, Prices
from llmgate.proxy.upstream import PoolRegistry
from llmgate.runtime.counters import Counters, LocalCounters
from llmgate.runtime.redis_counters import RedisRegistry
from llmgate.runtime.verified import VerifiedCredentials
from llmgate.schemas.envrefs import EnvPolicy

if TYPE_CHECKING:
    from llmgate.http.context import RequestContext
    from llmgate.observability.metrics import Metrics


@dataclass(frozen=True, slots=True)
class CacheCaps:
    """How much each proxy-cache zone may hold (``LLMGATE_CACHE_*`` settings, README).

    APISIX's zones: ``disk_cache_one`` has ``disk_size: 1G`` and a 50m keys zone (nginx keeps
    about 8,000 keys per megabyte: 400,000 entries); ``memory_cache`` has ``memory_size: 50m``.
    Both zones here hold at most ``max_entries`` entries; the disk zone at most ``max_bytes``
    bytes of files, the memory zone ``memory_max_bytes`` bytes of entries.
    """

    max_bytes: int = 1024**3
    memory_max_bytes: int = 50 * 1024**2
    max_entries: int = 400_000


class Observer(Protocol):
    """Sees every request the data plane matched to a route (token accounting).  Both calls
    are synchronous, cheap and must not raise."""

    def forwarding(self, ctx: RequestContext) -> None:
        """The request phases are done; the upstream request is about to be sent."""

    def observe(self, ctx: RequestContext) -> None:
        """The response is done and the plugins' log phase has run."""


@dataclass
class Services:
    counters: Counters = field(default_factory=LocalCounters)
    verified: VerifiedCredentials = field(default_factory=VerifiedCredentials)
    # Upstream pools (routes' and plugins' such as ai-proxy's), reused while their config holds.
    pools: PoolRegistry = field(default_factory=PoolRegistry)
    redis: RedisRegistry = field(default_factory=RedisRegistry)
    # Per-plugin long-lived objects (cache stores, logger queues), keyed by the plugin's choice.
    shared: dict[str, Any] = field(default_factory=dict)
    # What proxy-cache zones may hold (set from the settings by the server).
    cache_caps: CacheCaps = field(default_factory=CacheCaps)
    # The data plane's metrics (None: not recorded) and its observers; set by the server.
    metrics: Metrics | None = None
    observers: tuple[Observer, ...] = ()
    # The model price table (``ai/pricing.py``): from ``LLMGATE_PRICES``, set by the server.
    prices: Prices = NO_PRICES
    # Which variables ``$env://`` references may read (settings.env_allow); set by the server.
    env_policy: EnvPolicy = field(default_factory=EnvPolicy)

    async def close(self) -> None:
        for value in self.shared.values():
            closer = getattr(value, "close", None)
            if closer is not None:
                result = closer()
                if hasattr(result, "__await__"):
                    await result
        await self.counters.close()
        self.verified.close()
        await self.pools.close()
        await self.redis.close()
