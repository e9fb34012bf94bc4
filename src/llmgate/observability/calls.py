"""``GET /apisix/admin/usage/calls``: the per-call usage records, newest first.

    ?request_id=   the id the client got in X-Request-Id (and the access log shows)
    ?consumer= &route= &model=    exact filters
    ?from= &to=    Unix seconds, both included
    ?limit=        1-1000 (100 by default)

The data plane writes the records (``observability/usage.py``); this only reads them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.sql import ColumnElement

from llmgate.ai.pricing import amount
from llmgate.errors import BadRequest
from llmgate.observability.usage_query import seconds_arg, text_arg
from llmgate.store import Store
from llmgate.store.tables import llm_calls

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
_LIMIT = re.compile(r"[0-9]{1,4}")  # not str.isdigit(): '\u00b2' is a digit to it, not to int()
_FILTERS = ("request_id", "consumer", "route", "model")


@dataclass(frozen=True, slots=True)
class CallsQuery:
    filters: tuple[tuple[str, str], ...] = ()
    start: int | None = None
    end: int | None = None
    limit: int = DEFAULT_LIMIT


def parse_calls_query(args: Mapping[str, str]) -> CallsQuery:
    """The query of ``GET /apisix/admin/usage/calls``; ``BadRequest`` for bad arguments."""
    start, end = seconds_arg(args, "from"), seconds_arg(args, "to")
    if start is not None and end is not None and start > end:
        raise BadRequest(f"invalid range: from {start} is after to {end}")
    text = args.get("limit") or str(DEFAULT_LIMIT)
    if _LIMIT.fullmatch(text) is None or not 1 <= int(text) <= MAX_LIMIT:
        raise BadRequest(f"invalid limit {text!r}: expected 1-{MAX_LIMIT}")
    given = ((name, text_arg(args, name)) for name in _FILTERS)
    filters = tuple((name, value) for name, value in given if value is not None)
    return CallsQuery(filters, start, end, int(text))


async def list_calls(store: Store, query: CallsQuery) -> dict[str, Any]:
    table = llm_calls
    conditions: list[ColumnElement[bool]] = [
        table.c[name] == value for name, value in query.filters
    ]
    if query.start is not None:
        conditions.append(table.c.time >= query.start * 1000)
    if query.end is not None:
        conditions.append(table.c.time < (query.end + 1) * 1000)
    statement = (
        select(table)
        .where(*conditions)
        .order_by(table.c.time.desc(), table.c.id.desc())
        .limit(query.limit)
    )
    async with store.engine.connect() as conn:
        rows = (await conn.execute(statement)).all()
    entries = []
    for row in rows:
        # str(): column names are SQLAlchemy's quoted_name, a str subclass orjson refuses.
        entry = {str(name): value for name, value in row._asdict().items() if name != "id"}
        entry["cost"] = amount(entry["cost"]) if entry["cost"] is not None else None
        entry["cache"] = entry["cache"] or None
        entries.append(entry)
    return {"list": entries, "total": len(entries)}
