"""``llmgate serve --standalone FILE``: the configuration comes from a file, not a database.

The gateway runs as always, on a private SQLite store in a temporary directory that only this
file fills: at start-up the file is applied to the empty store (``plan.apply``, pruning, so the
store always equals the file), and each time the file changes it is applied again.  The loader
and the compiler do not know the difference: they see a new revision and swap in a new
snapshot, atomically.  Data-plane workers (``--workers N``) read the same store.

A file that cannot be applied (unreadable, no ``#END``, invalid YAML, a resource the admin API
would refuse; a reference that names nothing is no reason, see ``config/plan.py``) changes
nothing: the last good configuration keeps serving, and the reason is logged once for that
version of the file.  Applying runs in a thread (parsing and password
hashing are CPU work) so the data plane's event loop never waits for it.

``/readyz`` names the file as the source (``"source": "file"``) and reports it beside the store
(``StandaloneFile.report``): ``"ok"`` when its last version applied, ``"invalid"`` when that
version was refused, ``"unreadable"`` while it cannot be read (gone, not allowed, not UTF-8),
``"failed"`` when applying it failed otherwise; with the error and since when.  As for a store
that does not answer, the process stays ready (it serves the last good configuration), and
``/readyz?strict=1`` answers 503 while the file fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import secrets
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from stat import S_ISREG
from typing import Any

from llmgate.config import document, reading
from llmgate.config.plan import PasswordMemo, Plan, apply
from llmgate.credentials import SSL_KEY_ENV
from llmgate.settings import Settings
from llmgate.store import Store, open_engine
from llmgate.store.migrate import upgrade

log = logging.getLogger("llmgate.standalone")

# A file modified this recently may still be being written (file times are coarse: a second
# write within one clock tick keeps the same mtime), so it is read a moment later.
_SETTLE_NS = 50_000_000

Signature = tuple[int, int, int]  # inode, size, mtime (ns)


class Unchanged(Exception):
    """The file changed while it was being read: try again at the next look."""


# A state of the file as ``/readyz`` reports it: (state, error, since: Unix seconds).
Status = tuple[str, str | None, float]


class StandaloneFile:
    """Keeps the store at ``database_url`` equal to the configuration file at ``path``."""

    def __init__(self, path: str, database_url: str, interval: float = 0.1) -> None:
        self.path = path
        self.database_url = database_url
        self.interval = interval
        self.revision: int | None = None  # of the last version applied
        self._seen: Signature | None = None  # the last version tried, good or bad
        self._missing = False
        self._memo = PasswordMemo()
        # Each replaced whole (the watcher's thread writes, /readyz reads): how the last
        # version tried went, and why the file cannot be read now (None: it can).
        self._tried: Status = ("ok", None, time.time())
        self._unreadable: Status | None = None

    def _signature(self) -> Signature:
        return _signature(os.stat(self.path))

    def load(self) -> int | None:
        """Apply the file as it is now (blocking).  The revision it made (None: no change);
        a DocumentError when it cannot be applied, ``Unchanged`` while it is being written."""
        try:
            revision = self._load()
        except Unchanged:
            raise
        except document.UnreadableFile as exc:
            self._tried = _status(self._tried, "unreadable", str(exc))
            raise
        except document.DocumentError as exc:
            self._tried = _status(self._tried, "invalid", str(exc))
            raise
        except Exception as exc:
            self._tried = _status(self._tried, "failed", f"{type(exc).__name__}: {exc}")
            raise
        self._tried = _status(self._tried, "ok", None)
        return revision

    def _load(self) -> int | None:
        try:
            stat = os.stat(self.path)
        except OSError as exc:
            raise document.UnreadableFile(f"cannot read {self.path}: {exc.strerror}") from None
        signature = self._seen = _signature(stat)  # each version is tried (logged) once
        if not S_ISREG(stat.st_mode):
            # Reading a FIFO would block the watcher until a writer came; a device may not end.
            raise document.UnreadableFile(f"cannot read {self.path}: not a regular file")
        parsed = reading.read(self.path)
        if self._signature() != signature:
            raise Unchanged()  # the new version is tried at the next look
        plan, revision = asyncio.run(self._apply(parsed))
        for line in plan.dangling:  # served as APISIX serves them: failing at request time
            log.warning("%s: %s", self.path, line)
        if revision is not None:
            self.revision = revision
        return revision

    def report(self) -> dict[str, Any]:
        """For ``/readyz``: the path, the state of the file (``ok``, ``invalid``,
        ``unreadable``, ``failed``), since when (Unix seconds), the revision holding its last
        good version and, unless ok, the error."""
        state, error, since = self._unreadable or self._tried
        body: dict[str, Any] = {
            "path": self.path,
            "state": state,
            "since": round(since, 3),
            "revision": self.revision,
        }
        if error is not None:
            body["error"] = error
        return body

    async def _apply(self, parsed: document.Document) -> tuple[Plan, int | None]:
        store = Store(open_engine(self.database_url))
        try:
            return await apply(store, parsed, prune=True, memo=self._memo)
        finally:
            await store.close()

    def _changed(self) -> bool:
        """Whether the file is a settled version not tried yet (a missing file is logged once)."""
        try:
            signature = self._signature()
        except OSError as exc:
            reason = f"cannot read {self.path}: {exc.strerror}"
            if not self._missing:
                log.error("%s; keeping the last good configuration", reason)
                self._unreadable = ("unreadable", reason, time.time())
            self._missing = True
            return False
        self._missing = False
        self._unreadable = None
        if signature == self._seen:
            return False
        return time.time_ns() - signature[2] >= _SETTLE_NS

    @property
    def read_only_reason(self) -> str:
        """What the admin API answers to writes."""
        return f"the admin API is read-only in standalone mode: edit {self.path} instead"

    @contextlib.asynccontextmanager
    async def watching(
        self, on_applied: Callable[[int], None] | None = None
    ) -> AsyncIterator[None]:
        """``watch`` in a task for as long as the context lasts."""
        task = asyncio.create_task(self.watch(on_applied), name="llmgate-standalone-watch")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def watch(self, on_applied: Callable[[int], None] | None = None) -> None:
        """Apply each new version of the file, until cancelled."""
        while True:
            await asyncio.sleep(self.interval)
            if not self._changed():
                continue
            try:
                revision = await asyncio.to_thread(self.load)
            except Unchanged:
                continue
            except document.DocumentError as exc:
                log.error("%s; keeping the last good configuration", exc)
                continue
            except Exception:
                log.exception("applying %s failed; keeping the last good configuration", self.path)
                continue
            if revision is not None:
                log.info("%s applied as revision %s", self.path, revision)
                if on_applied is not None:
                    on_applied(revision)


def _signature(stat: os.stat_result) -> Signature:
    return stat.st_ino, stat.st_size, stat.st_mtime_ns


def _status(old: Status, state: str, error: str | None) -> Status:
    """``state`` with ``error``, since ``old``'s time when the state is the same."""
    return state, error, old[2] if old[0] == state else time.time()


@contextlib.contextmanager
def private_store(settings: Settings) -> Iterator[tuple[Settings, StandaloneFile]]:
    """``settings`` pointed at a new private store holding the file's configuration, and the
    file's watcher; the store is removed on exit.  A DocumentError when the file cannot be
    applied."""
    assert settings.standalone is not None
    directory = tempfile.mkdtemp(prefix="llmgate-standalone-")
    # The file's ssls carry plain private keys, as in APISIX; the private store seals them
    # (credentials.seal) under a passphrase made for it when none is configured.  Set in the
    # environment so that the data-plane workers, spawned later, inherit it.
    ephemeral_ssl_key = not os.environ.get(SSL_KEY_ENV, "").strip()
    if ephemeral_ssl_key:
        os.environ[SSL_KEY_ENV] = secrets.token_urlsafe(32)
    try:
        url = f"sqlite+aiosqlite:///{Path(directory) / 'standalone.db'}"
        upgrade(url)
        source = StandaloneFile(settings.standalone, url, settings.reload_interval)
        for _ in range(50):  # a file being written at start-up: wait for it, briefly
            try:
                source.load()
                break
            except Unchanged:
                time.sleep(0.1)
            except OSError as exc:
                raise document.DocumentError(
                    f"cannot read {settings.standalone}: {exc.strerror}"
                ) from None
        yield dataclasses.replace(settings, database_url=url), source
    finally:
        shutil.rmtree(directory, ignore_errors=True)
        if ephemeral_ssl_key:
            os.environ.pop(SSL_KEY_ENV, None)
