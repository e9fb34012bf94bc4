"""The immutable runtime configuration one request reads from start to end."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from llmgate.routing import Router

if TYPE_CHECKING:
    from llmgate.plugins.base import Plugin
    from llmgate.proxy.upstream import UpstreamPool
    from llmgate.schemas.common import Timeout

PHASES = ("rewrite", "access", "header_filter", "body_filter", "log")


@dataclass(frozen=True, slots=True)
class PluginChain:
    """Plugin instances sorted by priority (highest first), split by the phases they implement."""

    plugins: tuple[Plugin, ...]
    rewrite: tuple[Plugin, ...]
    access: tuple[Plugin, ...]
    header_filter: tuple[Plugin, ...]
    body_filter: tuple[Plugin, ...]
    log: tuple[Plugin, ...]

    @classmethod
    def of(cls, plugins: list[Plugin]) -> PluginChain:
        ordered = tuple(sorted(plugins, key=lambda p: -_priority(p)))
        by_phase = {phase: tuple(p for p in ordered if p.runs(phase)) for phase in PHASES}
        return cls(plugins=ordered, **by_phase)

    def names(self) -> frozenset[str]:
        return frozenset(p.name for p in self.plugins)


def _priority(plugin: Plugin) -> int:
    meta = plugin.config.meta
    return meta.priority if meta is not None and meta.priority is not None else plugin.priority


@dataclass(frozen=True, slots=True)
class ConsumerEntry:
    username: str
    plugins: Mapping[str, dict[str, Any]]  # non-auth plugin configs, $env resolved
    labels: Mapping[str, str] = field(default_factory=dict)
    group_id: str | None = None


@dataclass(frozen=True, slots=True)
class CredentialEntry:
    """One auth plugin config of a consumer or of one of its credentials."""

    consumer: ConsumerEntry
    credential_id: str | None
    plugin: str
    config: Mapping[str, Any]  # $env resolved; secrets in their stored (hashed) form


@dataclass(frozen=True, slots=True)
class CompiledRoute:
    id: str
    name: str | None
    chain: PluginChain
    plugin_confs: Mapping[str, dict[str, Any]]  # the merged configs, for consumer merging
    upstream: UpstreamPool | None
    owners: Mapping[str, str]  # plugin name -> owner label ("route/1", "plugin_config/2")
    # The route's URI and host patterns as written (metrics label which one a request matched).
    uris: tuple[str, ...] = ()
    hosts: tuple[str, ...] = ()
    timeout: Timeout | None = None  # the route's upstream timeouts (override the upstream's)


class Snapshot:
    """Router, consumers, auth indexes and upstream pools of one store revision."""

    __slots__ = ("_merged", "active", "auth_index", "consumers", "revision", "router", "services")

    def __init__(
        self,
        revision: int,
        router: Router[CompiledRoute],
        consumers: Mapping[str, ConsumerEntry],
        auth_index: Mapping[str, Any],
        services: Any,
    ) -> None:
        self.revision = revision
        self.router = router
        self.consumers = consumers
        self.auth_index = auth_index
        self.services = services
        self.active = 0  # requests in flight on this snapshot
        self._merged: dict[tuple[str, str], PluginChain] = {}

    def chain_for(self, route: CompiledRoute, consumer: ConsumerEntry) -> PluginChain:
        """The route's chain with the consumer's plugins merged over it (cached)."""
        if not consumer.plugins:
            return route.chain
        key = (route.id, consumer.username)
        chain = self._merged.get(key)
        if chain is None:
            from llmgate.runtime.compiler import merge_consumer_chain

            chain = merge_consumer_chain(route, consumer, self.services)
            self._merged[key] = chain
        return chain
