"""Reading the store's revision cheaply, for the data plane's change watcher.

On SQLite a private stdlib connection asks ``PRAGMA data_version``, which changes whenever any
other connection commits, and reads the revision row only then: a poll costs microseconds and
no thread hop.  Other databases read the revision row through the store.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable

from sqlalchemy.engine import make_url

from llmgate.store.engine import is_sqlite
from llmgate.store.repository import Store

RevisionProbe = Callable[[], Awaitable[int]]


class _SqliteProbe:
    def __init__(self, path: str) -> None:
        self._conn = sqlite3.connect(path, timeout=0.5, isolation_level=None)
        self._version: int | None = None
        self._revision = 0

    async def __call__(self) -> int:
        version = self._conn.execute("PRAGMA data_version").fetchone()[0]
        if version != self._version:
            row = self._conn.execute("SELECT value FROM revision WHERE id = 1").fetchone()
            self._version, self._revision = version, int(row[0])
        return self._revision

    def close(self) -> None:
        self._conn.close()


def revision_probe(store: Store) -> RevisionProbe:
    """A cheap ``await probe()`` giving the store's current revision."""
    url = store.engine.url.render_as_string(hide_password=False)
    if is_sqlite(url):
        database = make_url(url).database
        if database and database != ":memory:":
            return _SqliteProbe(database)
    return store.revision
