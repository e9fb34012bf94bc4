"""The last-good snapshot on disk: written after a load, read back by a process that starts
while the store does not answer, replaced by the store's revision once it answers."""

from __future__ import annotations

import asyncio
import stat
from pathlib import Path

import pytest

from llmgate.runtime import last_good
from llmgate.runtime.last_good import SnapshotFile, snapshot_path
from llmgate.runtime.loader import SnapshotLoader
from llmgate.runtime.services import Services
from llmgate.store import Store, open_engine
from tests.processes import free_port

ROUTE = {"uri": "/a", "upstream": {"nodes": {"127.0.0.1:1": 1}}}


def _dead_store() -> Store:
    return Store(open_engine(f"postgresql+asyncpg://nobody@127.0.0.1:{free_port()}/none"))


def test_one_file_per_store_and_none_for_sqlite(tmp_path: Path) -> None:
    one = snapshot_path("postgresql+asyncpg://u:secret@db:5432/a", str(tmp_path))
    same = snapshot_path("postgresql+asyncpg://u:other@db:5432/a", str(tmp_path))
    other = snapshot_path("postgresql+asyncpg://u@db:5432/b", str(tmp_path))
    assert one is not None and one == same != other  # the password is not part of the name
    assert one.parent == tmp_path
    assert snapshot_path("sqlite+aiosqlite:///x.db", str(tmp_path)) is None
    assert snapshot_path("postgresql+asyncpg://u@db/a", "off") is None


async def test_a_process_that_starts_without_its_store_serves_the_last_good_snapshot(
    sqlite_store: Store, tmp_path: Path
) -> None:
    async with sqlite_store.write() as writer:
        await writer.put("routes", "1", ROUTE)
        await writer.put("consumers", "jack", {"username": "jack"})
    path = tmp_path / "state" / "snapshot.jsonl"
    first = SnapshotLoader(sqlite_store, Services(), last_good=SnapshotFile(path, "sqlite://"))
    await first.start()
    await first.stop()  # writes what is pending
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert last_good.read_header(path)["revision"] == 1  # type: ignore[index]

    dead = _dead_store()
    second = SnapshotLoader(dead, Services(), last_good=SnapshotFile(path, "sqlite://"))
    try:
        await second.start()
        snapshot = second.current
        assert snapshot is not None and snapshot.revision == 1
        assert second.source == "disk"
        assert second.store_state.state == "unavailable"
        assert snapshot.router.match("GET", None, "/a") is not None
        assert "jack" in snapshot.consumers
    finally:
        await second.stop()
        await dead.close()

    # Without a file, a store that does not answer is still an error at start.
    dead = _dead_store()
    third = SnapshotLoader(dead, Services(), last_good=SnapshotFile(tmp_path / "none", "sqlite://"))
    try:
        with pytest.raises(OSError):
            await third.start()
    finally:
        await third.stop()
        await dead.close()


async def test_the_watcher_catches_up_once_the_store_answers(
    sqlite_store: Store, tmp_path: Path
) -> None:
    path = tmp_path / "snapshot.jsonl"
    async with sqlite_store.write() as writer:
        await writer.put("routes", "1", ROUTE)
    writer_loader = SnapshotLoader(
        sqlite_store, Services(), last_good=SnapshotFile(path, "sqlite://")
    )
    await writer_loader.start()
    await writer_loader.stop()
    async with sqlite_store.write() as writer:  # a change made while "this node" was down
        await writer.put("routes", "2", {**ROUTE, "uri": "/b"})

    dead = _dead_store()
    loader = SnapshotLoader(
        dead, Services(), interval=0.01, last_good=SnapshotFile(path, "sqlite://")
    )
    try:
        await loader.start()
        assert loader.current is not None and loader.current.revision == 1
        loader.store = sqlite_store  # the store answers again
        loader._probe = sqlite_store.revision
        for _ in range(300):
            await asyncio.sleep(0.01)
            if loader.current.revision == 2:
                break
        assert loader.current.revision == 2
        assert loader.source == "store"
        assert loader.current.router.match("GET", None, "/b") is not None
    finally:
        await loader.stop()
        await dead.close()


def test_a_damaged_file_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "snapshot.jsonl"
    path.write_bytes(b'{"format": 1, "revision": 3}\n["routes", "1", 1\n')
    assert last_good.read(path) is None
    path.write_bytes(b'{"format": 99, "revision": 3}\n')
    assert last_good.read(path) is None
