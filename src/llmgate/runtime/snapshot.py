"""The immutable runtime configuration one request reads from start to end.

Everything in a snapshot is built when it is compiled (consumer plugin chains included); serving
a request only reads it.  ``chain_for`` merges a consumer's chain over a route's per request,
without caching, so no request ever writes into a snapshot.

These are data types only, built by ``runtime/compiler.py``: the module sits in the plugin-API
layer (docs/architecture.md), so plugins may read a snapshot (``ctx.state[SNAPSHOT]``) and the
request's plugin chain (``ctx.state[CHAIN]``) without importing the runtime.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from llmgate.http.context import Consumer, RouteInfo, StateKey
from llmgate.http.tls import EMPTY_INDEX, SniIndex
from llmgate.routing import Router

if TYPE_CHECKING:
    from llmgate.plugin_api.plugin import Plugin
    from llmgate.proxy.upstream import UpstreamPool
    from llmgate.runtime.services import Services

PHASES = ("rewrite", "access", "before_proxy", "header_filter", "body_filter", "log")


@dataclass(frozen=True, slots=True)
class PluginChain:
    """Plugin instances sorted by priority (highest first), split by the phases they implement."""

    plugins: tuple[Plugin, ...]
    rewrite: tuple[Plugin, ...]
    access: tuple[Plugin, ...]
    before_proxy: tuple[Plugin, ...]
    header_filter: tuple[Plugin, ...]
    body_filter: tuple[Plugin, ...]
    log: tuple[Plugin, ...]

    @classmethod
    def of(cls, plugins: list[Plugin]) -> PluginChain:
        ordered = tuple(sorted(plugins, key=order))
        by_phase = {phase: tuple(p for p in ordered if p.runs(phase)) for phase in PHASES}
        return cls(plugins=ordered, **by_phase)

    def then(self, later: PluginChain) -> PluginChain:
        """This chain's plugins first in every phase, then ``later``'s (global rules before a
        route's plugins, as APISIX runs them)."""
        if not self.plugins:
            return later
        return PluginChain(
            self.plugins + later.plugins,
            self.rewrite + later.rewrite,
            self.access + later.access,
            self.before_proxy + later.before_proxy,
            self.header_filter + later.header_filter,
            self.body_filter + later.body_filter,
            self.log + later.log,
        )

    def names(self) -> frozenset[str]:
        return frozenset(p.name for p in self.plugins)

    def merged(self, overrides: frozenset[str], extra: PluginChain) -> PluginChain:
        """This chain without the plugins named in ``overrides``, plus ``extra``'s plugins,
        each phase still in priority order.  Per request, so it is cheap: both sides are
        sorted already, ``extra`` (a consumer's) is short, and a phase neither side changes is
        shared, not copied."""
        dropping = not overrides.isdisjoint(p.name for p in self.plugins)
        return PluginChain(
            *(
                _merge(mine, theirs, overrides, dropping)
                for mine, theirs in (
                    (self.plugins, extra.plugins),
                    (self.rewrite, extra.rewrite),
                    (self.access, extra.access),
                    (self.before_proxy, extra.before_proxy),
                    (self.header_filter, extra.header_filter),
                    (self.body_filter, extra.body_filter),
                    (self.log, extra.log),
                )
            )
        )


def _merge(
    mine: tuple[Plugin, ...], theirs: tuple[Plugin, ...], overrides: frozenset[str], dropping: bool
) -> tuple[Plugin, ...]:
    if not theirs and not dropping:
        return mine
    kept = [p for p in mine if p.name not in overrides] if dropping else list(mine)
    for plugin in theirs:
        bisect.insort_right(kept, plugin, key=order)
    return tuple(kept)


EMPTY_CHAIN = PluginChain((), (), (), (), (), (), ())


def order(plugin: Plugin) -> int:
    """The sort key of a plugin in a chain: its ``_meta.priority`` or its class's, highest
    first (a plugin's config is frozen, so this never changes)."""
    meta = plugin.config.meta
    return -(meta.priority if meta is not None and meta.priority is not None else plugin.priority)


@dataclass(frozen=True, slots=True)
class ConsumerEntry(Consumer):
    """A consumer as the snapshot holds it: who it is (``Consumer``: what ``ctx.consumer``
    shows), plus its plugins.

    ``chain`` holds its non-auth plugins, compiled with the snapshot; ``overrides`` names every
    non-auth plugin it configures (disabled ones included), each of which replaces the route's
    plugin of that name, as APISIX merges consumer plugins over route plugins.
    """

    overrides: frozenset[str] = frozenset()
    chain: PluginChain = EMPTY_CHAIN


@dataclass(frozen=True, slots=True)
class CredentialEntry:
    """One auth plugin config of a consumer or of one of its credentials."""

    consumer: ConsumerEntry
    credential_id: str | None
    plugin: str
    config: Mapping[str, Any]  # $env resolved; secrets in their stored (hashed) form


@dataclass(frozen=True, slots=True, kw_only=True)
class CompiledRoute(RouteInfo):
    """A route as the snapshot holds it: what a request knows of it (``RouteInfo``: what
    ``ctx.route`` shows), plus its plugins and upstream."""

    chain: PluginChain
    plugin_confs: Mapping[str, dict[str, Any]]  # the merged configs, as stored
    upstream: UpstreamPool | None
    owners: Mapping[str, str]  # plugin name -> owner label ("route/1", "plugin_config/2")


class Snapshot:
    """Router, consumers, auth indexes and upstream pools of one store revision.

    ``problems`` names each stored resource whose current config does not compile (``"routes/1"``
    -> why, without secrets); such a resource is served at its last good version, or answers 503
    when it never compiled, and its traffic never falls through to another route.  ``units``
    keeps what each resource compiled to, so the next snapshot can fall back on it.
    """

    __slots__ = (
        "auth_index",
        "certificates",
        "consumers",
        "global_chain",
        "global_ids",
        "parts",
        "problems",
        "revision",
        "router",
        "services",
        "units",
    )

    def __init__(
        self,
        revision: int,
        router: Router[CompiledRoute],
        consumers: Mapping[str, ConsumerEntry],
        auth_index: Mapping[str, Any],
        services: Services,
        problems: Mapping[str, str] | None = None,
        units: Mapping[str, Any] | None = None,
        global_chain: PluginChain = EMPTY_CHAIN,
        certificates: SniIndex = EMPTY_INDEX,
        parts: Any = None,
    ) -> None:
        self.revision = revision
        # The ssls' contexts by server name (the TLS listener's, read per handshake).
        self.certificates = certificates
        # The plugins of every global rule, run before the route's in each phase.
        self.global_chain = global_chain
        self.global_ids = frozenset(map(id, global_chain.plugins))
        self.router = router
        self.consumers = consumers
        self.auth_index = auth_index
        self.services = services
        self.problems: Mapping[str, str] = problems or {}
        self.units: Mapping[str, Any] = units or {}
        self.parts = parts  # what the compiler needs to build the next revision from this one

    def chain_of(self, route: CompiledRoute) -> PluginChain:
        """What runs on ``route``: the global rules' plugins, then the route's."""
        return self.global_chain.then(route.chain)

    def chain_for(self, route: CompiledRoute, consumer: ConsumerEntry) -> PluginChain:
        """The route's chain with the consumer's plugins merged over it, after the global
        rules' (built per call: a handful of plugins, and nothing is written into the
        snapshot).  Global rules are not merged: they run apart, as in APISIX."""
        if not consumer.overrides:
            return self.chain_of(route)
        return self.global_chain.then(route.chain.merged(consumer.overrides, consumer.chain))


# Set by the handler on every request it runs: the snapshot, and the chain of plugins that runs
# it (the global rules', then the route's, with the consumer's merged in once an auth plugin
# identified one).
SNAPSHOT: StateKey[Snapshot] = StateKey("snapshot")
CHAIN: StateKey[PluginChain] = StateKey("chain")
