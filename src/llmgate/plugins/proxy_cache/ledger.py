"""The disk zone's usage, shared by every process writing into the directory.

One 32-byte file, ``<zone>/.ledger``: the bytes and the number of entries the zone holds, and
the bytes and entries ever added (four big-endian unsigned 64-bit numbers).  Every change is a
read-modify-write under an exclusive ``flock`` (and a thread lock), so processes sharing the
directory (``--workers N``, or gateways given the same ``LLMGATE_CACHE_DIR``) keep one count
between them.  A write is admitted only while it fits under the caps, which is what keeps the
zone under them between two sweeps.

Every file removed outside a sweep is removed and taken off the count in one step under the
lock (``remove``): a sweep recounts the files and sets the ledger to that count, so a removal
counted after a sweep that already missed its file would be taken off twice, and the zone
would grow past its caps by that much.

The ledger can drift from the files (a process killed between its count and its rename, files
removed by hand): each sweep counts the files and sets it right.  Every method blocks (a file
lock): call them from a thread.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import struct
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

# bytes, entries; and bytes, entries ever added (only growing: what a sweep must add to its count)
_FORMAT = struct.Struct(">QQQQ")
NAME = ".ledger"
_MASK = 2**64 - 1


class Ledger:
    def __init__(self, directory: Path) -> None:
        self.path = directory / NAME
        self._fd: int | None = None
        # flock excludes other processes only: the threads of this one share the descriptor.
        self._threads = threading.Lock()

    def _open(self) -> int:
        if self._fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        return self._fd

    @contextlib.contextmanager
    def _locked(self) -> Iterator[int]:
        with self._threads:
            fd = self._open()
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                yield fd
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)

    @staticmethod
    def _read(fd: int) -> tuple[int, int, int, int]:
        data = os.pread(fd, _FORMAT.size, 0)
        return _FORMAT.unpack(data) if len(data) == _FORMAT.size else (0, 0, 0, 0)

    @staticmethod
    def _change(fd: int, size: int, count: int) -> None:
        used, entries, added, created = Ledger._read(fd)
        os.pwrite(
            fd,
            _FORMAT.pack(
                max(used + size, 0),
                max(entries + count, 0),
                (added + max(size, 0)) & _MASK,
                (created + max(count, 0)) & _MASK,
            ),
            0,
        )

    def usage(self) -> tuple[int, int]:
        """(bytes, entries) the zone holds."""
        with self._locked() as fd:
            return self._read(fd)[:2]

    def mark(self) -> tuple[int, int]:
        """Where the growth counters stand: a sweep reads this before it counts the files."""
        with self._locked() as fd:
            return self._read(fd)[2:]

    def admit(
        self,
        size: int,
        count: int,
        max_bytes: int,
        max_entries: int,
        then: Callable[[], None] | None = None,
    ) -> bool:
        """Count ``size`` more bytes and ``count`` more entries if the zone stays within the
        caps; whether it did.  A change that does not grow the zone is always admitted.
        ``then`` runs under the lock, before the count changes (if it raises, nothing is
        counted): what it does is never seen without the count, nor the count without it."""
        with self._locked() as fd:
            used, entries, _, _ = self._read(fd)
            grows = size > 0 or count > 0
            if grows and (used + size > max_bytes or entries + count > max_entries):
                return False
            if then is not None:
                then()
            self._change(fd, size, count)
            return True

    def remove(self, action: Callable[[], tuple[int, int]]) -> tuple[int, int]:
        """Run ``action``, which deletes files and returns the (bytes, entries) it deleted,
        under the lock and take that off the count in the same step; what it deleted.  (If it
        raises, nothing is counted.)"""
        with self._locked() as fd:
            size, count = action()
            self._change(fd, -size, -count)
            return size, count

    def settle(self, counted: tuple[int, int], mark: tuple[int, int]) -> None:
        """After a sweep: the zone holds what the sweep ``counted``, plus what was added since
        it read ``mark`` (files written meanwhile where the sweep had already looked).  What
        was removed meanwhile is not taken off: the sweep may have counted it or not, so the
        ledger errs on the full side, never on the empty one."""
        with self._locked() as fd:
            _, _, added, created = self._read(fd)
            os.pwrite(
                fd,
                _FORMAT.pack(
                    counted[0] + ((added - mark[0]) & _MASK),
                    counted[1] + ((created - mark[1]) & _MASK),
                    added,
                    created,
                ),
                0,
            )

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
