"""A revision compiled from the previous snapshot and the rows it changed: only what the changed
rows touch is compiled again (``compiler.py`` compiles everything)."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Generator, Iterable

from llmgate.proxy.upstream import PoolRegistry
from llmgate.runtime.assembly import Assembly
from llmgate.runtime.auth_index import bound_entries, build_auth_index, by_owner
from llmgate.runtime.parts import Context, Parts, snapshot_of
from llmgate.runtime.resource_units import consumer_unit, credential_unit, route_unit
from llmgate.runtime.services import Services
from llmgate.runtime.snapshot import CredentialEntry, Snapshot
from llmgate.runtime.steps import to_the_end
from llmgate.store import Item

__all__ = ["INCREMENTAL_KINDS", "update_snapshot", "update_steps"]


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
    return to_the_end(update_steps(revision, rows, changed, services, pools, previous))


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

    assembly = Assembly(services, pools, previous)
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
            ssls=context.ssls,
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
            parts.routes[id] = route_unit(assembly, route, context)
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
            entry, own = consumer_unit(assembly, consumer, context)
            consumers[id] = entry
            parts.own_auth[id] = [CredentialEntry(entry, None, n, c) for n, c in own]
        for id in credential_ids:
            owners.add(id.partition("/")[0])
            credential = credential_rows.get(id)
            if credential is None:
                parts.credential_auth.pop(id, None)
            else:
                parts.credential_auth[id] = credential_unit(assembly, credential)
        if len(consumers) != len(consumer_rows) or any(
            a != b for a, b in zip(consumers, consumer_rows, strict=False)
        ):
            consumers = {id: consumers[id] for id in consumer_rows if id in consumers}
        if any(a != b for a, b in zip(parts.credential_auth, credential_rows, strict=False)):
            kept = parts.credential_auth
            parts.credential_auth = {id: kept[id] for id in credential_rows if id in kept}
        owned = by_owner(id for id in parts.credential_auth if id.partition("/")[0] in owners)
        for owner in owners:
            if owner in consumers:
                parts.found[owner] = bound_entries(owner, consumers, parts, owned.get(owner, []))
        yield
        yield from build_auth_index(parts, consumers)

    for key in keys:
        unit = assembly.units.get(key)
        if unit is not None:
            parts.pool_refs.update(unit.pool_keys)
    pools.touched |= {key for key, count in parts.pool_refs.items() if count > 0}
    return snapshot_of(revision, router, consumers, parts, services, assembly, context)
