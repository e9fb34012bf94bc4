"""``/healthz`` and ``/readyz`` on the admin listener (no key needed) and what readiness checks."""

from __future__ import annotations

from llmgate.admin.auth import AdminKeys
from llmgate.app import build_admin_app
from llmgate.observability.health import Readiness
from llmgate.runtime.loader import SnapshotLoader
from llmgate.runtime.services import Services
from llmgate.store import Store, open_engine
from tests.processes import free_port
from tests.support import ADMIN_KEY


async def test_admin_listener_health_needs_no_key(aiohttp_client, sqlite_store: Store) -> None:  # type: ignore[no-untyped-def]
    client = await aiohttp_client(build_admin_app(sqlite_store, AdminKeys(ADMIN_KEY)))
    resp = await client.get("/healthz")
    assert (resp.status, await resp.json()) == (200, {"status": "ok"})
    resp = await client.get("/readyz")
    assert (resp.status, await resp.json()) == (200, {"status": "ready", "revision": 0})
    assert (await client.get("/apisix/admin/routes")).status == 401  # the rest still needs it


async def test_ready_once_the_data_plane_loaded_its_snapshot(sqlite_store: Store) -> None:
    async with sqlite_store.write() as writer:
        await writer.put("routes", "1", {"uri": "/a", "upstream": {"nodes": {"127.0.0.1:1": 1}}})
    loader = SnapshotLoader(sqlite_store, Services())
    readiness = Readiness(sqlite_store, loader)
    assert await readiness.check() == (
        503,
        {"status": "not ready", "reason": "configuration not loaded yet"},
    )
    await loader.reload()
    assert await readiness.check() == (200, {"status": "ready", "revision": 1})
    await loader.stop()


async def test_not_ready_when_the_store_is_unreachable() -> None:
    store = Store(open_engine(f"postgresql+asyncpg://nobody@127.0.0.1:{free_port()}/none"))
    try:
        status, body = await Readiness(store).check()
    finally:
        await store.close()
    assert status == 503
    assert body["status"] == "not ready"
    assert body["reason"].startswith("store unreachable (")


async def test_not_ready_while_a_worker_is_down(sqlite_store: Store) -> None:
    stopped: list[str] = []
    readiness = Readiness(sqlite_store, stopped_workers=lambda: stopped)
    assert (await readiness.check())[0] == 200
    stopped.append("llmgate-worker-1")
    assert await readiness.check() == (
        503,
        {"status": "not ready", "reason": "worker not running: llmgate-worker-1"},
    )
