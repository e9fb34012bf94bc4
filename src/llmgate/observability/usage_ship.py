"""Token usage on its way to the store: what a data-plane process counted, as batches, and the
one transaction that ships them (``usage.py`` counts and schedules; this writes).

    Batch(id, rows, calls)           what one process counted between two shipments (one spool
                                     segment), under an id unique across nodes and restarts
    Shipper(engine).ship(batches, now)    in one transaction: the batches whose ids are in
                                     ``usage_batches`` already skipped; the others' ids inserted,
                                     their counts upserted-by-increment into ``usage`` (sorted by
                                     key: two processes lock the same keys in the same order),
                                     their calls inserted into ``llm_calls``
    Shipper.prune(calls_days, now)   per-call records and batch ids past their time, deleted

Each write is one executemany of the database driver (on PostgreSQL the per-call records are
one COPY), its statement compiled once per engine and its rows tuples in the statement's
parameter order (a ``CallRecord`` is one): a shipment of thousands of calls costs the event loop
little more than listing them, where SQLAlchemy's ``execute`` with a list of dicts processes
every row's parameters in Python.

On SQLite the per-call records go ``CALLS_PER_INSERT`` to a multi-row INSERT instead: Python's
sqlite3 lets go of the GIL around every statement step, so an executemany of N rows takes the
GIL back N times from the event loop's thread, and each retake can wait for the loop's current
callback; with 4,000 calls a second that showed as a p99 at concurrency 1 of 1.7-2.2 ms, and
0.9-1.1 ms with multi-row INSERTs (the same CPU per request).  Each chunk's parameters are
flattened just before its statement runs, so the loop does that work a little at a time, and
each chunk goes to aiosqlite's thread in one hop (its ``execute_fetchall``; SQLAlchemy's
``exec_driver_sql`` takes three, cursor, execute and close, each a wake-up of that thread and
of the event loop's).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import orjson
from sqlalchemy import delete, insert, select
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import ClauseElement

from llmgate.store.engine import IMMEDIATE
from llmgate.store.tables import llm_calls, usage_batches
from llmgate.store.tables import usage as usage_table

COUNTS = ("requests", "prompt_tokens", "completion_tokens", "total_tokens", "cached_tokens", "cost")
KEY_COLUMNS = ("minute", "consumer", "route", "model", "cache")
Key = tuple[int, str, str, str, str]  # (minute, consumer, route, model, cache)
DAY = 86_400
# Per-call records in one SQLite INSERT: 14 parameters each stay under 999, the lowest limit
# (SQLITE_MAX_VARIABLE_NUMBER) any SQLite build has had.
CALLS_PER_INSERT = 999 // 14
BATCH_DAYS = 7  # how long the store remembers a batch id (a spool waits far less)


class CallRecord(NamedTuple):
    """One LLM call, as a row of ``llm_calls`` (a tuple: what the driver inserts)."""

    time: int  # Unix milliseconds
    request_id: str
    consumer: str
    route: str
    model: str
    provider: str
    instance: str
    request_type: str
    cache: str
    status: int
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    cost: int | None


@dataclass(slots=True)
class Batch:
    """What one process counted between two shipments (one spool segment), under an id
    unique across nodes and restarts."""

    id: str
    rows: dict[Key, list[int]]
    calls: list[CallRecord]

    @classmethod
    def from_records(cls, id: str, payloads: list[bytes]) -> Batch:
        """The batch of a spool segment's records (``UsageReporter.add`` wrote them)."""
        batch = cls(id, {}, [])
        for payload in payloads:
            record = orjson.loads(payload)
            key: Key = tuple(record[:5])
            merge(batch.rows, {key: record[5:11]})
            if record[11] is not None:
                batch.calls.append(CallRecord(*record[11]))
        return batch


class Shipper:
    """Writes batches into the store behind ``engine`` (SQLite or PostgreSQL)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        dialect = engine.dialect
        self._batches = _driver_sql(insert(usage_batches), ("id", "shipped"), dialect)
        self._upsert = _driver_sql(_upsert_statement(dialect.name), KEY_COLUMNS + COUNTS, dialect)
        # inline(): no RETURNING of the ids (PostgreSQL's default for one row).
        self._calls = _driver_sql(insert(llm_calls).inline(), CallRecord._fields, dialect)
        # PostgreSQL: per-call records by COPY (asyncpg's, on the transaction's connection), a
        # third cheaper on the event loop than its executemany.
        self._copy_calls = dialect.name == "postgresql"
        self._calls_chunk = (
            "" if self._copy_calls else _rows_statement(self._calls, CALLS_PER_INSERT)
        )

    async def ship(self, batches: list[Batch], now: int) -> int:
        """Write the batches the store has not received yet, and their ids (``shipped`` at
        ``now``, Unix seconds), in one transaction; how many usage rows were written."""
        async with self.engine.connect() as conn:
            conn = await conn.execution_options(**{IMMEDIATE: True})
            async with conn.begin():
                ids = [batch.id for batch in batches]
                seen: set[str] = set()
                for i in range(0, len(ids), 500):
                    found = await conn.execute(
                        select(usage_batches.c.id).where(usage_batches.c.id.in_(ids[i : i + 500]))
                    )
                    seen.update(found.scalars())
                fresh = [batch for batch in batches if batch.id not in seen]
                if not fresh:
                    return 0
                await conn.exec_driver_sql(self._batches, [(batch.id, now) for batch in fresh])
                merged: dict[Key, list[int]] = {}
                for batch in fresh:
                    merge(merged, batch.rows)
                rows = [(*key, *counts) for key, counts in sorted(merged.items())]
                if rows:
                    await conn.exec_driver_sql(self._upsert, rows)
                calls = [call for batch in fresh for call in batch.calls]
                if calls and self._copy_calls:
                    driver = (await conn.get_raw_connection()).driver_connection
                    if driver is None:  # never for an open connection
                        raise RuntimeError("the store connection is closed")
                    await driver.copy_records_to_table(
                        llm_calls.name, records=calls, columns=CallRecord._fields
                    )
                elif calls:
                    # aiosqlite's execute_fetchall: one hop to its thread a chunk, the cursor
                    # made and dropped there (exec_driver_sql: three, cursor, execute, close).
                    driver = (await conn.get_raw_connection()).driver_connection
                    hop = getattr(driver, "execute_fetchall", None)
                    for start in range(0, len(calls), CALLS_PER_INSERT):
                        chunk = calls[start : start + CALLS_PER_INSERT]
                        statement = (
                            self._calls_chunk
                            if len(chunk) == CALLS_PER_INSERT
                            else _rows_statement(self._calls, len(chunk))
                        )
                        flat = tuple(itertools.chain.from_iterable(chunk))
                        if hop is not None:
                            await hop(statement, flat)
                        else:  # another SQLite driver
                            await conn.exec_driver_sql(statement, flat)
                return len(rows)

    async def prune(self, calls_days: int, now: float) -> None:
        """Delete per-call records older than ``calls_days`` (0: none are kept) and batch ids
        older than ``BATCH_DAYS``."""
        async with self.engine.begin() as conn:
            if calls_days > 0:
                oldest = int((now - calls_days * DAY) * 1000)
                await conn.execute(delete(llm_calls).where(llm_calls.c.time < oldest))
            batches_before = int(now - BATCH_DAYS * DAY)
            await conn.execute(
                delete(usage_batches).where(usage_batches.c.shipped < batches_before)
            )


def merge(into: dict[Key, list[int]], rows: Mapping[Key, list[int]]) -> None:
    for key, counts in rows.items():
        current = into.get(key)
        if current is None:
            into[key] = list(counts)
        else:
            for i, value in enumerate(counts):
                current[i] += value


def _driver_sql(statement: ClauseElement, columns: Sequence[str], dialect: Dialect) -> str:
    """``statement``'s SQL for the driver, its parameters positional and in ``columns``'
    order (aiosqlite's ``?``, asyncpg's ``$n``)."""
    compiled = statement.compile(dialect=dialect, column_keys=list(columns))
    order = compiled.positiontup if isinstance(compiled, SQLCompiler) else None
    if order != list(columns):
        raise RuntimeError(f"unexpected parameters {order} ({dialect.paramstyle}) in {compiled}")
    return compiled.string


def _rows_statement(single: str, rows: int) -> str:
    """``single`` (an ``INSERT ... VALUES (?, ...)`` of one row) for ``rows`` rows."""
    head, separator, values = single.partition(" VALUES ")
    if not separator or not values.startswith("(") or not values.endswith(")"):
        raise RuntimeError(f"unexpected INSERT statement {single}")
    return head + separator + ", ".join([values] * rows)


def _upsert_statement(dialect: str) -> Any:
    """``INSERT ... ON CONFLICT (key) DO UPDATE SET n = usage.n + excluded.n`` (SQLite and
    PostgreSQL spell it the same way)."""
    from sqlalchemy.dialects import postgresql, sqlite

    insert_ = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert_(usage_table)
    return statement.on_conflict_do_update(
        index_elements=[usage_table.c[name] for name in KEY_COLUMNS],
        set_={name: usage_table.c[name] + statement.excluded[name] for name in COUNTS},
    )
