"""Keeping the disk zone within its caps: nginx's cache manager, for llmgate's file layout.

An entry file's timestamps carry what the sweep needs, so it never reads a file: its mtime is
when the entry expires, its atime when it was last used (set on every write and hit).  A sweep
counts every file of the zone, then removes

- entries that expired, and entries unused for ``INACTIVE`` (nginx's ``inactive=1d``, which
  APISIX configures);
- temporary files (``.new-*``, ``.tmp-<size>-*``) older than ``STALE_TEMPORARY``: a writer
  died half-way (a younger ``.tmp-`` file counts as the ``<size>`` the ledger admitted);
- when the zone is over a cap, or a write found no room (``room``), the least recently used
  entries until it is back under ``LOW_WATER`` of each cap;

and sets the shared ledger right.  One process sweeps a directory at a time (``.sweep.lock``);
the others skip.  Every function blocks: run them in a thread.

Temporary cache directories (no ``LLMGATE_CACHE_DIR``) hold an ``.owner`` file locked by the
gateway process using them; ``remove_stale_roots`` deletes those whose owner is gone (killed
with SIGKILL, say), whatever became of its pid.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from llmgate.plugins.proxy_cache.ledger import Ledger
from llmgate.runtime.services import CacheCaps

log = logging.getLogger("llmgate.plugins.proxy_cache")

INACTIVE = 24 * 3600.0
# A sweep of a zone over a cap evicts down to this share of each cap, so writes do not wait for
# a sweep each.
LOW_WATER = 0.9
CANDIDATES = 4096  # eviction candidates a sweep hands back, at most
STALE_TEMPORARY = 60.0
TEMPORARY_PREFIX = ".tmp-"  # a write the ledger admitted, ".tmp-<size>-..."
NEW_PREFIX = ".new-"  # a write not admitted yet: empty, not counted
LOCK_NAME = ".sweep.lock"
ROOT_PREFIX = "llmgate-cache-"
NEW_ROOT_PREFIX = ".llmgate-cache-new-"
OWNER_NAME = ".owner"


@dataclass(frozen=True, slots=True)
class _File:
    path: str
    size: int
    used: float  # atime
    expires: float  # mtime


@dataclass(frozen=True, slots=True)
class Swept:
    """What one sweep found and did."""

    size: int  # bytes the zone holds afterwards
    entries: int
    expired: int  # removed because expired or inactive
    evicted: int  # removed to get under the caps
    # The least recently used entries left (path, size), oldest first: what a write that
    # finds the zone full evicts, without waiting for another sweep (``_candidates``).
    candidates: tuple[tuple[str, int], ...] = ()


def temporary_prefix(size: int) -> str:
    """The name start of a temporary file for an entry of ``size`` bytes."""
    return f"{TEMPORARY_PREFIX}{size}-"


def _temporary_size(name: str) -> int:
    """The size a temporary file's name announces (what the ledger may have admitted)."""
    size, _, _ = name[len(TEMPORARY_PREFIX) :].partition("-")
    return int(size) if size.isdigit() else 0


def _files(directory: Path) -> list[os.DirEntry[str]]:
    """Every file of ``<zone>/<c>/<cc>/<digest>/``, skipping anything unexpected."""
    found: list[os.DirEntry[str]] = []
    stack = [(str(directory), 0)]
    while stack:
        folder, depth = stack.pop()
        with contextlib.suppress(OSError), os.scandir(folder) as listing:
            for item in listing:
                if depth == 0 and item.name.startswith("."):
                    continue  # the ledger and the lock
                with contextlib.suppress(OSError):
                    if depth < 3 and item.is_dir(follow_symlinks=False):
                        stack.append((item.path, depth + 1))
                    elif depth == 3 and item.is_file(follow_symlinks=False):
                        found.append(item)
    return found


def _remove(path: str) -> bool:
    try:
        os.unlink(path)
        return True
    except FileNotFoundError:
        return False  # purged or replaced meanwhile
    except OSError as exc:
        log.warning("could not remove cache file %s: %s", path, exc)
        return False


def sweep(
    directory: Path, ledger: Ledger, caps: CacheCaps, now: float, room: int = 0
) -> Swept | None:
    """One sweep of the zone at ``directory``; None when another process is sweeping it.

    ``room``: the size of a write that found the zone full; the sweep then evicts until it
    fits (and at least down to ``LOW_WATER``).  Such a sweep waits for another process's to
    end rather than skip."""
    directory.mkdir(parents=True, exist_ok=True)
    lock = os.open(directory / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not room:
                return None
            fcntl.flock(lock, fcntl.LOCK_EX)  # then count afresh: this process's candidates
        mark = ledger.mark()
        entries: list[_File] = []
        # Temporary files: writes in flight, each counted as one entry of the size the ledger
        # admitted (however much is written yet, and even if it was renamed into place since
        # it was listed: the count errs on the full side).
        held = writing = expired = evicted = 0
        folders: set[str] = set()
        for item in _files(directory):
            temporary = item.name.startswith(TEMPORARY_PREFIX)
            try:
                stat = item.stat(follow_symlinks=False)
            except OSError:
                if temporary:
                    held, writing = held + _temporary_size(item.name), writing + 1
                continue
            folders.add(os.path.dirname(item.path))
            if item.name.startswith(NEW_PREFIX):
                if now - stat.st_mtime > STALE_TEMPORARY:
                    _remove(item.path)
                continue
            if temporary:
                if now - stat.st_mtime <= STALE_TEMPORARY or not _remove(item.path):
                    held += max(_temporary_size(item.name), stat.st_size)
                    writing += 1
                continue
            if stat.st_mtime <= now or now - stat.st_atime > INACTIVE:
                expired += _remove(item.path)
                continue
            entries.append(_File(item.path, stat.st_size, stat.st_atime, stat.st_mtime))
        size = held + sum(entry.size for entry in entries)
        count = writing + len(entries)
        entries.sort(key=lambda entry: entry.used)
        gone = 0  # entries[:gone] were evicted (or had gone already)
        if room or size > caps.max_bytes or count > caps.max_entries:
            low_bytes = min(caps.max_bytes * LOW_WATER, caps.max_bytes - room)
            low_count = min(caps.max_entries * LOW_WATER, caps.max_entries - 1)
            while gone < len(entries) and (size > low_bytes or count > low_count):
                entry = entries[gone]
                evicted += _remove(entry.path)
                size, count, gone = size - entry.size, count - 1, gone + 1
        for folder in folders:
            with contextlib.suppress(OSError):
                os.rmdir(folder)  # only when empty (a writer may have just added a file)
        ledger.settle((size, count), mark)
        candidates = _candidates(entries[gone:], caps)
        return Swept(size, count, expired, evicted, candidates)
    finally:
        os.close(lock)


def _candidates(entries: list[_File], caps: CacheCaps) -> tuple[tuple[str, int], ...]:
    """The least recently used of ``entries`` (sorted so), as much as the next sweep would
    evict (``1 - LOW_WATER`` of a cap), never all of them: writers evict from this list until
    the next sweep, and entries landing meanwhile (a write that waited) may have been used
    before the newest ones listed here.  Evicting deeper into an old list would remove the
    newest entries (another process's, say) and keep those older ones."""
    share = 1 - LOW_WATER
    taken: list[tuple[str, int]] = []
    size = 0
    for entry in entries:
        if (
            len(taken) >= CANDIDATES
            or size >= caps.max_bytes * share
            or len(taken) >= caps.max_entries * share
        ):
            break
        taken.append((entry.path, entry.size))
        size += entry.size
    return tuple(taken)


def new_root(parent: Path) -> tuple[Path, int]:
    """A private (0700) temporary cache root under ``parent`` and the descriptor of its locked
    ``.owner`` file (keep it open for as long as the root is in use).  The root appears under
    its final name already locked, so no other process ever takes it for a dead one's."""
    for attempt in range(5):
        staging = Path(tempfile.mkdtemp(prefix=NEW_ROOT_PREFIX, dir=parent))  # mode 0700
        owner = -1
        try:
            owner = os.open(staging / OWNER_NAME, os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(owner, fcntl.LOCK_EX)
            root = parent / (ROOT_PREFIX + staging.name[len(NEW_ROOT_PREFIX) :])
            os.rename(staging, root)
            return root, owner
        except OSError:
            # Another process's remove_stale_roots took it between mkdtemp and flock.
            if owner >= 0:
                os.close(owner)
            if attempt == 4:
                raise
    raise AssertionError("unreachable")


def remove_stale_roots(parent: Path) -> list[Path]:
    """Delete the temporary cache roots under ``parent`` whose owner process is gone; the
    roots removed."""
    removed: list[Path] = []
    with contextlib.suppress(OSError), os.scandir(parent) as listing:
        candidates = [
            Path(item.path)
            for item in listing
            if item.name.startswith((ROOT_PREFIX, NEW_ROOT_PREFIX))
            and item.is_dir(follow_symlinks=False)
        ]
    for root in candidates:
        try:
            owner = os.open(root / OWNER_NAME, os.O_RDWR)
        except OSError:
            continue  # not one of ours (or an older llmgate's): left alone
        try:
            try:
                fcntl.flock(owner, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # its owner is alive
            shutil.rmtree(root, ignore_errors=True)
            removed.append(root)
        finally:
            os.close(owner)
    return removed
