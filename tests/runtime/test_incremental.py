"""Incremental reload: a revision compiled from the previous snapshot and the rows it changed
serves exactly what compiling every row afresh would."""

from __future__ import annotations

import random
from typing import Any

from llmgate.credentials import key_digest
from llmgate.runtime.compiler import compile_snapshot
from llmgate.runtime.loader import SnapshotLoader
from llmgate.runtime.services import Services
from llmgate.runtime.snapshot import Snapshot
from llmgate.store import Store

UPSTREAM = {"nodes": {"127.0.0.1:1": 1}}
PATHS = [f"/p{i}" for i in range(12)] + [f"/p{i}/x" for i in range(12)] + ["/", "/other"]


def _route(rng: random.Random) -> dict[str, Any]:
    uri = f"/p{rng.randrange(12)}" + rng.choice(["", "/*", "*"])
    value: dict[str, Any] = {"uri": uri, "priority": rng.randrange(3)}
    choice = rng.random()
    if choice < 0.35:
        value["upstream_id"] = f"u{rng.randrange(3)}"
    elif choice < 0.5:
        value["service_id"] = "s0"  # whose upstream is u1
    else:
        value["upstream"] = UPSTREAM
    if rng.random() < 0.4:
        value["plugin_config_id"] = f"pc{rng.randrange(3)}"
    if rng.random() < 0.2:
        value["status"] = 0
    if rng.random() < 0.1:
        value["vars"] = [["arg_x", "~~", "(unclosed"]]  # never compiles
    return value


def _consumer(rng: random.Random, name: str) -> dict[str, Any]:
    plugins: dict[str, Any] = {"key-auth": {"key": key_digest(f"k{rng.randrange(30)}")}}
    if rng.random() < 0.3:
        plugins["limit-count"] = {"count": rng.randrange(1, 9), "time_window": 60}
    return {"username": name, "plugins": plugins}


def _view(snapshot: Snapshot) -> dict[str, Any]:
    """What requests see: the route each path matches (and its plugins and upstream), each
    key's consumer, the consumers' chains, the problems."""
    routes = {}
    for path in PATHS:
        found = snapshot.router.match("GET", None, path)
        if found is not None and found.payload is not None:
            route = found.payload
            routes[path] = (
                found.id,
                sorted(p.name for p in route.chain.plugins),
                route.upstream.label if route.upstream is not None else None,
                repr(route.upstream.nodes) if route.upstream is not None else None,
                dict(route.owners),
            )
        else:
            routes[path] = None
    keys = {
        name: {k: (v.consumer.username, v.credential_id) for k, v in index.items()}
        for name, index in snapshot.auth_index.items()
        if isinstance(index, dict) and name == "key-auth"
    }
    consumers = {
        name: sorted(p.name for p in entry.chain.plugins)
        for name, entry in snapshot.consumers.items()
    }
    return {
        "routes": routes,
        "keys": keys,
        "consumers": consumers,
        "problems": sorted(snapshot.problems),
    }


async def test_incremental_reloads_serve_what_a_full_compilation_does(
    sqlite_store: Store,
) -> None:
    rng = random.Random(1)
    async with sqlite_store.write() as writer:
        await writer.put("upstreams", "u1", {"nodes": {"127.0.0.1:9": 1}})
        await writer.put("services", "s0", {"upstream_id": "u1"})
    loader = SnapshotLoader(sqlite_store, Services())
    await loader.start()
    try:
        for _round in range(80):
            async with sqlite_store.write() as writer:
                for _ in range(rng.randint(1, 4)):
                    what = rng.random()
                    if what < 0.35:
                        id = f"r{rng.randrange(15)}"
                        if rng.random() < 0.2:
                            await writer.delete("routes", id)
                        else:
                            await writer.put("routes", id, _route(rng))
                    elif what < 0.45:
                        nodes = {f"127.0.0.1:{rng.randrange(1, 4)}": 1}
                        await writer.put("upstreams", f"u{rng.randrange(3)}", {"nodes": nodes})
                    elif what < 0.55:
                        plugins = rng.choice(
                            [{}, {"key-auth": {}}, {"limit-count": {"count": 3, "time_window": 9}}]
                        )
                        await writer.put(
                            "plugin_configs", f"pc{rng.randrange(3)}", {"plugins": plugins}
                        )
                    elif what < 0.8:
                        name = f"c{rng.randrange(8)}"
                        if rng.random() < 0.2:
                            await writer.delete("consumers", name)
                            await writer.delete_prefix("credentials", f"{name}/")
                        else:
                            await writer.put("consumers", name, _consumer(rng, name))
                    else:
                        owner = f"c{rng.randrange(8)}"
                        id = f"{owner}/cr{rng.randrange(3)}"
                        if rng.random() < 0.3:
                            await writer.delete("credentials", id)
                        else:
                            key = {"key": key_digest(f"k{rng.randrange(30)}")}
                            await writer.put("credentials", id, {"plugins": {"key-auth": key}})
            previous = loader.current
            await loader.reload()
            assert loader.current is not None
            async with sqlite_store.read() as reader:
                items = await reader.all()
                revision = await reader.revision()
            # As a full compilation with the same previous snapshot (its last good versions).
            fresh = compile_snapshot(revision, items, Services(), loader.pools, previous)
            assert loader.current.revision == revision
            assert _view(loader.current) == _view(fresh), _round
        assert loader.reloads["incremental"] >= 70, loader.reloads
    finally:
        await loader.stop()
