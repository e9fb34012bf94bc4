"""Opening the database: SQLite in WAL mode with explicit transactions, or PostgreSQL."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

# Writers ask for this execution option so SQLite takes its write lock when the transaction
# starts (BEGIN IMMEDIATE) rather than on the first write, which would deadlock two writers.
IMMEDIATE = "llmgate_immediate"
CONNECT_TIMEOUT = 5.0  # seconds
# A PostgreSQL statement that has not answered by then (the server hung, or its tables locked by
# another session) is cancelled with TimeoutError: the admin API answers 503 "store
# unavailable: timed out" and the watcher reports the store unavailable, rather than hanging.
STATEMENT_TIMEOUT = 5.0  # seconds


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def _setup_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let us emit BEGIN ourselves (the driver's implicit BEGIN is deferred).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA busy_timeout=15000")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        immediate = conn.get_execution_options().get(IMMEDIATE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def open_engine(url: str) -> AsyncEngine:
    """An engine for ``url`` (``sqlite+aiosqlite://…`` or ``postgresql+asyncpg://…``)."""
    kwargs: dict[str, Any] = {}
    if not is_sqlite(url):
        kwargs["pool_pre_ping"] = True
        # A store that does not answer fails a connection attempt in seconds, not minutes
        # (asyncpg's default is 60 s): the admin API answers 503 and the watcher retries.
        # A statement that does not answer is given up likewise (STATEMENT_TIMEOUT).
        kwargs["connect_args"] = {"timeout": CONNECT_TIMEOUT, "command_timeout": STATEMENT_TIMEOUT}
    engine = create_async_engine(url, **kwargs)
    if is_sqlite(url):
        _setup_sqlite(engine)
    return engine
