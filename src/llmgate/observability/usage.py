"""Token usage and cost per consumer, route and model: counted in memory by each data-plane
process, flushed to the store in the background, summarised by ``GET /apisix/admin/usage``.

    data-plane process                                     admin API
      UsageReporter.add(consumer, route, model, usage,       parse_query(request.query)
                        cost=, cache=, call=)                summarize(store, query)
        pending[(minute, consumer, route, model, cache)]       SUM(...) GROUP BY consumer,
          += 1, tokens, cost                                   route, model, day, cache
        calls += [CallRecord]       (``llm_calls``: one row per call, with its request id)
      every ``interval`` s and at stop: one transaction of upserts-by-increment into
      ``usage`` and inserts into ``llm_calls``

Nothing here runs on the request path but ``add`` (a dict update and a list append).  A flush
that fails keeps its counts for the next one.  Writing never bumps the configuration revision.
Per-call records are bounded: at most ``MAX_PENDING_CALLS`` wait for a flush (beyond that they
are dropped, and the drops logged; the counts stay exact), and rows older than
``calls_days`` days are deleted (``calls_days=0``: no per-call records at all).

``cost`` is in ``PICO`` units of the price table's currency (``ai/pricing.py``); the summary
shows it in the currency.  ``cache`` is "" for calls a provider answered and "hit" for answers
proxy-cache replayed (their tokens were served from the cache: cost 0).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import astuple, dataclass, fields
from typing import Any

from sqlalchemy import delete, func, insert, literal, select
from sqlalchemy.sql import ColumnElement

from llmgate.ai.pricing import amount
from llmgate.ai.usage import Usage
from llmgate.errors import BadRequest
from llmgate.store import Store
from llmgate.store.engine import IMMEDIATE
from llmgate.store.tables import llm_calls
from llmgate.store.tables import usage as usage_table

log = logging.getLogger("llmgate.usage")

FLUSH_INTERVAL = 1.0  # seconds
COUNTS = ("requests", "prompt_tokens", "completion_tokens", "total_tokens", "cached_tokens", "cost")
_KEY_COLUMNS = ("minute", "consumer", "route", "model", "cache")
Key = tuple[int, str, str, str, str]  # (minute, consumer, route, model, cache)
GROUPS = ("consumer", "route", "model", "day", "cache")
DAY = 86_400
MAX_PENDING_CALLS = 50_000
CALLS_DAYS = 30  # how long per-call records are kept, by default
PRUNE_EVERY = 600.0  # seconds between two deletions of expired per-call records


@dataclass(frozen=True, slots=True)
class CallRecord:
    """One LLM call, as a row of ``llm_calls``."""

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


_CALL_COLUMNS = tuple(f.name for f in fields(CallRecord))


class UsageReporter:
    """One data-plane process's usage counts on their way to the store."""

    def __init__(
        self,
        store: Store,
        interval: float = FLUSH_INTERVAL,
        clock: Callable[[], float] = time.time,
        calls_days: int = CALLS_DAYS,
    ) -> None:
        self.store = store
        self.interval = interval
        self.calls_days = calls_days
        self._clock = clock
        self._pending: dict[Key, list[int]] = {}
        self._calls: list[CallRecord] = []
        self._dropped = 0
        self._pruned = 0.0
        self._upsert = _upsert_statement(store.engine.dialect.name)
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._failing = False

    def add(
        self,
        consumer: str,
        route: str,
        model: str,
        usage: Usage | None,
        *,
        cost: int = 0,
        cache: str = "",
        call: CallRecord | None = None,
    ) -> None:
        """Count one LLM call (its tokens when its response carried ``usage``, and its
        ``cost``); keep ``call`` as its own record."""
        key = (int(self._clock()) // 60 * 60, consumer, route, model, cache)
        counts = self._pending.get(key)
        if counts is None:
            counts = self._pending[key] = [0, 0, 0, 0, 0, 0]
        counts[0] += 1
        if usage is not None:
            counts[1] += usage.prompt_tokens
            counts[2] += usage.completion_tokens
            counts[3] += usage.total_tokens
            counts[4] += usage.cached_tokens
        counts[5] += cost
        if call is not None and self.calls_days > 0:
            if len(self._calls) < MAX_PENDING_CALLS:
                self._calls.append(call)
            else:
                self._dropped += 1

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
        await self.flush()  # what was added while the last one was writing

    async def flush(self) -> int:
        """Write the pending counts and call records in one transaction; how many usage rows
        were written."""
        if self._dropped:
            log.warning("%d per-call usage records dropped: too many waiting", self._dropped)
            self._dropped = 0
        if not self._pending and not self._calls:
            return 0
        batch, self._pending = self._pending, {}
        calls, self._calls = self._calls, []
        try:
            await self._write(batch, calls)
        except Exception:
            self._merge_back(batch)
            self._calls[:0] = calls[: MAX_PENDING_CALLS - len(self._calls)]
            if not self._failing:  # once per outage, not every second
                log.exception("writing token usage failed; keeping it for the next flush")
            self._failing = True
            return 0
        self._failing = False
        await self._prune()
        return len(batch)

    async def _write(self, batch: dict[Key, list[int]], calls: list[CallRecord]) -> None:
        # Sorted: two processes upserting the same keys lock them in the same order.
        rows = [
            {**dict(zip(_KEY_COLUMNS, key, strict=True)), **dict(zip(COUNTS, counts, strict=True))}
            for key, counts in sorted(batch.items())
        ]
        async with self.store.engine.connect() as conn:
            conn = await conn.execution_options(**{IMMEDIATE: True})
            async with conn.begin():
                if rows:
                    await conn.execute(self._upsert, rows)
                if calls:
                    await conn.execute(
                        insert(llm_calls),
                        [dict(zip(_CALL_COLUMNS, astuple(c), strict=True)) for c in calls],
                    )

    async def _prune(self) -> None:
        """Delete per-call records older than ``calls_days`` (every ``PRUNE_EVERY`` s)."""
        now = self._clock()
        if self.calls_days <= 0 or now - self._pruned < PRUNE_EVERY:
            return
        self._pruned = now
        oldest = int((now - self.calls_days * DAY) * 1000)
        try:
            async with self.store.engine.begin() as conn:
                await conn.execute(delete(llm_calls).where(llm_calls.c.time < oldest))
        except Exception as exc:
            log.warning("deleting expired per-call usage records failed: %s", exc)

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

    insert_ = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert_(usage_table)
    return statement.on_conflict_do_update(
        index_elements=[usage_table.c[name] for name in _KEY_COLUMNS],
        set_={name: usage_table.c[name] + statement.excluded[name] for name in COUNTS},
    )


@dataclass(frozen=True, slots=True)
class UsageQuery:
    """``?consumer=&route=&model=&cache=&from=&to=&group_by=``: exact filters (``cache``:
    ``hit`` or ``miss``); ``from``/``to`` in Unix seconds, both included, to the minute (the
    minute holding ``from`` counts whole); ``group_by``: a comma list of consumer, route,
    model, day and cache (all of them by default)."""

    consumer: str | None = None
    route: str | None = None
    model: str | None = None
    start: int | None = None
    end: int | None = None
    cache: str | None = None  # "" (a provider answered) or "hit"
    group_by: tuple[str, ...] = GROUPS


_SECONDS = re.compile(r"\d{1,11}")


def seconds_arg(args: Mapping[str, str], name: str) -> int | None:
    """A Unix-seconds query argument (None when absent); ``BadRequest`` when malformed."""
    text = args.get(name)
    if text is None or text == "":
        return None
    if _SECONDS.fullmatch(text) is None:
        raise BadRequest(f"invalid {name} {text!r}: expected Unix seconds")
    return int(text)


def _group_by(text: str | None) -> tuple[str, ...]:
    if text is None or text == "":
        return GROUPS
    names = tuple(name.strip() for name in text.split(","))
    unknown = [name for name in names if name not in GROUPS]
    if unknown:
        raise BadRequest(f"invalid group_by {unknown[0]!r}: expected {', '.join(GROUPS)}")
    return tuple(name for name in GROUPS if name in names)


def parse_query(args: Mapping[str, str]) -> UsageQuery:
    """The query of ``GET /apisix/admin/usage``; ``BadRequest`` (400) for bad arguments."""
    start, end = seconds_arg(args, "from"), seconds_arg(args, "to")
    if start is not None and end is not None and start > end:
        raise BadRequest(f"invalid range: from {start} is after to {end}")
    cache = args.get("cache")
    if cache not in (None, "hit", "miss"):
        raise BadRequest(f"invalid cache {cache!r}: expected hit or miss")
    return UsageQuery(
        args.get("consumer"),
        args.get("route"),
        args.get("model"),
        start,
        end,
        None if cache is None else "hit" if cache == "hit" else "",
        _group_by(args.get("group_by")),
    )


def _day(seconds: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(seconds))


async def summarize(store: Store, query: UsageQuery) -> dict[str, Any]:
    """Requests, tokens and cost per (consumer, route, model, UTC day, cache) matching
    ``query`` (or the ``group_by`` subset of those), and their total."""
    table = usage_table
    conditions: list[ColumnElement[bool]] = []
    for name in ("consumer", "route", "model", "cache"):
        value = getattr(query, name)
        if value is not None:
            conditions.append(table.c[name] == value)
    if query.start is not None:
        conditions.append(table.c.minute >= query.start - query.start % 60)
    if query.end is not None:
        conditions.append(table.c.minute <= query.end)
    columns: dict[str, ColumnElement[Any]] = {
        "consumer": table.c.consumer,
        "route": table.c.route,
        "model": table.c.model,
        "day": table.c.minute - table.c.minute % literal(DAY),
        "cache": table.c.cache,
    }
    groups = [columns[name].label(name) for name in query.group_by]
    statement = select(*groups, *(func.sum(table.c[name]).label(name) for name in COUNTS)).where(
        *conditions
    )
    if groups:
        keys = [columns[name] for name in query.group_by]
        statement = statement.group_by(*keys).order_by(*keys)
    async with store.engine.connect() as conn:
        rows = (await conn.execute(statement)).all()
    entries = []
    for row in rows:
        if row.requests is None:  # no row at all matched (an aggregate without groups)
            continue
        entry: dict[str, Any] = {}
        for name in query.group_by:
            value = getattr(row, name)
            entry[name] = (
                _day(int(value))
                if name == "day"
                else ("hit" if value else "miss")
                if name == "cache"
                else value
            )
        entry.update({name: int(getattr(row, name)) for name in COUNTS})
        entries.append(entry)
    total: dict[str, Any] = {name: sum(entry[name] for entry in entries) for name in COUNTS}
    for entry in (*entries, total):
        entry["cost"] = amount(entry["cost"])
    return {"from": query.start, "to": query.end, "total": total, "list": entries}
