"""The disk zone's blocking file work, run in threads: read an entry file, write one (admitted
by the ledger first, renamed into place), remove one or a key's folder of them.  Every change to
the bytes and entries the zone holds is counted in the same step by the ledger (ledger.py)."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from llmgate.plugins.proxy_cache.entry import Entry
from llmgate.plugins.proxy_cache.ledger import Ledger
from llmgate.plugins.proxy_cache.policy import CacheKey
from llmgate.plugins.proxy_cache.sweep import NEW_PREFIX, temporary_prefix
from llmgate.runtime.services import CacheCaps

log = logging.getLogger("llmgate.plugins.proxy_cache")

EVICTIONS_PER_WRITE = 64


def read_entry(path: Path, key: CacheKey, ledger: Ledger) -> Entry | None:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        entry = Entry.decode(data)
    except ValueError as exc:
        log.warning("unreadable cache entry %s (%s): removed", path, exc)
        with contextlib.suppress(OSError):
            ledger.remove(lambda: unlink_entry(str(path)))
        return None
    if entry.key != key:
        return None  # a SHA-256 collision: never serve it
    with contextlib.suppress(OSError):  # last used now (the sweep evicts the least recent)
        os.utime(path, (time.time(), entry.created + entry.ttl))
    return entry


def write_entry(
    path: Path,
    entry: Entry,
    used: float,
    wanted: Callable[[], bool],
    ledger: Ledger,
    caps: CacheCaps,
    evict: Callable[[Path], bool],
) -> int:
    """Write ``entry`` (last ``used`` then) if the zone has room for it, evicting (``evict``) up to
    ``EVICTIONS_PER_WRITE`` entries to make it: 0, or the bytes a sweep must free first (the
    entry is then not written).

    An empty ``.new-*`` file becomes ``.tmp-<size>-*`` in the same step as the ledger counts
    it, as a whole new entry: a sweep running meanwhile sees every write the ledger admitted
    (and counts it by name), and nothing a refused write left.  The rename into place and the
    entry it replaces (measured then, not before) are counted in one step too (``_land``)."""
    data = entry.encode()
    if len(data) > caps.max_bytes:
        return 0  # never fits: not worth a sweep
    descriptor, new = temporary_file(path.parent)
    counted = os.path.join(path.parent, temporary_prefix(len(data)) + os.path.basename(new))
    admitted = False
    try:
        with os.fdopen(descriptor, "wb") as file:
            for _ in range(EVICTIONS_PER_WRITE + 1):
                admitted = ledger.admit(
                    len(data), 1, caps.max_bytes, caps.max_entries, lambda: os.rename(new, counted)
                )
                if admitted or not evict(path):
                    break
            if not admitted:
                return len(data)
            file.write(data)
        # atime: last used; mtime: when it expires (what the sweep reads).
        os.utime(counted, (used, entry.created + entry.ttl))
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(new)
        if admitted:
            ledger.remove(lambda: _land(counted, path, len(data), wanted))
    return 0


def _land(counted: str, path: Path, size: int, wanted: Callable[[], bool]) -> tuple[int, int]:
    """Rename the admitted file ``counted`` (of ``size`` bytes) into place if it is still
    ``wanted``, else delete it; what that removed: the entry it replaced, or itself."""
    if wanted():
        try:
            replaced = os.stat(path).st_size
        except FileNotFoundError:
            replaced = -1
        try:
            os.replace(counted, path)
        except FileNotFoundError:
            pass  # its folder was purged meanwhile
        else:
            return (replaced, 1) if replaced >= 0 else (0, 0)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(counted)
    return size, 1


def unlink_entry(path: str) -> tuple[int, int]:
    """Delete the entry file at ``path``: (its size, 1), or (0, 0) when it was gone."""
    try:
        size = os.stat(path).st_size
        os.unlink(path)
    except FileNotFoundError:
        return 0, 0
    return size, 1


def temporary_file(folder: Path) -> tuple[int, str]:
    """A new empty ``.new-*`` file in ``folder``, created as needed (again if a sweep removed
    it as empty in between)."""
    for attempt in range(3):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            return tempfile.mkstemp(dir=folder, prefix=NEW_PREFIX)
        except (FileNotFoundError, FileExistsError):
            # FileExistsError: mkdir found a folder there, which a sweep then removed (empty)
            # before mkdir could check that it is a folder.
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def remove_entries(target: Path, folder: bool, ledger: Ledger) -> bool:
    """Delete an entry file, or a folder of them; whether an entry was there. (A write in
    flight may be creating the folder meanwhile, so never probe what ``target`` is.)"""
    try:
        if folder:
            return ledger.remove(lambda: _remove_folder(target))[1] > 0
        return ledger.remove(lambda: unlink_entry(str(target)))[1] > 0
    except NotADirectoryError:
        return False
    except OSError as exc:
        log.warning("could not purge cache entry %s: %s", target, exc)
        return False


def _remove_folder(target: Path) -> tuple[int, int]:
    """Delete a key's folder: the (bytes, entries) of the entries it held.  Writes in flight
    there (dot files) are their writers' to count: ``_land`` finds them gone."""
    try:
        sizes = [
            item.stat().st_size for item in os.scandir(target) if not item.name.startswith(".")
        ]
    except FileNotFoundError:
        return 0, 0
    shutil.rmtree(target, ignore_errors=True)
    return sum(sizes), len(sizes)
