"""``GET /apisix/admin/usage``: the stored usage (``observability/usage.py`` writes it), summed
per consumer, route, model, UTC day and cache, filtered by the query.

    ?consumer= &route= &model=    exact filters
    ?cache=hit|miss               answers proxy-cache replayed, or that a provider gave
    ?from= &to=                   Unix seconds, both included, to the minute
    ?group_by=                    a comma list of consumer, route, model, day, cache
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, literal, select
from sqlalchemy.sql import ColumnElement

from llmgate.ai.pricing import amount
from llmgate.errors import BadRequest
from llmgate.observability.usage_ship import COUNTS, DAY
from llmgate.store import Store
from llmgate.store.tables import usage as usage_table

GROUPS = ("consumer", "route", "model", "day", "cache")


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


_SECONDS = re.compile(r"[0-9]{1,11}")  # \d would take any script's digits


def seconds_arg(args: Mapping[str, str], name: str) -> int | None:
    """A Unix-seconds query argument (None when absent); ``BadRequest`` when malformed."""
    text = args.get(name)
    if text is None or text == "":
        return None
    if _SECONDS.fullmatch(text) is None:
        raise BadRequest(f"invalid {name} {text!r}: expected Unix seconds")
    return int(text)


def text_arg(args: Mapping[str, str], name: str) -> str | None:
    """An exact-filter query argument (None when absent); ``BadRequest`` when it holds a NUL
    byte, which no stored value holds and PostgreSQL cannot even compare (SQLite would answer
    an empty list): both stores answer the same 400 before either is asked."""
    text = args.get(name)
    if text is not None and "\x00" in text:
        raise BadRequest(f"invalid {name}: contains a NUL byte")
    return text


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
        text_arg(args, "consumer"),
        text_arg(args, "route"),
        text_arg(args, "model"),
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
