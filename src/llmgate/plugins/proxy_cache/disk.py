"""The ``disk_cache_one`` zone: one file per entry, shared by every process using the directory.

Layout (nginx's ``levels=1:2`` on the SHA-256 of the primary key, then one file per variant):

    <root>/disk_cache_one/<h[-1]>/<h[-3:-1]>/<h>/<variant>

``<root>`` is ``$LLMGATE_CACHE_DIR`` when set: entries are then shared by the workers given the
same value and kept across restarts. Otherwise it is a private temporary directory
(``$TMPDIR/llmgate-cache-XXXXXXXX``, mode 0700) removed when the store closes, so separate
gateways never see each other's entries. Writes run in a thread after the response, to a
temporary file renamed into place, so a reader (or a crash) never sees half an entry; until the
rename lands, this process answers from its own pending copy.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from llmgate.plugins.proxy_cache.entry import Entry
from llmgate.plugins.proxy_cache.policy import CacheKey

log = logging.getLogger("llmgate.plugins.proxy_cache")

CACHE_DIR_ENV = "LLMGATE_CACHE_DIR"


class DiskStore:
    def __init__(self, directory: Path, temporary_root: Path | None = None) -> None:
        self.directory = directory
        self.clock: Callable[[], float] = time.time
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # a bad directory costs the cache, never the snapshot
            log.warning("cache directory %s unusable: %s", directory, exc)
        self._temporary_root = temporary_root
        self._pending: dict[CacheKey, Entry] = {}
        self._writes: set[asyncio.Task[None]] = set()

    @classmethod
    def open(cls, zone: str) -> DiskStore:
        """The zone under ``$LLMGATE_CACHE_DIR``, else under a new temporary directory (read
        once, when the store is created, never per request)."""
        configured = os.environ.get(CACHE_DIR_ENV)
        if configured:
            return cls(Path(configured) / zone)
        root = Path(tempfile.mkdtemp(prefix="llmgate-cache-"))
        return cls(root / zone, temporary_root=root)

    def _folder(self, primary: str) -> Path:
        digest = hashlib.sha256(primary.encode("utf-8", "surrogatepass")).hexdigest()
        return self.directory / digest[-1] / digest[-3:-1] / digest

    def path(self, key: CacheKey) -> Path:
        return self._folder(key.primary) / key.variant

    async def get(self, key: CacheKey) -> Entry | None:
        pending = self._pending.get(key)
        if pending is not None:
            return pending
        path = self.path(key)
        try:
            path.stat()  # one stat: misses stay on the loop, cheap
        except OSError:
            return None
        return await asyncio.to_thread(_read, path, key)

    async def put(self, entry: Entry) -> None:
        """Store ``entry`` in the background; visible to this process at once."""
        self._pending[entry.key] = entry
        task = asyncio.create_task(self._write(entry))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def purge(self, primary: str, variant: str | None = None) -> bool:
        """Remove one variant, or all of ``primary``'s; whether anything was there."""
        if variant is None:
            dropped = [key for key in self._pending if key.primary == primary]
            target = self._folder(primary)
        else:
            dropped = [key for key in (CacheKey(primary, variant),) if key in self._pending]
            target = self.path(CacheKey(primary, variant))
        for key in dropped:
            del self._pending[key]
        removed = await asyncio.to_thread(_remove, target, variant is None)
        return removed or bool(dropped)

    async def flush(self) -> None:
        """Wait for the writes in flight."""
        while self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)

    async def close(self) -> None:
        await self.flush()
        if self._temporary_root is not None:
            await asyncio.to_thread(shutil.rmtree, self._temporary_root, True)

    async def _write(self, entry: Entry) -> None:
        try:
            await asyncio.to_thread(_write, self.path(entry.key), entry, self._wanted(entry))
        except OSError as exc:
            log.warning("could not write cache entry %s: %s", self.path(entry.key), exc)
        finally:
            if self._pending.get(entry.key) is entry:
                del self._pending[entry.key]

    def _wanted(self, entry: Entry) -> Callable[[], bool]:
        # A PURGE (or a newer entry) arriving while the file is written cancels this one.
        return lambda: self._pending.get(entry.key) is entry


def _read(path: Path, key: CacheKey) -> Entry | None:
    try:
        entry = Entry.decode(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("unreadable cache entry %s (%s): removed", path, exc)
        with contextlib.suppress(OSError):
            path.unlink()
        return None
    return entry if entry.key == key else None  # a SHA-256 collision: never serve it


def _write(path: Path, entry: Entry, wanted: Callable[[], bool]) -> None:
    data = entry.encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
        if wanted():
            os.replace(temporary, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)


def _remove(target: Path, folder: bool) -> bool:
    """Delete an entry file, or a folder of them; whether an entry was there. (A write in
    flight may be creating the folder meanwhile, so never probe what ``target`` is.)"""
    try:
        if folder:
            existed = any(not name.name.startswith(".tmp-") for name in target.iterdir())
            shutil.rmtree(target, ignore_errors=True)
            return existed
        target.unlink()
        return True
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError as exc:
        log.warning("could not purge cache entry %s: %s", target, exc)
        return False
