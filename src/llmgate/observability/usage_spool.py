"""The node-local spool of usage deltas: what a data-plane process counts is appended here
before it is counted in memory, and shipped to the store from memory afterwards.

    <dir>/<holder>.lock        held (flock) by the process for its whole life
    <dir>/<holder>.<n>.seg     segments: one record per LLM call, copied into a shared memory
                               mapping of the segment when it is counted (the kernel's page
                               cache: a killed process loses nothing) and fsync'd every spool
                               interval (an OS crash loses at most that); the process closes its
                               segment at each shipment and deletes the segments the store
                               received

A record is a 4-byte big-endian length, the CRC-32 of the payload, the payload (JSON).  A
record cut short by a crash fails its length or CRC: it and anything after it are ignored.  A
segment is mapped ``WINDOW`` bytes at a time, each window's blocks reserved first
(``posix_fallocate``: a full disk is an ``OSError`` there, never a SIGBUS when a record is
copied); a record never straddles two windows, and the unused end of a window (zeros, read as a
record of length 0) is skipped.  A closed segment is cut to its last record.  Where the file
system reserves no blocks, records are written with pwrite(2) instead.  A lock nobody holds is
a process that died (the kernel drops a dead process's locks, SIGKILL included): any process of
the node claims it, ships its segments and deletes them.  A segment is one batch of the store,
``<holder>:<n>``, and the store records each batch it received, so shipping one twice (a crash
between the store's commit and the deletion here) counts it once.

``append`` is the only call on the request path: a memory copy, no system call and no release
of the GIL (a write(2) per call let the spool's and the store's threads take the GIL from the
event loop once a request); the other methods do blocking file I/O and are run in a thread, one
at a time, never during ``detach``.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import mmap
import os
import secrets
import socket
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

_HEAD = struct.Struct("!II")  # length, crc32
MAX_RECORD = 64 * 1024 * 1024
WINDOW = 1 << 20  # bytes of a segment mapped at a time (a multiple of every page size)


def holder_id() -> str:
    """This process, unique across nodes and restarts (a file name and a batch id prefix)."""
    host = "".join(c if c.isalnum() or c in "-_" else "_" for c in socket.gethostname())[:40]
    return f"{host}-{os.getpid()}-{secrets.token_hex(6)}"


def default_directory(database_url: str, state_home: str | None = None) -> Path:
    """Where a node spools by default: beside a SQLite file (``<file>.spool``); for another
    store, ``$XDG_STATE_HOME/llmgate/spool-<digest of the URL>`` (~/.local/state)."""
    prefix, _, path = database_url.partition(":///")
    if prefix.startswith("sqlite") and path and not path.startswith(":memory:"):
        return Path(path.split("?", 1)[0] + ".spool")
    home = state_home or os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local/state")
    digest = hashlib.sha256(database_url.encode()).hexdigest()[:16]
    return Path(home) / "llmgate" / f"spool-{digest}"


def frame(payload: bytes) -> bytes:
    return _HEAD.pack(len(payload), zlib.crc32(payload)) + payload


def records(data: bytes) -> Iterator[bytes]:
    """The whole records of a segment, up to the first torn or damaged one."""
    offset = 0
    while offset + _HEAD.size <= len(data):
        size, crc = _HEAD.unpack_from(data, offset)
        if size == 0:  # the unused end of a window (no payload is empty): go on at the next
            offset = (offset // WINDOW + 1) * WINDOW
            continue
        start, end = offset + _HEAD.size, offset + _HEAD.size + size
        if size > MAX_RECORD or end > len(data) or zlib.crc32(data[start:end]) != crc:
            return
        yield data[start:end]
        offset = end


@dataclass
class Orphan:
    """The spool of a process that died, claimed by this one (its lock held until released)."""

    holder: str
    lock: int  # the file descriptor holding the claim
    segments: list[Path] = field(default_factory=list)

    def read(self) -> list[tuple[int, list[bytes]]]:
        """Each segment's number and records."""
        out = []
        for segment in self.segments:
            with contextlib.suppress(FileNotFoundError):
                out.append((segment_number(segment), list(records(segment.read_bytes()))))
        return out


class Spool:
    """This process's segments in ``directory``, and the claiming of dead processes' ones."""

    def __init__(self, directory: Path, holder: str | None = None) -> None:
        self.directory = directory
        self.holder = holder or holder_id()
        self.number = 1  # the segment appended to (its batch id: ``<holder>:<number>``)
        self._lock: int | None = None
        self._segment: int | None = None  # its file descriptor, once a record is written
        # The segment's mapped window (None: none yet, or pwrite(2) where blocks cannot be
        # reserved), the window's start and end in the file, and the end of the last record.
        self._window: mmap.mmap | None = None
        self._start = self._end = self._used = 0
        self._mapping = True
        self._lengths: dict[int, int] = {}  # detached segments' descriptors -> their length
        # Records written and files created, and how many of them the last sync covered
        # (counters: ``append`` runs while ``sync`` does, in another thread).
        self._written = self._synced = 0
        self._created = self._synced_created = 0
        self._closed: list[Path] = []  # detached, not yet shipped

    @property
    def ready(self) -> bool:
        return self._lock is not None

    def open(self) -> None:
        """Create the directory (0700) and hold this process's lock.  The lock file gets its
        final name only once it is locked, so no scan ever claims a process that lives."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        temporary = self.directory / f"{self.holder}.lock.new"
        fd = os.open(temporary, os.O_CREAT | os.O_RDWR, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.rename(temporary, self.directory / f"{self.holder}.lock")
        self._lock = fd

    def append(self, payload: bytes) -> None:
        """One record at the end of the current segment (``OSError`` when it cannot be)."""
        data = _HEAD.pack(len(payload), zlib.crc32(payload)) + payload  # frame(), inlined
        window, used = self._window, self._used
        end = used + len(data)
        if window is None or end > self._end:
            self._next_window(len(data))
            window, used = self._window, self._used
            end = used + len(data)
            segment = self._segment
            if window is None and segment is not None:  # no blocks reserved: one pwrite(2)
                written = os.pwrite(segment, data, used)
                if written != len(data):
                    raise OSError(f"short write to the usage spool ({written} of {len(data)})")
                self._used = self._end = end
                self._written += 1
                return
        if window is None:  # never: a window or pwrite(2)
            raise OSError("the usage spool has no open segment")
        start = self._start
        window[used - start : end - start] = data
        self._used = end
        self._written += 1

    def _next_window(self, size: int) -> None:
        """Map the segment's next window, big enough for a record of ``size`` bytes (the
        segment is created first); its blocks are reserved before a byte is copied."""
        if self._segment is None:
            path = self._path(self.number)
            self._segment = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
            self._created += 1
            self._start = self._end = self._used = 0
        if self._window is not None:
            self._window.close()  # its pages stay in the page cache, dirty until synced
            self._window = None
        if not self._mapping:
            return
        start, length = self._end, -(-size // WINDOW) * WINDOW
        try:
            os.posix_fallocate(self._segment, start, length)
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                raise  # a full disk: this record fails, the next one tries again
            self._mapping = False  # the file system reserves nothing: pwrite(2) from here on
            return
        self._window = mmap.mmap(self._segment, length, offset=start)
        self._start, self._end, self._used = start, start + length, start

    @property
    def dirty(self) -> bool:
        """Whether ``sync`` has anything to do: a segment created, or records appended to the
        current one, since the last sync (read on the event loop, between two syncs)."""
        if self._created != self._synced_created:
            return True
        return self._segment is not None and self._written != self._synced

    def sync(self) -> None:
        """fsync what was appended since the last call (and a new segment's name); on Linux
        fsync(2) writes back the pages dirtied through the mapping too."""
        written, created, segment = self._written, self._created, self._segment
        if created != self._synced_created:
            _sync_directory(self.directory)
            self._synced_created = created
        if segment is not None and written != self._synced:
            os.fsync(segment)
            self._synced = written

    def detach(self) -> int | None:
        """End the current segment: later records go to the next one.  Returns its file
        descriptor (None: nothing was written), for ``close_detached`` in a thread."""
        segment, self._segment = self._segment, None
        if self._window is not None:
            self._window.close()
            self._window = None
        if segment is not None:
            self._closed.append(self._path(self.number))
            self._lengths[segment] = self._used
        self._start = self._end = self._used = 0
        self.number += 1
        return segment

    def close_detached(self, segment: int | None) -> list[Path]:
        """fsync and close a detached segment; returns every segment not yet shipped."""
        if segment is not None:
            try:
                length = self._lengths.pop(segment, None)
                if length is not None:  # the reserved blocks past its last record
                    os.ftruncate(segment, length)
                os.fsync(segment)
            finally:
                os.close(segment)
        return list(self._closed)

    def shipped(self, segments: list[Path]) -> None:
        """Delete ``segments``: every record in them is in the store."""
        for path in segments:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            with contextlib.suppress(ValueError):
                self._closed.remove(path)

    def claim_orphans(self) -> list[Orphan]:
        """The spools of dead processes of this node, each claimed (locked) by this one."""
        claimed = []
        for lock_path in sorted(self.directory.glob("*.lock")):
            holder = lock_path.name[: -len(".lock")]
            if holder == self.holder:
                continue
            try:
                fd = os.open(lock_path, os.O_RDWR)
            except FileNotFoundError:
                continue  # another process just finished with it
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)  # alive (or claimed by another process right now)
                continue
            if not lock_path.exists():  # released and removed while we waited
                os.close(fd)
                continue
            segments = sorted(self.directory.glob(f"{holder}.*.seg"), key=segment_number)
            claimed.append(Orphan(holder, fd, segments))
        return claimed

    def release(self, orphan: Orphan, *, shipped: bool) -> None:
        """Let go of a claimed orphan; once ``shipped``, delete its files (segments first: a
        lock without segments is harmless, segments without a lock would never be found)."""
        if shipped:
            for path in orphan.segments:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
            with contextlib.suppress(FileNotFoundError):
                (self.directory / f"{orphan.holder}.lock").unlink()
        os.close(orphan.lock)

    def close(self, *, shipped: bool) -> None:
        """At a clean stop (after the last shipment): with everything ``shipped``, nothing of
        this process stays; else the node's next process ships what is left."""
        self.close_detached(self.detach())
        if shipped:
            self.shipped(list(self._closed))
        if self._lock is not None:
            if shipped:
                with contextlib.suppress(FileNotFoundError):
                    (self.directory / f"{self.holder}.lock").unlink()
            os.close(self._lock)
            self._lock = None
        with contextlib.suppress(OSError):  # the node's last process leaves nothing behind
            self.directory.rmdir()

    def _path(self, number: int) -> Path:
        return self.directory / f"{self.holder}.{number}.seg"


def segment_number(path: Path) -> int:
    return int(path.name.rsplit(".", 2)[-2])


def _sync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
