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
import time
from collections import Counter, defaultdict
from collections.abc import Generator, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

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

__all__ = [
    "INCREMENTAL_KINDS",
    "compile_snapshot",
    "compile_steps",
    "update_snapshot",
    "update_steps",
]

log = logging.getLogger("llmgate.runtime")
R = TypeVar("R")  # what a step generator returns


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


@dataclass(slots=True)
class Parts:
    """What a snapshot was assembled from, kept so the next revision can change only what
    its writes touched (``update_snapshot``).  Every mapping is in creation order."""

    routes: dict[str, RouteEntry[CompiledRoute] | None]  # None: disabled or nothing to serve
    own_auth: dict[str, list[CredentialEntry]]  # a consumer's own auth configs
    credential_auth: dict[str, list[AuthConfig]]  # a credential's ("user/id"), unbound
    found: dict[str, list[CredentialEntry]]  # owner -> every auth entry it authenticates
    pool_refs: Counter[str] = field(default_factory=Counter)  # units holding each pool
    index: dict[str, Any] = field(default_factory=dict)  # each auth plugin's index
    context: Context | None = None  # what routes and consumers compile against


@dataclass(slots=True)
class Context:
    """The values routes and consumers compile against (by id), and what every route shares.
    ``update_steps`` rebuilds ``upstreams`` and ``plugin_configs`` from the rows; a change to
    any other of these kinds compiles everything."""

    upstreams: dict[str, Any]
    plugin_configs: dict[str, Any]
    service_values: dict[str, Any]
    metadata: dict[str, ConfigSection]
    groups: dict[str, Any]
    global_chain: PluginChain
    certificates: SniIndex


def _compile_consumer(
    assembly: _Assembly, item: Item, context: Context
) -> tuple[ConsumerEntry, list[AuthConfig]]:
    services = assembly.services
    compiled: tuple[ConsumerEntry, list[AuthConfig]] = assembly.unit(
        f"consumers/{item.id}",
        lambda: compile_consumer(
            item.id,
            item.value,
            services,
            groups=context.groups,
            plugin_metadata=context.metadata,
        ),
        lambda: unavailable_consumer(item.id, item.value, services),
    )
    return compiled


def _compile_credential(assembly: _Assembly, item: Item) -> list[AuthConfig]:
    services = assembly.services
    configs = assembly.unit(
        f"credentials/{item.id}",
        lambda: auth_configs(item.value, policy=services.env_policy)[0],
        lambda: None,  # an unusable credential lets nobody in
    )
    return list(configs or ())


def _compile_route(
    assembly: _Assembly, item: Item, context: Context
) -> RouteEntry[CompiledRoute] | None:
    if item.value.get("status", 1) == 0:
        return None
    services, pools = assembly.services, assembly.pools
    entry: RouteEntry[CompiledRoute] | None = assembly.unit(
        f"routes/{item.id}",
        lambda: compile_route(
            item.id,
            item.value,
            context.upstreams,
            context.plugin_configs,
            services,
            pools,
            service_values=context.service_values,
            plugin_metadata=context.metadata,
        ),
        lambda: unavailable_route(item.id, item.value, services),
    )
    return entry


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


def _bound(
    owner: str, consumers: dict[str, ConsumerEntry], parts: Parts, credentials: list[str]
) -> list[CredentialEntry]:
    """Every auth entry of ``owner`` (its own, then its credentials'), bound to its entry."""
    entry = consumers.get(owner)
    if entry is None:
        return []
    found = list(parts.own_auth.get(owner, ()))
    for store_id in credentials:
        credential_id = store_id.partition("/")[2]
        found.extend(
            CredentialEntry(entry, credential_id, name, config)
            for name, config in parts.credential_auth.get(store_id, ())
        )
    return found


# Auth indexes that are dicts built first-wins entry by entry: built in chunks of
# ``_INDEX_CHUNK`` entries merged in order, so no single step holds the event loop long.
_CHUNKABLE = frozenset({"key-auth", "basic-auth"})
_INDEX_CHUNK = 2000


def _auth_index(parts: Parts, consumer_order: Iterable[str]) -> Iterator[None]:
    """Each auth plugin's index (into ``parts.index``) over every consumer's and credential's
    auth entries, in the order a full compilation lists them: consumers' own first, then
    credentials'.  Yields between steps of a few milliseconds."""
    own: list[CredentialEntry] = []
    theirs: list[CredentialEntry] = []
    for owner in consumer_order:
        for entry in parts.found.get(owner, ()):
            (own if entry.credential_id is None else theirs).append(entry)
    yield
    ordered = own + sorted(theirs, key=_credential_position(parts)) if theirs else own
    index: dict[str, Any] = {}
    for name, cls in REGISTRY.items():
        if not issubclass(cls, AuthPlugin):
            continue
        entries = [c for c in ordered if c.plugin == name]
        yield
        if name not in _CHUNKABLE or len(entries) <= _INDEX_CHUNK:
            index[name] = cls.build_index(entries)
            continue
        merged: dict[str, Any] = {}
        for start in range(0, len(entries), _INDEX_CHUNK):
            part = cls.build_index(entries[start : start + _INDEX_CHUNK])
            for key, value in part.items():
                merged.setdefault(key, value)
            yield
        index[name] = merged
    parts.index = index


def _credential_position(parts: Parts) -> Any:
    position = {store_id: i for i, store_id in enumerate(parts.credential_auth)}

    def key(entry: CredentialEntry) -> int:
        return position.get(f"{entry.consumer.username}/{entry.credential_id}", 0)

    return key


def _by_owner(credential_ids: Iterable[str]) -> dict[str, list[str]]:
    owners: dict[str, list[str]] = defaultdict(list)
    for store_id in credential_ids:
        owners[store_id.partition("/")[0]].append(store_id)
    return owners


class _Ticker:
    """Says when a stepwise compilation has worked ``STEP_SECONDS`` since it last yielded."""

    def __init__(self) -> None:
        self.since = time.perf_counter()

    def due(self) -> bool:
        return time.perf_counter() - self.since > STEP_SECONDS

    def reset(self) -> None:
        self.since = time.perf_counter()


def _snapshot(
    revision: int,
    router: Router[CompiledRoute],
    consumers: Mapping[str, ConsumerEntry],
    parts: Parts,
    services: Services,
    assembly: _Assembly,
    context: Context,
) -> Snapshot:
    """The snapshot a whole or an incremental compilation ends with."""
    return Snapshot(
        revision,
        router,
        consumers,
        parts.index,
        services,
        problems=assembly.problems,
        units=assembly.units,
        global_chain=context.global_chain,
        certificates=context.certificates,
        parts=parts,
    )


STEP_SECONDS = 0.002


def compile_snapshot(
    revision: int,
    items: Iterable[Item],
    services: Services,
    pools: PoolRegistry,
    previous: Snapshot | None = None,
) -> Snapshot:
    """Build the snapshot of ``revision`` from every stored item (``previous``: the snapshot
    served so far, whose compiled resources stand in for ones that no longer compile)."""
    return _to_the_end(compile_steps(revision, items, services, pools, previous))


def compile_steps(
    revision: int,
    items: Iterable[Item],
    services: Services,
    pools: PoolRegistry,
    previous: Snapshot | None = None,
) -> Generator[None, None, Snapshot]:
    """``compile_snapshot`` in steps: yields about every ``STEP_SECONDS`` of work (a loader
    serving requests lets them run there) and returns the snapshot."""
    tick = _Ticker()
    by_kind: dict[str, list[Item]] = defaultdict(list)
    for item in items:
        by_kind[item.kind].append(item)
    assembly = _Assembly(services, pools, previous)
    metadata = _metadata(assembly, by_kind["plugin_metadata"])
    context = Context(
        upstreams={item.id: item.value for item in by_kind["upstreams"]},
        plugin_configs={
            item.id: item.value.get("plugins") or {} for item in by_kind["plugin_configs"]
        },
        service_values={item.id: item.value for item in by_kind["services"]},
        metadata=metadata,
        groups={item.id: item.value for item in by_kind["consumer_groups"]},
        global_chain=_global_chain(assembly, by_kind["global_rules"], metadata),
        certificates=_certificates(assembly, by_kind["ssls"]),
    )
    parts = Parts({}, {}, {}, {}, context=context)
    consumers: dict[str, ConsumerEntry] = {}
    yield
    for item in by_kind["consumers"]:
        entry, own = _compile_consumer(assembly, item, context)
        consumers[item.id] = entry
        parts.own_auth[item.id] = [CredentialEntry(entry, None, n, c) for n, c in own]
        if tick.due():
            yield
            tick.reset()
    for item in by_kind["credentials"]:
        parts.credential_auth[item.id] = _compile_credential(assembly, item)
        if tick.due():
            yield
            tick.reset()
    owned = _by_owner(parts.credential_auth)
    for owner in consumers:
        parts.found[owner] = _bound(owner, consumers, parts, owned.get(owner, []))
    yield
    yield from _auth_index(parts, consumers)
    tick.reset()
    for item in by_kind["routes"]:
        parts.routes[item.id] = _compile_route(assembly, item, context)
        if tick.due():
            yield
            tick.reset()
    entries = [entry for entry in parts.routes.values() if entry is not None]
    for unit in assembly.units.values():
        parts.pool_refs.update(unit.pool_keys)
    yield
    router = yield from Router.building(entries)
    return _snapshot(revision, router, consumers, parts, services, assembly, context)


# Kinds whose changes ``update_snapshot`` applies; a change to any other kind compiles all.
INCREMENTAL_KINDS = frozenset({"routes", "upstreams", "plugin_configs", "consumers", "credentials"})


def update_snapshot(
    revision: int,
    rows: dict[str, dict[str, Item]],
    changed: Iterable[tuple[str, str]],
    services: Services,
    pools: PoolRegistry,
    previous: Snapshot,
) -> Snapshot | None:
    """``update_steps`` run to the end in one go."""
    return _to_the_end(update_steps(revision, rows, changed, services, pools, previous))


def _to_the_end(steps: Generator[None, None, R]) -> R:
    """What a step generator returns, its steps run in one go."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            result: R = done.value
            return result


def update_steps(
    revision: int,
    rows: dict[str, dict[str, Item]],
    changed: Iterable[tuple[str, str]],
    services: Services,
    pools: PoolRegistry,
    previous: Snapshot,
) -> Generator[None, None, Snapshot | None]:
    """The snapshot of ``revision`` built from ``previous`` by compiling again only what the
    ``changed`` rows touch: a changed route; the routes of a changed upstream or
    plugin_config; a changed consumer or credential (and its consumer's auth entries, then the
    auth indexes).  ``rows``: every stored item of ``revision`` by kind and id, in creation
    order.  None when it cannot (a kind it does not know changed, or ``previous`` has no
    parts): then ``compile_snapshot`` builds it whole.

    A generator: it yields between steps of a few milliseconds (the loader lets requests run
    there) and returns the snapshot; nothing is shared with ``previous`` that either changes.
    """
    old = previous.parts
    changed = list(changed)
    if (
        not isinstance(old, Parts)
        or old.context is None
        or any(k not in INCREMENTAL_KINDS for k, _ in changed)
    ):
        return None
    by_kind: dict[str, set[str]] = defaultdict(set)
    for kind, id in changed:
        by_kind[kind].add(id)
    route_rows = rows.get("routes", {})
    routes = set(by_kind["routes"])
    upstream_ids, config_ids = by_kind["upstreams"], by_kind["plugin_configs"]
    if upstream_ids or config_ids:
        # Routes that name them, or whose service names an upstream among them.
        service_ids = {
            id
            for id, value in old.context.service_values.items()
            if str(value.get("upstream_id")) in upstream_ids
        }
        for id, item in route_rows.items():
            value = item.value
            if (
                str(value.get("upstream_id")) in upstream_ids
                or str(value.get("plugin_config_id")) in config_ids
                or str(value.get("service_id")) in service_ids
            ):
                routes.add(id)
    consumer_ids = by_kind["consumers"]
    credential_ids = by_kind["credentials"]

    assembly = _Assembly(services, pools, previous)
    assembly.units = dict(previous.units)
    assembly.problems = dict(previous.problems)
    keys = [f"routes/{i}" for i in routes] + [f"consumers/{i}" for i in consumer_ids]
    keys += [f"credentials/{i}" for i in credential_ids]
    parts = Parts(
        dict(old.routes), old.own_auth, old.credential_auth, old.found, Counter(old.pool_refs)
    )
    parts.index = old.index
    context = old.context
    if upstream_ids or config_ids:
        context = Context(
            upstreams={id: row.value for id, row in rows.get("upstreams", {}).items()},
            plugin_configs={
                id: row.value.get("plugins") or {}
                for id, row in rows.get("plugin_configs", {}).items()
            },
            service_values=context.service_values,
            metadata=context.metadata,
            groups=context.groups,
            global_chain=context.global_chain,
            certificates=context.certificates,
        )
    parts.context = context
    for key in keys:
        gone = assembly.units.pop(key, None)
        if gone is not None:
            parts.pool_refs.subtract(gone.pool_keys)
        assembly.problems.pop(key, None)
    yield

    router = previous.router
    if routes:
        appended = False
        for id in routes:
            route = route_rows.get(id)
            if route is None:
                parts.routes.pop(id, None)
                continue
            appended = appended or id not in parts.routes
            parts.routes[id] = _compile_route(assembly, route, context)
        if appended:  # keep creation order (a new route is usually the newest)
            parts.routes = {id: parts.routes[id] for id in route_rows if id in parts.routes}
        yield
        entries = [entry for entry in parts.routes.values() if entry is not None]
        router = router.updated(entries, routes)
        yield

    consumers = previous.consumers
    if consumer_ids or credential_ids:
        consumer_rows = rows.get("consumers", {})
        credential_rows = rows.get("credentials", {})
        consumers = dict(previous.consumers)
        parts.own_auth = dict(old.own_auth)
        parts.credential_auth = dict(old.credential_auth)
        parts.found = dict(old.found)
        owners = set(consumer_ids)
        for id in consumer_ids:
            consumer = consumer_rows.get(id)
            if consumer is None:
                consumers.pop(id, None)
                parts.own_auth.pop(id, None)
                parts.found.pop(id, None)
                continue
            entry, own = _compile_consumer(assembly, consumer, context)
            consumers[id] = entry
            parts.own_auth[id] = [CredentialEntry(entry, None, n, c) for n, c in own]
        for id in credential_ids:
            owners.add(id.partition("/")[0])
            credential = credential_rows.get(id)
            if credential is None:
                parts.credential_auth.pop(id, None)
            else:
                parts.credential_auth[id] = _compile_credential(assembly, credential)
        if len(consumers) != len(consumer_rows) or any(
            a != b for a, b in zip(consumers, consumer_rows, strict=False)
        ):
            consumers = {id: consumers[id] for id in consumer_rows if id in consumers}
        if any(a != b for a, b in zip(parts.credential_auth, credential_rows, strict=False)):
            kept = parts.credential_auth
            parts.credential_auth = {id: kept[id] for id in credential_rows if id in kept}
        owned = _by_owner(id for id in parts.credential_auth if id.partition("/")[0] in owners)
        for owner in owners:
            if owner in consumers:
                parts.found[owner] = _bound(owner, consumers, parts, owned.get(owner, []))
        yield
        yield from _auth_index(parts, consumers)

    for key in keys:
        unit = assembly.units.get(key)
        if unit is not None:
            parts.pool_refs.update(unit.pool_keys)
    pools.touched |= {key for key, count in parts.pool_refs.items() if count > 0}
    return _snapshot(revision, router, consumers, parts, services, assembly, context)
