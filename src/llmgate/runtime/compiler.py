"""Store rows -> one immutable ``Snapshot``: router, plugin chains, consumers, auth indexes.

Pure apart from the upstream pools, which come from a ``PoolRegistry`` so that pools whose
config did not change are reused across snapshots (their keep-alive connections survive).

A resource whose stored config does not compile (``runtime/instances.py``) is never dropped:
it keeps what it compiled to in the previous snapshot (its last good version), or, when it never
compiled in this process, stands in as a 503 that still matches its traffic.  Either way the
snapshot's ``problems`` names it, and no request falls through to another route
(``assembly.py``, ``resource_units.py``).  ``incremental.py`` compiles only what a revision's
writes touched.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Generator, Iterable

from llmgate.proxy.upstream import PoolRegistry
from llmgate.routing import Router
from llmgate.runtime.assembly import Assembly
from llmgate.runtime.auth_index import bound_entries, build_auth_index, by_owner
from llmgate.runtime.parts import Context, Parts, snapshot_of
from llmgate.runtime.resource_units import (
    certificates,
    consumer_unit,
    credential_unit,
    global_chain,
    metadata_sections,
    route_unit,
)
from llmgate.runtime.services import Services
from llmgate.runtime.snapshot import ConsumerEntry, CredentialEntry, Snapshot
from llmgate.runtime.steps import Ticker, to_the_end
from llmgate.store import Item

__all__ = ["compile_snapshot", "compile_steps"]


def compile_snapshot(
    revision: int,
    items: Iterable[Item],
    services: Services,
    pools: PoolRegistry,
    previous: Snapshot | None = None,
) -> Snapshot:
    """Build the snapshot of ``revision`` from every stored item (``previous``: the snapshot
    served so far, whose compiled resources stand in for ones that no longer compile)."""
    return to_the_end(compile_steps(revision, items, services, pools, previous))


def compile_steps(
    revision: int,
    items: Iterable[Item],
    services: Services,
    pools: PoolRegistry,
    previous: Snapshot | None = None,
) -> Generator[None, None, Snapshot]:
    """``compile_snapshot`` in steps: yields about every ``STEP_SECONDS`` of work (a loader
    serving requests lets them run there) and returns the snapshot."""
    tick = Ticker()
    by_kind: dict[str, list[Item]] = defaultdict(list)
    for item in items:
        by_kind[item.kind].append(item)
    assembly = Assembly(services, pools, previous)
    metadata = metadata_sections(assembly, by_kind["plugin_metadata"])
    context = Context(
        upstreams={item.id: item.value for item in by_kind["upstreams"]},
        plugin_configs={
            item.id: item.value.get("plugins") or {} for item in by_kind["plugin_configs"]
        },
        service_values={item.id: item.value for item in by_kind["services"]},
        metadata=metadata,
        groups={item.id: item.value for item in by_kind["consumer_groups"]},
        global_chain=global_chain(assembly, by_kind["global_rules"], metadata),
        certificates=certificates(assembly, by_kind["ssls"]),
        ssls={item.id: item.value for item in by_kind["ssls"]},
    )
    parts = Parts({}, {}, {}, {}, context=context)
    consumers: dict[str, ConsumerEntry] = {}
    yield
    for item in by_kind["consumers"]:
        entry, own = consumer_unit(assembly, item, context)
        consumers[item.id] = entry
        parts.own_auth[item.id] = [CredentialEntry(entry, None, n, c) for n, c in own]
        if tick.due():
            yield
            tick.reset()
    for item in by_kind["credentials"]:
        parts.credential_auth[item.id] = credential_unit(assembly, item)
        if tick.due():
            yield
            tick.reset()
    owned = by_owner(parts.credential_auth)
    for owner in consumers:
        parts.found[owner] = bound_entries(owner, consumers, parts, owned.get(owner, []))
    yield
    yield from build_auth_index(parts, consumers)
    tick.reset()
    for item in by_kind["routes"]:
        parts.routes[item.id] = route_unit(assembly, item, context)
        if tick.due():
            yield
            tick.reset()
    entries = [entry for entry in parts.routes.values() if entry is not None]
    for unit in assembly.units.values():
        parts.pool_refs.update(unit.pool_keys)
    yield
    router = yield from Router.building(entries)
    return snapshot_of(revision, router, consumers, parts, services, assembly, context)
