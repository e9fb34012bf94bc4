"""The disk zone's caps: the shared ledger, sweeps (expired, inactive, least recently used),
stale temporary roots of dead gateways; and the memory zone's entry cap."""

from __future__ import annotations

import asyncio
import fcntl
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from llmgate.plugins.proxy_cache import disk
from llmgate.plugins.proxy_cache.disk import DiskStore
from llmgate.plugins.proxy_cache.entry import Entry
from llmgate.plugins.proxy_cache.ledger import Ledger
from llmgate.plugins.proxy_cache.memory import MemoryStore
from llmgate.plugins.proxy_cache.policy import CacheKey
from llmgate.plugins.proxy_cache.sweep import (
    INACTIVE,
    OWNER_NAME,
    new_root,
    remove_stale_roots,
    sweep,
)
from llmgate.runtime.services import CacheCaps


def entry(primary: str, body: bytes = b"x" * 1000, ttl: float = 300.0) -> Entry:
    return Entry(
        key=CacheKey(primary, "GET"),
        status=200,
        headers=(("Content-Type", "text/plain"),),
        chunks=(body,),
        stream=False,
        created=time.time(),
        ttl=ttl,
    )


def zone_files(directory: Path) -> list[Path]:
    return [path for path in directory.rglob("*") if path.is_file() and path.parent != directory]


def zone_bytes(directory: Path) -> int:
    return sum(path.stat().st_size for path in zone_files(directory))


def test_ledger_admits_only_what_fits_and_is_shared(tmp_path: Path) -> None:
    one, other = Ledger(tmp_path), Ledger(tmp_path)  # two processes' views of one file
    assert one.admit(600, 1, max_bytes=1000, max_entries=10)
    assert not other.admit(500, 1, max_bytes=1000, max_entries=10)
    assert other.admit(400, 1, max_bytes=1000, max_entries=10)
    assert one.usage() == (1000, 2)
    assert one.admit(-100, 0, max_bytes=10, max_entries=1)  # shrinking always fits
    assert other.remove(lambda: (900, 2)) == (900, 2)
    assert one.usage() == (0, 0)
    other.remove(lambda: (5, 1))  # never below zero
    assert one.usage() == (0, 0)
    one.close()
    other.close()


def test_ledger_counts_entries_too(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path)
    assert ledger.admit(1, 1, max_bytes=10**6, max_entries=2)
    assert ledger.admit(1, 1, max_bytes=10**6, max_entries=2)
    assert not ledger.admit(1, 1, max_bytes=10**6, max_entries=2)
    assert ledger.admit(5, 0, max_bytes=10**6, max_entries=2)  # a replaced entry: no new one
    ledger.close()


async def test_a_capped_zone_stays_under_its_cap(tmp_path: Path) -> None:
    caps = CacheCaps(max_bytes=40_000, max_entries=1000)
    store = DiskStore(tmp_path / "zone", caps)
    for i in range(300):  # about 330 KB of entries into a 40 KB zone
        await store.put(entry(f"key-{i}"))
        if i % 25 == 0:
            await store.flush()
            assert zone_bytes(store.directory) <= caps.max_bytes
    await store.flush()
    held = zone_bytes(store.directory)
    assert 0 < held <= caps.max_bytes
    assert store.ledger.usage()[0] >= held  # the ledger never counts less than is there
    # The newest entries are the ones kept.
    assert await store.get(CacheKey("key-299", "GET")) is not None
    assert await store.get(CacheKey("key-0", "GET")) is None
    await store.close()


async def test_a_write_backlog_drops_its_oldest_writes_never_the_newest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Writes that fall behind a flood are skipped oldest first: the newest responses are
    the ones an LRU cache must hold afterwards (dropping the newest left a flooded zone full
    of older entries and none of the last ones)."""
    monkeypatch.setattr(disk, "MAX_PENDING", 4)
    store = DiskStore(tmp_path / "zone")
    for i in range(10):  # no await yields here: all ten arrive before any write runs
        await store.put(entry(f"k-{i}"))
    assert await store.get(CacheKey("k-0", "GET")) is None  # memory stays bounded
    assert await store.get(CacheKey("k-9", "GET")) is not None  # visible while it waits
    await store.flush()
    kept = [i for i in range(10) if store.path(CacheKey(f"k-{i}", "GET")).exists()]
    assert kept == [6, 7, 8, 9]
    monkeypatch.setattr(disk, "MAX_PENDING_BYTES", 3 * entry("k-10").size)
    for i in range(10, 20):
        await store.put(entry(f"k-{i}"))
    await store.flush()
    kept = [i for i in range(10, 20) if store.path(CacheKey(f"k-{i}", "GET")).exists()]
    assert kept == [17, 18, 19]
    await store.close()


async def test_an_entry_that_lands_late_is_as_recent_as_its_use(tmp_path: Path) -> None:
    """A write that waited (for the shared count, a sweep, the threads) is stamped with the
    time it was used, not the time it landed: else a backlog of older responses landing late
    looks newer to the sweep than the responses written since, and evicts them first."""
    store = DiskStore(tmp_path / "zone")
    store.directory.mkdir(parents=True, exist_ok=True)
    held = os.open(store.directory / ".ledger", os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(held, fcntl.LOCK_EX)  # another process holds the count: the write waits
    try:
        used = time.time()
        await store.put(entry("late"))
        await asyncio.sleep(1.5)
    finally:
        fcntl.flock(held, fcntl.LOCK_UN)
        os.close(held)
    await store.flush()
    landed = store.path(CacheKey("late", "GET")).stat()
    assert used <= landed.st_atime < used + 0.5
    await store.close()


async def test_the_entry_cap(tmp_path: Path) -> None:
    caps = CacheCaps(max_bytes=10**9, max_entries=20)
    store = DiskStore(tmp_path / "zone", caps)
    for i in range(100):
        await store.put(entry(f"key-{i}", b"tiny"))
        await store.flush()
        assert len(zone_files(store.directory)) <= 20
    await store.close()


async def test_sweep_removes_expired_inactive_and_stale_temporary_files(tmp_path: Path) -> None:
    store = DiskStore(tmp_path / "zone")
    await store.put(entry("fresh"))
    await store.put(entry("expired", ttl=1))
    await store.put(entry("inactive"))
    await store.flush()
    now = time.time()
    inactive = store.path(CacheKey("inactive", "GET"))
    os.utime(inactive, (now - INACTIVE - 10, inactive.stat().st_mtime))
    stale = store.path(CacheKey("fresh", "GET")).parent / ".tmp-1000-left-by-a-crash"
    stale.write_bytes(b"half")
    os.utime(stale, (now - 3600, now - 3600))
    # A write in flight counts as the entry it will be, before its bytes are there.
    writing = store.path(CacheKey("fresh", "GET")).parent / ".tmp-5000-being-written"
    writing.write_bytes(b"new")
    swept = sweep(store.directory, store.ledger, store.caps, now + 2)
    assert swept is not None and swept.expired == 2 and swept.evicted == 0
    assert swept.entries == 2
    assert not stale.exists() and writing.exists()
    assert {path.name for path in zone_files(store.directory)} == {"GET", writing.name}
    # The emptied folders went too.
    assert not store.path(CacheKey("expired", "GET")).parent.exists()
    fresh = store.path(CacheKey("fresh", "GET")).stat().st_size
    assert store.ledger.usage() == (fresh + 5000, 2)
    await store.close()


async def test_sweep_evicts_the_least_recently_used(tmp_path: Path) -> None:
    size = len(entry("k-0").encode())
    caps = CacheCaps(max_bytes=size * 10 + 50, max_entries=100)  # sizes vary by a byte or two
    store = DiskStore(tmp_path / "zone", caps)
    for i in range(10):
        await store.put(entry(f"k-{i}"))
        await store.flush()
    used = time.time() - 100
    for i in range(10):  # k-0 .. k-9, oldest use first; then k-0 and k-1 are used again
        path = store.path(CacheKey(f"k-{i}", "GET"))
        os.utime(path, (used + i, path.stat().st_mtime))
    assert await store.get(CacheKey("k-0", "GET")) is not None
    assert await store.get(CacheKey("k-1", "GET")) is not None
    swept = await store.sweep(room=size)
    assert swept is not None and swept.evicted == 1  # down to 90 %: room for one more
    assert len(zone_files(store.directory)) == 9
    assert await store.get(CacheKey("k-2", "GET")) is None
    for alive in ("k-0", "k-1", "k-3", "k-9"):
        assert await store.get(CacheKey(alive, "GET")) is not None
    await store.close()


async def test_purge_and_unreadable_entries_give_back_their_room(tmp_path: Path) -> None:
    store = DiskStore(tmp_path / "zone")
    await store.put(entry("a"))
    await store.put(entry("b"))
    await store.flush()
    assert store.ledger.usage()[1] == 2
    assert await store.purge("a")
    assert store.ledger.usage() == (zone_bytes(store.directory), 1)
    torn = store.path(CacheKey("b", "GET"))
    torn.write_bytes(b"?" * torn.stat().st_size)
    assert await store.get(CacheKey("b", "GET")) is None
    assert store.ledger.usage() == (0, 0)
    await store.close()


# One process of the stress below: writes (many to keys the others write too, of varied
# sizes, so entries are replaced), purges and sweeps into a zone shared with the others.
_STRESS = """
import asyncio, random, sys, time
from pathlib import Path
from llmgate.plugins.proxy_cache.disk import DiskStore
from llmgate.plugins.proxy_cache.entry import Entry
from llmgate.plugins.proxy_cache.policy import CacheKey
from llmgate.runtime.services import CacheCaps

async def main(directory, seed, max_bytes):
    rng = random.Random(seed)
    store = DiskStore(Path(directory), CacheCaps(max_bytes=max_bytes, max_entries=1000))
    for i in range(150):
        primary = f"shared-{rng.randrange(40)}" if rng.random() < 0.5 else f"own-{seed}-{i}"
        roll = rng.random()
        if roll < 0.05:
            await store.purge(primary)
        elif roll < 0.08:
            await store.sweep()
        else:
            body = b"x" * rng.randrange(200, 2000)
            await store.put(Entry(key=CacheKey(primary, "GET"), status=200, headers=(),
                                  chunks=(body,), stream=False, created=time.time(), ttl=300.0))
        if i % 4 == 0:
            await asyncio.sleep(0)
    await store.flush()
    await store.close()

asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
"""


def test_processes_sharing_a_directory_share_the_caps(tmp_path: Path) -> None:
    """Six processes filling one small zone at once: the zone stays under its cap, and the
    shared count never ends up below what the files hold (a count that drifts low lets
    later writes past the cap)."""
    max_bytes = 30_000
    for trial in range(2):
        directory = tmp_path / f"zone-{trial}"
        children = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    _STRESS,
                    str(directory),
                    str(trial * 10 + n),
                    str(max_bytes),
                ],
                stderr=subprocess.DEVNULL,
            )
            for n in range(6)
        ]
        for child in children:
            assert child.wait(120) == 0
        held, files = zone_bytes(directory), len(zone_files(directory))
        assert held <= max_bytes
        used, entries = Ledger(directory).usage()
        assert used >= held and entries >= files, (trial, used, held, entries, files)


@pytest.mark.parametrize("removal", ["evict", "purge", "unreadable"])
async def test_a_sweep_landing_between_a_removal_and_its_count_loses_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, removal: str
) -> None:
    """Another process's sweep runs just after this one removed an entry: the count must not
    lose that entry twice (once in the sweep's recount, once when the removal is counted)."""
    size = len(entry("k-0").encode())
    caps = CacheCaps(max_bytes=size * 5 + 50, max_entries=100)
    store = DiskStore(tmp_path / "zone", caps)
    for i in range(5):
        await store.put(entry(f"k-{i}"))
        await store.flush()
    await store.sweep()  # hands the store its eviction candidates
    victim = str(store.path(CacheKey("k-0", "GET")))
    elsewhere = Ledger(store.directory)  # the other process's view of the count
    sweeps: list[threading.Thread] = []
    real_unlink, real_rmtree = os.unlink, shutil.rmtree

    def sweep_now() -> None:
        thread = threading.Thread(
            target=sweep, args=(store.directory, elsewhere, caps, time.time())
        )
        thread.start()
        sweeps.append(thread)
        thread.join(1.0)  # it may wait for the ledger: then it comes after the removal

    def unlink(path: Any, *args: Any, **kwargs: Any) -> None:
        real_unlink(path, *args, **kwargs)
        if str(path) == victim and not sweeps:
            sweep_now()

    def rmtree(path: Any, *args: Any, **kwargs: Any) -> None:
        real_rmtree(path, *args, **kwargs)
        if victim.startswith(str(path)) and not sweeps:
            sweep_now()

    monkeypatch.setattr(os, "unlink", unlink)
    monkeypatch.setattr(shutil, "rmtree", rmtree)
    if removal == "evict":
        await store.put(entry("k-5"))  # no room: evicts k-0, the least recently used
        await store.flush()
    elif removal == "purge":
        assert await store.purge("k-0")
    else:
        store.path(CacheKey("k-0", "GET")).write_bytes(b"?" * size)
        assert await store.get(CacheKey("k-0", "GET")) is None
    monkeypatch.undo()
    for thread in sweeps:
        thread.join()
    assert sweeps, "the removal was not seen"
    # Never below what the zone holds (the bug: the removal taken off twice).  One entry above
    # it is allowed: when the sweep reads its mark between the eviction and k-5's admission and
    # then finds k-5's file in place, it counts k-5 twice (``Ledger.settle`` errs on the full
    # side by design; the next sweep sets it right).
    (used, entries), held = store.ledger.usage(), zone_bytes(store.directory)
    files = len(zone_files(store.directory))
    assert held <= used <= held + size and files <= entries <= files + 1, (used, held, entries)
    elsewhere.close()
    await store.close()


def test_memory_store_has_an_entry_cap() -> None:
    store = MemoryStore(capacity=10**9, max_entries=3)

    async def fill() -> None:
        for i in range(10):
            await store.put(entry(f"k-{i}", b"tiny"))

    asyncio.run(fill())
    assert len(store) == 3
    assert asyncio.run(store.get(CacheKey("k-9", "GET"))) is not None


# --- temporary roots ----------------------------------------------------------------------


def test_a_root_is_removed_only_once_its_owner_is_gone(tmp_path: Path) -> None:
    mine, owner = new_root(tmp_path)
    assert mine.name.startswith("llmgate-cache-") and (mine.stat().st_mode & 0o077) == 0
    assert remove_stale_roots(tmp_path) == []  # alive: this process holds its lock
    not_ours = tmp_path / "llmgate-cache-without-owner"
    not_ours.mkdir()
    os.close(owner)  # the owner is gone
    assert remove_stale_roots(tmp_path) == [mine]
    assert not mine.exists() and not_ours.exists()


def test_a_killed_process_leaves_a_root_the_next_one_removes(tmp_path: Path) -> None:
    script = (
        "import sys, time; from pathlib import Path\n"
        "from llmgate.plugins.proxy_cache.sweep import new_root\n"
        "root, _ = new_root(Path(sys.argv[1])); print(root, flush=True); time.sleep(60)\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    root = Path(child.stdout.readline().strip())
    try:
        assert root.exists() and remove_stale_roots(tmp_path) == []  # its owner runs
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert root.exists()
    assert remove_stale_roots(tmp_path) == [root]


def test_a_root_being_created_is_not_taken_for_a_dead_one(tmp_path: Path) -> None:
    """A staging directory whose owner file is locked survives a concurrent cleanup."""
    staging = tmp_path / ".llmgate-cache-new-abc"
    staging.mkdir()
    owner = os.open(staging / OWNER_NAME, os.O_RDWR | os.O_CREAT)
    fcntl.flock(owner, fcntl.LOCK_EX)
    assert remove_stale_roots(tmp_path) == []
    os.close(owner)
    assert remove_stale_roots(tmp_path) == [staging]


async def test_open_without_a_directory_sweeps_dead_roots(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LLMGATE_CACHE_DIR", raising=False)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr("tempfile.tempdir", None)  # read TMPDIR again
    dead, owner = new_root(tmp_path)
    os.close(owner)
    store = DiskStore.open("disk_cache_one")
    assert not dead.exists()
    root = store.directory.parent
    assert root.parent == tmp_path and root.exists()
    await store.close()
    assert not root.exists()


async def test_zones_take_their_caps_from_the_services(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from llmgate.plugins.proxy_cache import open_store
    from llmgate.runtime.services import Services

    monkeypatch.setenv("LLMGATE_CACHE_DIR", str(tmp_path))
    caps = CacheCaps(max_bytes=5 * 1024**2, memory_max_bytes=1024**2, max_entries=77)
    services = Services(cache_caps=caps)
    memory = open_store(services, "memory_cache")
    disk = open_store(services, "disk_cache_one")
    assert isinstance(memory, MemoryStore) and isinstance(disk, DiskStore)
    assert (memory.capacity, memory.max_entries) == (1024**2, 77)
    assert disk.caps == caps
    await services.close()
