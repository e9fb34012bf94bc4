"""``/healthz`` and ``/readyz`` on the admin listener (no key needed) and what readiness checks."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from llmgate.admin.auth import AdminKeys
from llmgate.app import build_admin_app
from llmgate.config.document import DocumentError
from llmgate.config.standalone import StandaloneFile
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
    body = await resp.json()
    assert (resp.status, body["status"], body["revision"]) == (200, "ready", 0)
    assert body["store"]["state"] == "ok"
    assert (await client.get("/healthz/store")).status == 200
    assert (await client.get("/apisix/admin/routes")).status == 401  # the rest still needs it


async def test_ready_once_the_data_plane_loaded_its_snapshot(sqlite_store: Store) -> None:
    async with sqlite_store.write() as writer:
        await writer.put("routes", "1", {"uri": "/a", "upstream": {"nodes": {"127.0.0.1:1": 1}}})
    loader = SnapshotLoader(sqlite_store, Services())
    readiness = Readiness(sqlite_store, loader)
    status, body = await readiness.check()
    assert (status, body["reason"]) == (503, "configuration not loaded yet")
    await loader.reload()
    status, body = await readiness.check()
    assert (status, body["status"], body["revision"]) == (200, "ready", 1)
    assert 0 <= body["snapshot_age"] < 5
    await loader.stop()


async def test_not_ready_when_the_store_is_unreachable() -> None:
    store = Store(open_engine(f"postgresql+asyncpg://nobody@127.0.0.1:{free_port()}/none"))
    try:
        status, body = await Readiness(store).check()
    finally:
        await store.close()
    assert status == 503
    assert body["status"] == "not ready"
    assert body["reason"].startswith("store unavailable: ")
    assert body["store"]["state"] == "unavailable"


async def test_not_ready_while_a_worker_is_down(sqlite_store: Store) -> None:
    stopped: list[str] = []
    readiness = Readiness(sqlite_store, stopped_workers=lambda: stopped)
    assert (await readiness.check())[0] == 200
    stopped.append("llmgate-worker-1")
    status, body = await readiness.check()
    assert (status, body["reason"]) == (503, "worker not running: llmgate-worker-1")


async def test_a_standalone_file_is_the_source_and_a_broken_one_is_reported(
    sqlite_store: Store, tmp_path: Path
) -> None:
    """``serve --standalone``: the file is the source; a version that cannot be applied leaves
    the last good one serving (ready, as while the store is gone) and is reported; strict
    readiness answers 503 until the file is good again."""
    path = tmp_path / "apisix.yaml"
    path.write_text("routes: []\n#END\n")
    file = StandaloneFile(str(path), sqlite_url_of(sqlite_store))
    assert await asyncio.to_thread(file.load) is None  # an empty file: nothing to write
    loader = SnapshotLoader(sqlite_store, Services())
    await loader.reload()
    readiness = Readiness(sqlite_store, loader, file=file)
    status, body = await readiness.check()
    assert (status, body["source"]) == (200, "file")
    assert body["file"]["path"] == str(path) and body["file"]["state"] == "ok"
    assert "error" not in body["file"]

    for text, state, error in (
        ("routes: []\n", "invalid", f"{path}: missing #END at the end"),
        (None, "unreadable", f"cannot read {path}: No such file or directory"),
        (b"\xff#END\n", "unreadable", f"{path}: not UTF-8 text"),
    ):
        if text is None:
            path.unlink()
        elif isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text)
        with pytest.raises(DocumentError):
            await asyncio.to_thread(file.load)
        status, body = await readiness.check()
        assert (status, body["source"], body["file"]["state"]) == (200, "file", state)
        assert body["file"]["error"].startswith(error), body
        status, body = await readiness.check(strict=True)
        assert status == 503 and body["reason"].startswith(f"configuration file {state}: {error}")
        assert body["file"]["state"] == state and body["store"]["state"] == "ok"

    path.write_text("routes: []\n#END\n")
    await asyncio.to_thread(file.load)
    status, body = await readiness.check(strict=True)
    assert (status, body["source"], body["file"]["state"]) == (200, "file", "ok")
    await loader.stop()


def sqlite_url_of(store: Store) -> str:
    return store.engine.url.render_as_string(hide_password=False)


def _dead_store() -> Store:
    return Store(open_engine(f"postgresql+asyncpg://nobody@127.0.0.1:{free_port()}/none"))


async def test_a_data_plane_stays_ready_while_the_store_is_gone(
    sqlite_store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    """Serving a loaded snapshot is being ready; the store's state is reported beside it,
    logged once per change, and ``?strict=1`` / ``/healthz/store`` report the store."""
    async with sqlite_store.write() as writer:
        await writer.put("routes", "1", {"uri": "/a", "upstream": {"nodes": {"127.0.0.1:1": 1}}})
    loader = SnapshotLoader(sqlite_store, Services(), interval=0.01)
    await loader.start()
    dead = _dead_store()
    readiness = Readiness(dead, loader)
    try:
        live_probe = loader._probe
        loader._probe = dead.revision  # the database goes away
        caplog.set_level(logging.INFO, "llmgate.store")
        for _ in range(500):
            await asyncio.sleep(0.01)
            if loader.store_state.state == "unavailable":
                break
        await asyncio.sleep(0.3)  # many more failed polls
        status, body = await readiness.check()
        assert (status, body["status"], body["revision"]) == (200, "ready", 1)
        assert body["store"]["state"] == "unavailable"
        assert body["store"]["error"]
        assert body["snapshot_age"] >= 0.3
        status, body = await readiness.check(strict=True)
        assert (status, body["status"]) == (503, "not ready")
        assert body["reason"].startswith("store unavailable: ")
        unavailable = [r for r in caplog.records if "store is unavailable" in r.getMessage()]
        assert len(unavailable) == 1, [r.getMessage() for r in caplog.records]
        loader._probe = live_probe  # it is back
        for _ in range(500):
            await asyncio.sleep(0.01)
            if loader.store_state.state == "ok":
                break
        assert (await readiness.check())[1]["store"]["state"] == "ok"
        again = [r.getMessage() for r in caplog.records if "store answers again" in r.getMessage()]
        assert len(again) == 1, again
    finally:
        await loader.stop()
        await dead.close()


async def test_the_admin_api_answers_503_json_when_the_store_is_gone(
    aiohttp_client,  # type: ignore[no-untyped-def]
    caplog: pytest.LogCaptureFixture,
) -> None:
    dead = _dead_store()
    try:
        client = await aiohttp_client(
            build_admin_app(dead, AdminKeys(ADMIN_KEY)), headers={"X-API-KEY": ADMIN_KEY}
        )
        route = {"uri": "/a", "upstream": {"nodes": {"127.0.0.1:1": 1}}}
        for method, path, body in (
            ("GET", "/apisix/admin/routes", None),
            ("GET", "/apisix/admin/routes/1", None),
            ("PUT", "/apisix/admin/routes/1", route),
            ("DELETE", "/apisix/admin/routes/1", None),
            ("GET", "/apisix/admin/usage", None),
            ("GET", "/apisix/admin/usage/calls", None),
        ):
            resp = await client.request(method, path, json=body)
            assert resp.status == 503, (method, path, await resp.text())
            assert resp.content_type == "application/json"
            error = (await resp.json())["error_msg"]
            assert error.startswith("store unavailable: "), error
            assert "SELECT" not in error and "UPDATE" not in error
        # Still 401 without a key, and readiness says why (an admin-only process is not ready).
        assert (await client.get("/apisix/admin/routes", headers={"X-API-KEY": ""})).status == 401
        resp = await client.get("/readyz")
        assert resp.status == 503
        assert (await resp.json())["store"]["state"] == "unavailable"
        logged = [r for r in caplog.records if "store is unavailable" in r.getMessage()]
        assert len(logged) == 1
    finally:
        await dead.close()
