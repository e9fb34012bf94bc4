"""Long-lived state shared by every snapshot: what must survive a config change.

Rate-limit counters, cache entries and verified credentials live here, not in a snapshot, so
editing one route never resets another route's limits (STYLE.md habit 9).

``counters`` are the node's counters (``policy: local``): in this process with one worker, in
the parent's counter service with ``--workers N``.  ``redis`` hands out the counters of the
limiters whose ``policy`` names a Redis, one client per server, kept across reloads;
``redis_default`` is the node's Redis for a ``policy: redis`` that names none.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, TypeVar

from llmgate.ai.pricing import NO_PRICES, Prices
from llmgate.proxy.upstream import PoolRegistry
from llmgate.runtime.counters import Counters, LocalCounters
from llmgate.runtime.redis_counters import RedisRegistry, RedisTarget
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


T = TypeVar("T")


class Shared:
    """Plugins' long-lived objects (cache stores, logger queues, cool-downs), each under a key of
    the plugin's choosing (its name first) and asked for with its class, so a reader gets the
    type it asked for.  What has a ``close`` is closed with the services."""

    __slots__ = ("_objects",)

    def __init__(self) -> None:
        self._objects: dict[str, object] = {}

    def get_or_make(self, key: str, kind: type[T], make: Callable[[], T]) -> T:
        """The ``kind`` kept under ``key``, made (and kept) on first use.  ``TypeError`` when
        something else is kept there: two plugins using one key is a bug."""
        found = self._objects.get(key)
        if found is None:
            made = make()
            self._objects[key] = made
            return made
        if not isinstance(found, kind):
            raise TypeError(f"{key!r} holds a {type(found).__name__}, not a {kind.__name__}")
        return found

    def __iter__(self) -> Iterator[object]:
        return iter(list(self._objects.values()))

    def items(self) -> Iterator[tuple[str, object]]:
        return iter(list(self._objects.items()))


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
    # The Redis of ``policy: redis`` without ``redis_host`` (``LLMGATE_REDIS_URL``; None: none).
    redis_default: RedisTarget | None = None
    # Per-plugin long-lived objects (cache stores, logger queues), keyed by the plugin's choice.
    shared: Shared = field(default_factory=Shared)
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
        for value in self.shared:
            closer = getattr(value, "close", None)
            if closer is not None:
                result = closer()
                if hasattr(result, "__await__"):
                    await result
        await self.counters.close()
        self.verified.close()
        await self.pools.close()
        await self.redis.close()
