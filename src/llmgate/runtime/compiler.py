"""Store rows -> one immutable ``Snapshot``: router, plugin chains, consumers, auth indexes.

Pure apart from the upstream pools, which come from a ``PoolRegistry`` so that pools whose
config did not change are reused across snapshots (their keep-alive connections survive).

A resource whose stored config does not compile (``runtime/instances.py``) is never dropped:
it keeps what it compiled to in the previous snapshot (its last good version), or, when it never
compiled in this process, stands in as a 503 that still matches its traffic.  Either way the
snapshot's ``problems`` names it, and no request falls through to another route.
"""

from __future__ import annotations

import contextlib
import logging
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from llmgate.http.tls import SniIndex
from llmgate.plugin_api.auth_consumer import AuthPlugin
from llmgate.plugin_api.config import ConfigSection
from llmgate.plugin_api.plugin import Plugin
from llmgate.plugins import REGISTRY
from llmgate.proxy.upstream import PoolRegistry
from llmgate.routing import RouteEntry, Router
from llmgate.runtime.consumers import (
    AuthConfig,
    auth_configs,
    compile_consumer,
    unavailable_consumer,
)
from llmgate.runtime.instances import CompileError, Unavailable, metadata_of
from llmgate.runtime.routes import compile_global_rule, compile_route, unavailable_route
from llmgate.runtime.services import Services
from llmgate.runtime.snapshot import (
    CompiledRoute,
    ConsumerEntry,
    CredentialEntry,
    PluginChain,
    Snapshot,
)
from llmgate.runtime.ssls import ContextCache, compile_ssl
from llmgate.store import Item

__all__ = ["compile_snapshot"]

log = logging.getLogger("llmgate.runtime")


@dataclass(frozen=True, slots=True)
class Unit:
    """What one stored resource compiled to, and the upstream pools it holds (kept alive for
    as long as a snapshot serves it)."""

    compiled: Any
    pool_keys: frozenset[str]
    good: bool = True  # False: a 503 stand-in for a resource that never compiled


@contextlib.contextmanager
def _recording(pools: PoolRegistry) -> Iterator[set[str]]:
    """The keys of the pools asked for inside the block (still counted as touched)."""
    outer = pools.touched
    inner: set[str] = set()
    pools.touched = inner
    try:
        yield inner
    finally:
        pools.touched = outer
        outer |= inner


class _Assembly:
    """One compilation: every resource tried once, with the previous snapshot to fall back on."""

    def __init__(self, services: Services, pools: PoolRegistry, previous: Snapshot | None) -> None:
        self.services = services
        self.pools = pools
        self.previous = previous.units if previous is not None else {}
        self.units: dict[str, Unit] = {}
        self.problems: dict[str, str] = {}

    def unit(self, key: str, build: Any, stand_in: Any) -> Any:
        """``build()``'s result for resource ``key``; on a ``CompileError``, the last good
        version (or ``stand_in()``, which may be None: nothing to serve)."""
        try:
            with _recording(self.pools) as keys:
                compiled = build()
        except Exception as exc:
            if isinstance(exc, CompileError):
                self.problems[key] = str(exc)
            else:  # a bug, not the config: say so, and still never drop the resource
                log.exception("compiling %s failed", key)
                self.problems[key] = f"internal error ({type(exc).__name__})"
            last = self.previous.get(key)
            if last is None or not last.good:
                compiled = stand_in()
                if compiled is not None:
                    self.units[key] = Unit(compiled, frozenset(), good=False)
                return compiled
            self.pools.touched |= last.pool_keys
            self.units[key] = last
            return last.compiled
        self.units[key] = Unit(compiled, frozenset(keys))
        return compiled


def _consumers(
    assembly: _Assembly,
    consumers: list[Item],
    credentials: list[Item],
    groups: dict[str, dict[str, Any]],
    metadata: dict[str, ConfigSection],
) -> tuple[dict[str, ConsumerEntry], list[CredentialEntry]]:
    services = assembly.services
    entries: dict[str, ConsumerEntry] = {}
    auth: list[tuple[str, str | None, AuthConfig]] = []
    for item in consumers:
        compiled = assembly.unit(
            f"consumers/{item.id}",
            lambda item=item: compile_consumer(
                item.id, item.value, services, groups=groups, plugin_metadata=metadata
            ),
            lambda item=item: unavailable_consumer(item.id, item.value, services),
        )
        entry, own = compiled
        entries[item.id] = entry
        auth.extend((item.id, None, config) for config in own)
    for item in credentials:
        owner, _, credential_id = item.id.partition("/")
        configs = assembly.unit(
            f"credentials/{item.id}",
            lambda item=item: auth_configs(item.value, policy=services.env_policy)[0],
            lambda: None,  # an unusable credential lets nobody in
        )
        auth.extend((owner, credential_id, config) for config in configs or ())
    found = [
        CredentialEntry(entries[owner], credential_id, name, config)
        for owner, credential_id, (name, config) in auth
        if owner in entries
    ]
    return entries, found


def _metadata(assembly: _Assembly, items: list[Item]) -> dict[str, ConfigSection]:
    """Each plugin's metadata, validated; one that does not validate keeps its last good
    version (or is left out: the plugin then runs without metadata)."""
    found: dict[str, ConfigSection] = {}
    for item in items:
        metadata = assembly.unit(
            f"plugin_metadata/{item.id}",
            lambda item=item: metadata_of(item.id, item.value),
            lambda: None,
        )
        if metadata is not None:
            found[item.id] = metadata
    return found


def _certificates(assembly: _Assembly, items: list[Item]) -> SniIndex:
    """The enabled ssls by server name.  One that does not compile keeps its last good
    version (or is left out: its names fail the handshake)."""
    cache = assembly.services.shared.get_or_make("ssl-contexts", ContextCache, ContextCache)
    entries = []
    for item in items:
        if item.value.get("status", 1) == 0:
            continue
        compiled = assembly.unit(
            f"ssls/{item.id}", lambda item=item: compile_ssl(item.value, cache), lambda: None
        )
        if compiled is not None:
            entries.append(compiled)
    cache.prune()
    return SniIndex(entries)


def _global_chain(
    assembly: _Assembly, rules: list[Item], metadata: dict[str, ConfigSection]
) -> PluginChain:
    """The plugins of every global rule in one chain.  A rule that never compiled stands in
    as a 503 for every request: its plugins may have been authentication or limits."""
    services = assembly.services
    plugins: list[Plugin] = []
    for item in rules:
        compiled = assembly.unit(
            f"global_rules/{item.id}",
            lambda item=item: compile_global_rule(
                item.id, item.value, services, plugin_metadata=metadata
            ),
            lambda item=item: [Unavailable(services, f"global rule {item.id}")],
        )
        plugins.extend(compiled)
    return PluginChain.of(plugins)


def compile_snapshot(
    revision: int,
    items: Iterable[Item],
    services: Services,
    pools: PoolRegistry,
    previous: Snapshot | None = None,
) -> Snapshot:
    """Build the snapshot of ``revision`` from every stored item (``previous``: the snapshot
    served so far, whose compiled resources stand in for ones that no longer compile)."""
    by_kind: dict[str, list[Item]] = defaultdict(list)
    for item in items:
        by_kind[item.kind].append(item)
    assembly = _Assembly(services, pools, previous)
    upstreams = {item.id: item.value for item in by_kind["upstreams"]}
    plugin_configs = {
        item.id: item.value.get("plugins") or {} for item in by_kind["plugin_configs"]
    }
    service_values = {item.id: item.value for item in by_kind["services"]}
    metadata = _metadata(assembly, by_kind["plugin_metadata"])
    groups = {item.id: item.value for item in by_kind["consumer_groups"]}
    consumers, credentials = _consumers(
        assembly, by_kind["consumers"], by_kind["credentials"], groups, metadata
    )
    global_chain = _global_chain(assembly, by_kind["global_rules"], metadata)
    certificates = _certificates(assembly, by_kind["ssls"])

    auth_index: dict[str, Any] = {}
    for name, cls in REGISTRY.items():
        if issubclass(cls, AuthPlugin):
            auth_index[name] = cls.build_index([c for c in credentials if c.plugin == name])

    entries: list[RouteEntry[CompiledRoute]] = []
    for item in by_kind["routes"]:
        if item.value.get("status", 1) == 0:
            continue
        entry = assembly.unit(
            f"routes/{item.id}",
            lambda item=item: compile_route(
                item.id,
                item.value,
                upstreams,
                plugin_configs,
                services,
                pools,
                service_values=service_values,
                plugin_metadata=metadata,
            ),
            lambda item=item: unavailable_route(item.id, item.value, services),
        )
        if entry is not None:
            entries.append(entry)
    return Snapshot(
        revision,
        Router(entries),
        consumers,
        auth_index,
        services,
        problems=assembly.problems,
        units=assembly.units,
        global_chain=global_chain,
        certificates=certificates,
    )
