"""The last-good snapshot on local disk: a process that starts while the store is unreachable
serves the configuration its node saw last, and catches up when the store answers again.

Every data-plane process writes the rows of the revision it serves (not what they compiled to:
a newer llmgate compiles them afresh) to one file per node and store::

    <snapshot_dir>/snapshot-<digest of the database URL>.jsonl
    line 1     {"format": 1, "revision": N, "database": "<url without password>", "written": t}
    line 2...  ["routes", "1", created_index, modified_index, {value}]

``snapshot_dir`` defaults to ``$XDG_STATE_HOME/llmgate`` (``~/.local/state/llmgate``).  The
file holds what the store holds (hashed credentials, and provider keys as written), so the
directory is 0700 and the file 0600.  It is written atomically (a temporary file renamed over
it), at most once per ``WRITE_PAUSE`` with the newest revision, serialised on the event loop in
slices and written by a thread; the node's workers share it (whichever wrote last wins: they
serve the same store).  Only a PostgreSQL store gets one: a SQLite store is a local file
already.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy.engine import make_url

from llmgate.store import Item
from llmgate.store.engine import is_sqlite
from llmgate.tasks import cancel_and_wait

log = logging.getLogger("llmgate.runtime")

FORMAT = 1
WRITE_PAUSE = 1.0  # seconds at least between two writes of the file by one process
_SLICE = 500  # items serialised between two yields to the event loop


def default_dir() -> Path:
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "llmgate"


def snapshot_path(database_url: str, directory: str | None) -> Path | None:
    """Where this node keeps the last-good snapshot of ``database_url``; None: kept nowhere
    (a SQLite store, or ``snapshot_dir = "off"``)."""
    if directory == "off" or is_sqlite(database_url):
        return None
    parsed = make_url(database_url)
    url = parsed._replace(password=None).render_as_string(hide_password=False)
    digest = hashlib.sha256(url.encode()).hexdigest()[:16]
    return Path(directory or default_dir()) / f"snapshot-{digest}.jsonl"


def _public_url(database_url: str) -> str:
    return make_url(database_url).render_as_string(hide_password=True)


def read_header(path: Path) -> dict[str, Any] | None:
    """The file's first line (its revision, when it was written), without reading the rows."""
    try:
        with path.open("rb") as file:
            header = orjson.loads(file.readline())
    except (OSError, orjson.JSONDecodeError):
        return None
    return header if isinstance(header, dict) else None


def read(path: Path) -> tuple[int, list[Item]] | None:
    """The revision and rows kept at ``path``; None when there is no usable file."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.warning("cannot read the last-good snapshot %s: %s", path, exc.strerror or exc)
        return None
    lines = raw.split(b"\n")
    try:
        header = orjson.loads(lines[0])
        if header.get("format") != FORMAT:
            log.warning("ignoring the last-good snapshot %s: unknown format", path)
            return None
        items = []
        for line in lines[1:]:
            if line:
                kind, id, created, modified, value = orjson.loads(line)
                items.append(Item(kind, id, value, created, modified))
    except (orjson.JSONDecodeError, ValueError, TypeError, AttributeError):
        log.warning("ignoring the last-good snapshot %s: damaged", path)
        return None
    return int(header["revision"]), items


class SnapshotFile:
    """Writes the served revision's rows to ``path`` (at most once per ``WRITE_PAUSE``)."""

    def __init__(self, path: Path, database_url: str) -> None:
        self.path = path
        self._database = _public_url(database_url)
        self._pending: tuple[int, list[Item]] | None = None
        self._latest: tuple[int, list[Item]] | None = None
        self.written_revision: int | None = None
        self._written = 0.0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._failing = False

    def read(self) -> tuple[int, list[Item]] | None:
        return read(self.path)

    def age(self) -> float | None:
        """Seconds since the file was last written (by any process of the node)."""
        try:
            return time.time() - self.path.stat().st_mtime
        except OSError:
            return None

    def save(self, revision: int, items: Iterable[Item]) -> None:
        """Keep ``revision`` (its rows: ``items``) on disk soon; a newer one replaces it."""
        self._pending = self._latest = (revision, list(items))
        self._wake.set()
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="llmgate-snapshot-file")

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            pause = self._written + WRITE_PAUSE - time.monotonic()
            if pause > 0:
                await asyncio.sleep(pause)
            pending, self._pending = self._pending, None
            if pending is not None:
                await self._write(*pending)
                self._written = time.monotonic()

    async def _write(self, revision: int, items: list[Item]) -> None:
        header = {
            "format": FORMAT,
            "revision": revision,
            "database": self._database,
            "written": round(time.time(), 3),
        }
        chunks = [orjson.dumps(header)]
        for start in range(0, len(items), _SLICE):
            chunks.extend(
                orjson.dumps([i.kind, i.id, i.created_index, i.modified_index, i.value])
                for i in items[start : start + _SLICE]
            )
            await asyncio.sleep(0)  # a big config never holds the loop for long
        data = b"\n".join(chunks) + b"\n"
        try:
            await asyncio.get_running_loop().run_in_executor(None, self._replace, data)
        except OSError as exc:
            if not self._failing:
                log.warning(
                    "cannot write the last-good snapshot %s: %s", self.path, exc.strerror or exc
                )
            self._failing = True
            return
        if self._failing:
            log.info("the last-good snapshot %s is written again", self.path)
        self._failing = False
        self.written_revision = revision

    def _replace(self, data: bytes) -> None:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                temporary.unlink()
            raise

    async def close(self) -> None:
        """Write the newest revision now if it is not on disk yet, and stop."""
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None
        latest, self._pending = self._latest, None
        if latest is not None and latest[0] != self.written_revision:
            await self._write(*latest)
