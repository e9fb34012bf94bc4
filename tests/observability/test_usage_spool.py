"""The usage spool: what a process counted is on disk within one spool interval, the spool of
a process that died is shipped by another process of its node, and no batch is counted twice
(SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import errno
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, func, select

from llmgate.ai.usage import Usage
from llmgate.observability.usage import UsageReporter
from llmgate.observability.usage_query import UsageQuery, summarize
from llmgate.observability.usage_spool import WINDOW, Spool, default_directory, frame, records
from llmgate.store import Store
from llmgate.store.tables import llm_calls, usage_batches
from llmgate.store.tables import usage as usage_table
from tests.observability.test_usage import call_record


@pytest.fixture
async def usage_store(store: Store) -> AsyncIterator[Store]:
    async def clear() -> None:
        async with store.engine.begin() as conn:
            for table in (usage_table, llm_calls, usage_batches):
                await conn.execute(delete(table))

    await clear()
    yield store
    await clear()  # the PostgreSQL database lives for the whole session


async def stored(store: Store) -> tuple[int, int]:
    """The requests in ``usage`` and the rows of ``llm_calls``."""
    summary = await summarize(store, UsageQuery())
    async with store.engine.connect() as conn:
        calls = (await conn.execute(select(func.count()).select_from(llm_calls))).scalar_one()
    return int(summary["total"]["requests"]), int(calls)


def spooled(store: Store, directory: Path) -> UsageReporter:
    """A process's reporter holding its spool (not started: the test drives it)."""
    spool = Spool(directory)
    spool.open()
    return UsageReporter(store, spool=spool)


def names(directory: Path, pattern: str = "*") -> list[str]:
    return sorted(path.name for path in directory.glob(pattern))


@pytest.fixture
def spool_dir(tmp_path: Path) -> Path:
    return tmp_path / "spool"


def die(reporter: UsageReporter) -> None:
    """SIGKILL, as the spool sees it: the lock goes, nothing is shipped or deleted."""
    assert reporter.spool is not None and reporter.spool._lock is not None
    os.close(reporter.spool._lock)
    reporter.spool._lock = None


async def test_a_dead_processes_spool_is_shipped_once(usage_store: Store, spool_dir: Path) -> None:
    dead = spooled(usage_store, spool_dir)
    for i in range(3):  # each appended to the spool before it is counted in memory
        dead.add("jack", "1", "m", Usage(1, 1, 2), call=call_record(f"r{i}", 1_700_000_000_000))
    dead.add("jack", "1", "m", Usage(1, 1, 2))
    await dead.sync()  # fsync'd (a SIGKILL does not need it: the kernel has the writes)
    segments = names(spool_dir, "*.seg")
    assert len(segments) == 1
    record = (spool_dir / segments[0]).read_bytes()
    die(dead)

    heir = spooled(usage_store, spool_dir)
    await heir.recover()
    assert await stored(usage_store) == (4, 3)
    assert heir.spool is not None and dead.spool is not None
    assert names(spool_dir) == [f"{heir.spool.holder}.lock"]
    # A crash between the store's commit and the deletion here: the same records again.
    (spool_dir / segments[0]).write_bytes(record)
    (spool_dir / f"{dead.spool.holder}.lock").touch()
    await heir.recover()
    assert await stored(usage_store) == (4, 3)
    assert names(spool_dir) == [f"{heir.spool.holder}.lock"]


async def test_a_living_processes_spool_is_left_alone(usage_store: Store, spool_dir: Path) -> None:
    alive, other = spooled(usage_store, spool_dir), spooled(usage_store, spool_dir)
    alive.add("jack", "1", "m", Usage(1, 1, 2))
    await other.recover()
    assert await stored(usage_store) == (0, 0)
    assert await alive.flush() == 1  # its own shipment, which deletes its segments
    assert await stored(usage_store) == (1, 0)
    assert names(spool_dir, "*.seg") == []


async def test_batches_wait_for_the_store_on_disk_and_ship_once(
    usage_store: Store, spool_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store is down: shipments fail, batches stay spooled; the process dies; the next
    one ships them all once the store is back."""
    reporter = spooled(usage_store, spool_dir)

    async def down(_batches: object) -> int:
        raise OSError("store unreachable")

    monkeypatch.setattr(reporter, "_ship", down)
    for _ in range(3):
        reporter.add("jack", "1", "m", Usage(1, 1, 2))
        assert await reporter.flush() == 0
    assert len(names(spool_dir, "*.seg")) == 3  # one segment per attempt, none deleted
    die(reporter)
    monkeypatch.undo()
    heir = spooled(usage_store, spool_dir)
    await heir.recover()
    assert await stored(usage_store) == (3, 0)


async def test_own_spool_is_gone_after_a_clean_stop(usage_store: Store, spool_dir: Path) -> None:
    reporter = UsageReporter(usage_store, interval=60, spool=Spool(spool_dir))
    await reporter.start()
    reporter.add("jack", "1", "m", Usage(1, 1, 2))
    assert names(spool_dir, "*.seg")  # appended at once, shipped at stop
    await reporter.stop()
    assert await stored(usage_store) == (1, 0)
    assert names(spool_dir) == []


def test_a_torn_or_damaged_record_ends_a_segment() -> None:
    whole, torn = frame(b'{"a":1}'), frame(b'{"b":2}')
    assert list(records(whole + torn[:-2])) == [b'{"a":1}']
    damaged = whole + torn[:-1] + b"x"
    assert list(records(damaged)) == [b'{"a":1}']
    assert list(records(whole + whole)) == [b'{"a":1}', b'{"a":1}']


def test_default_directory() -> None:
    assert default_directory("sqlite+aiosqlite:////var/lib/llmgate.db") == Path(
        "/var/lib/llmgate.db.spool"
    )
    pg = default_directory("postgresql+asyncpg://u:p@db/x", state_home="/state")
    assert pg.parent == Path("/state/llmgate") and pg.name.startswith("spool-")
    assert "p@db" not in str(pg)


def appended(spool: Spool, payloads: list[bytes]) -> Path:
    """``payloads`` appended to ``spool`` (opened), and its current segment's path."""
    for payload in payloads:
        spool.append(payload)
    return spool._path(spool.number)


def test_records_go_on_past_the_unused_end_of_a_window(tmp_path: Path) -> None:
    # ~2.5 windows of records: none straddles two windows, each is read back in order.
    spool = Spool(tmp_path)
    spool.open()
    payloads = [b'{"n":%d,"pad":"%s"}' % (i, b"x" * (i % 300)) for i in range(14_000)]
    segment = appended(spool, payloads)
    assert segment.stat().st_size > 2 * WINDOW  # mapped windows, blocks reserved
    assert list(records(segment.read_bytes())) == payloads  # as an heir reads a dead one's
    spool.close_detached(spool.detach())
    assert segment.stat().st_size == sum(len(frame(p)) for p in payloads) + padding(segment)
    assert list(records(segment.read_bytes())) == payloads


def padding(segment: Path) -> int:
    """The zeros a closed segment keeps at the ends of its windows (not its last one)."""
    data, offset, zeros = segment.read_bytes(), 0, 0
    for payload in records(data):
        at = data.index(frame(payload), offset)
        zeros, offset = zeros + at - offset, at + len(frame(payload))
    return zeros


def test_a_record_bigger_than_a_window_gets_a_window_of_its_own(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.open()
    big = b'"' + b"y" * (WINDOW * 2 + 10) + b'"'
    segment = appended(spool, [b"1", big, b"2"])
    assert list(records(segment.read_bytes())) == [b"1", big, b"2"]


def test_a_killed_process_loses_no_record(tmp_path: Path) -> None:
    """SIGKILL right after the last append, nothing synced: the page cache has every record."""
    script = (
        "import os, signal, sys\n"
        "from pathlib import Path\n"
        "from llmgate.observability.usage_spool import Spool\n"
        "spool = Spool(Path(sys.argv[1]), holder='dead')\n"
        "spool.open()\n"
        "for i in range(5000):\n"
        "    spool.append(b'{\"call\":%d}' % i)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path)], env=env, timeout=60)
    assert done.returncode == -signal.SIGKILL
    data = (tmp_path / "dead.1.seg").read_bytes()
    assert list(records(data)) == [b'{"call":%d}' % i for i in range(5000)]


def test_a_full_disk_fails_the_record_not_the_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No window without reserved blocks (a copy into an unreserved page of a full disk is a
    SIGBUS); the record that met the full disk fails, later ones are written."""
    spool = Spool(tmp_path)
    spool.open()
    real = os.posix_fallocate

    def full(fd: int, offset: int, length: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full)
    with pytest.raises(OSError):
        spool.append(b"1")
    monkeypatch.setattr(os, "posix_fallocate", real)
    segment = appended(spool, [b"2", b"3"])
    assert list(records(segment.read_bytes())) == [b"2", b"3"]


def test_without_block_reservation_records_are_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unsupported(fd: int, offset: int, length: int) -> None:
        raise OSError(errno.EOPNOTSUPP, "Operation not supported")

    spool = Spool(tmp_path)
    spool.open()
    monkeypatch.setattr(os, "posix_fallocate", unsupported)
    payloads = [b'{"n":%d}' % i for i in range(3000)]
    segment = appended(spool, payloads)
    spool.sync()
    assert list(records(segment.read_bytes())) == payloads
    spool.close_detached(spool.detach())
    assert segment.stat().st_size == sum(len(frame(p)) for p in payloads)


async def test_an_idle_reporter_hands_its_thread_nothing(
    sqlite_store: Store, spool_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The spool is fsync'd every spool interval and shipped every interval, each a hop to a
    thread: without new records there is nothing to sync or close, and no hop (an idle
    gateway would otherwise wake a thread and its event loop 21 times a second)."""
    hops: list[str] = []
    to_thread = asyncio.to_thread

    async def counted(function: Any, /, *args: Any, **kwargs: Any) -> Any:
        hops.append(getattr(function, "__name__", "?"))
        return await to_thread(function, *args, **kwargs)

    monkeypatch.setattr(asyncio, "to_thread", counted)
    reporter = UsageReporter(
        sqlite_store, interval=0.05, spool=Spool(spool_dir), spool_interval=0.01
    )
    await reporter.start()
    spool = reporter.spool
    assert spool is not None

    async def until(check: Callable[[], bool]) -> None:
        for _ in range(1000):
            if check():
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"not within 10 s: {hops}")

    for expected in (1, 2):
        reporter.add("jack", "1", "m", Usage(1, 1, 2))
        await until(lambda: "shipped" in hops and not spool.dirty)  # synced, shipped
        assert "sync" in hops and "close_detached" in hops
        assert await stored(sqlite_store) == (expected, 0)
        await asyncio.sleep(0.05)
        hops.clear()
        await asyncio.sleep(0.3)  # 30 spool intervals, 6 shipments: nothing new
        assert hops == []
    await reporter.stop()


def test_a_spool_is_dirty_until_synced(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.open()
    assert not spool.dirty
    spool.append(b'"a"')
    assert spool.dirty  # a segment created, a record appended
    spool.sync()
    assert not spool.dirty
    spool.append(b'"b"')
    assert spool.dirty
    spool.close_detached(spool.detach())  # fsync'd as it is closed
    spool.sync()
    assert not spool.dirty
    spool.sync()
    assert not spool.dirty
    spool.close(shipped=True)
