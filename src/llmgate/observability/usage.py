"""Token usage per consumer, route and model: counted in memory by each data-plane process,
flushed to the store in the background, summarised by ``GET /apisix/admin/usage``.

    data-plane process                                   admin API
      UsageReporter.add(consumer, route, model, usage)     parse_query(request.query)
        pending[(minute, consumer, route, model)] += 1,     summarize(store, query)
          prompt, completion, total tokens                    SUM(...) GROUP BY consumer,
      every ``interval`` s and at stop: one transaction         route, model
        of upserts-by-increment into ``usage``

Nothing here runs on the request path but ``add`` (a dict update).  A flush that fails keeps
its counts for the next one.  Writing ``usage`` never bumps the configuration revision.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.sql import ColumnElement

from llmgate.ai.usage import Usage
from llmgate.errors import BadRequest
from llmgate.store import Store
from llmgate.store.engine import IMMEDIATE
from llmgate.store.tables import usage as usage_table

log = logging.getLogger("llmgate.usage")

FLUSH_INTERVAL = 1.0  # seconds
COUNTS = ("requests", "prompt_tokens", "completion_tokens", "total_tokens")
_KEY_COLUMNS = ("minute", "consumer", "route", "model")
Key = tuple[int, str, str, str]  # (minute, consumer, route, model)


class UsageReporter:
    """One data-plane process's usage counts on their way to the store."""

    def __init__(
        self, store: Store, interval: float = FLUSH_INTERVAL, clock: Callable[[], float] = time.time
    ) -> None:
        self.store = store
        self.interval = interval
        self._clock = clock
        self._pending: dict[Key, list[int]] = {}
        self._upsert = _upsert_statement(store.engine.dialect.name)
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._failing = False

    def add(self, consumer: str, route: str, model: str, usage: Usage | None) -> None:
        """Count one LLM call (and its tokens, when its response carried ``usage``)."""
        key = (int(self._clock()) // 60 * 60, consumer, route, model)
        counts = self._pending.get(key)
        if counts is None:
            counts = self._pending[key] = [0, 0, 0, 0]
        counts[0] += 1
        if usage is not None:
            counts[1] += usage.prompt_tokens
            counts[2] += usage.completion_tokens
            counts[3] += usage.total_tokens

    async def start(self) -> None:
        self._stopping.clear()
        self._task = asyncio.create_task(self._run(), name="llmgate-usage-flush")

    async def stop(self) -> None:
        """Stop flushing in the background, after one last flush."""
        self._stopping.set()
        if self._task is not None:
            await self._task
            self._task = None
        else:
            await self.flush()

    async def _run(self) -> None:
        # Never cancelled mid-write (a cancelled commit could count twice): ``stop`` sets the
        # event, and the loop ends after its last flush.
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.interval)
            await self.flush()

    async def flush(self) -> int:
        """Write the pending counts in one transaction; how many rows were written."""
        if not self._pending:
            return 0
        batch, self._pending = self._pending, {}
        try:
            await self._write(batch)
        except Exception:
            self._merge_back(batch)
            if not self._failing:  # once per outage, not every second
                log.exception("writing token usage failed; keeping it for the next flush")
            self._failing = True
            return 0
        self._failing = False
        return len(batch)

    async def _write(self, batch: dict[Key, list[int]]) -> None:
        # Sorted: two processes upserting the same keys lock them in the same order.
        rows = [
            {**dict(zip(_KEY_COLUMNS, key, strict=True)), **dict(zip(COUNTS, counts, strict=True))}
            for key, counts in sorted(batch.items())
        ]
        async with self.store.engine.connect() as conn:
            conn = await conn.execution_options(**{IMMEDIATE: True})
            async with conn.begin():
                await conn.execute(self._upsert, rows)

    def _merge_back(self, batch: dict[Key, list[int]]) -> None:
        for key, counts in batch.items():
            current = self._pending.get(key)
            if current is None:
                self._pending[key] = counts
            else:
                for i, value in enumerate(counts):
                    current[i] += value


def _upsert_statement(dialect: str) -> Any:
    """``INSERT ... ON CONFLICT (key) DO UPDATE SET n = usage.n + excluded.n`` (SQLite and
    PostgreSQL spell it the same way)."""
    from sqlalchemy.dialects import postgresql, sqlite

    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(usage_table)
    return statement.on_conflict_do_update(
        index_elements=[usage_table.c[name] for name in _KEY_COLUMNS],
        set_={name: usage_table.c[name] + statement.excluded[name] for name in COUNTS},
    )


@dataclass(frozen=True, slots=True)
class UsageQuery:
    """``?consumer=&route=&model=&from=&to=``: exact filters; ``from``/``to`` in Unix seconds,
    both included, to the minute (the minute holding ``from`` counts whole)."""

    consumer: str | None = None
    route: str | None = None
    model: str | None = None
    start: int | None = None
    end: int | None = None


_SECONDS = re.compile(r"\d{1,11}")


def _seconds(args: Mapping[str, str], name: str) -> int | None:
    text = args.get(name)
    if text is None or text == "":
        return None
    if _SECONDS.fullmatch(text) is None:
        raise BadRequest(f"invalid {name} {text!r}: expected Unix seconds")
    return int(text)


def parse_query(args: Mapping[str, str]) -> UsageQuery:
    """The query of ``GET /apisix/admin/usage``; ``BadRequest`` (400) for bad arguments."""
    start, end = _seconds(args, "from"), _seconds(args, "to")
    if start is not None and end is not None and start > end:
        raise BadRequest(f"invalid range: from {start} is after to {end}")
    return UsageQuery(args.get("consumer"), args.get("route"), args.get("model"), start, end)


async def summarize(store: Store, query: UsageQuery) -> dict[str, Any]:
    """Requests and tokens per (consumer, route, model) matching ``query``, and their total."""
    table = usage_table
    conditions: list[ColumnElement[bool]] = []
    for name in ("consumer", "route", "model"):
        value = getattr(query, name)
        if value is not None:
            conditions.append(table.c[name] == value)
    if query.start is not None:
        conditions.append(table.c.minute >= query.start - query.start % 60)
    if query.end is not None:
        conditions.append(table.c.minute <= query.end)
    groups = (table.c.consumer, table.c.route, table.c.model)
    statement = (
        select(*groups, *(func.sum(table.c[name]).label(name) for name in COUNTS))
        .where(*conditions)
        .group_by(*groups)
        .order_by(*groups)
    )
    async with store.engine.connect() as conn:
        rows = (await conn.execute(statement)).all()
    entries = [
        {
            "consumer": row.consumer,
            "route": row.route,
            "model": row.model,
            **{name: int(getattr(row, name)) for name in COUNTS},
        }
        for row in rows
    ]
    total = {name: sum(entry[name] for entry in entries) for name in COUNTS}
    return {"from": query.start, "to": query.end, "total": total, "list": entries}
