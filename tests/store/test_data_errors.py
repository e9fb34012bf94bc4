"""Values the database refuses are told from a store that does not answer, and described
without the value (each test runs on SQLite and on PostgreSQL)."""

from __future__ import annotations

import sqlite3

import pytest
from sqlalchemy import insert, select, text
from sqlalchemy.exc import DataError, OperationalError

from llmgate.store import Store
from llmgate.store.data_errors import invalid_value
from llmgate.store.tables import resources, revision, usage

LONG = "x" * 5000


async def _error_of(store: Store, statement, params=None) -> BaseException | None:  # type: ignore[no-untyped-def]
    try:
        async with store.engine.connect() as conn:
            await conn.execute(statement, params or {})
    except Exception as exc:
        return exc
    return None


async def test_refused_values_are_named_without_the_value(store: Store) -> None:
    postgres = store.engine.dialect.name == "postgresql"
    cases = [
        # A string past its column's width (SQLite does not enforce widths).
        (
            insert(resources).values(
                kind="routes", id=LONG, value="{}", created_index=1, modified_index=1
            ),
            None,
            "value too long for type character varying(321)",
        ),
        # A NUL byte in text (SQLite stores it).
        (select(usage).where(usage.c.consumer == f"{LONG}\x00"), None, "NUL byte"),
        # An integer past its column's range, as the server sees it ...
        (text("SELECT CAST(CAST(:v AS text) AS integer)"), {"v": "9" * 40}, "out of range"),
        # ... a parameter asyncpg cannot send as the type the server expects ...
        (
            text("SELECT CAST(:v AS integer)"),
            {"v": "9" * 40},
            "cannot be interpreted as an integer",
        ),
        # ... and as asyncpg sees it before sending it (int32 column).
        (select(revision).where(revision.c.id == 2**40), None, "int32 range"),
    ]
    for statement, params, message in cases:
        exc = await _error_of(store, statement, params)
        if not postgres:
            assert exc is None or invalid_value(exc) is None, exc
            continue
        assert exc is not None, message
        reason = invalid_value(exc)
        assert reason is not None and message in reason, (reason, exc)
        assert "x" * 50 not in reason and "9" * 20 not in reason and len(reason) <= 120


async def test_a_store_that_does_not_answer_is_no_data_error(store: Store) -> None:
    exc = await _error_of(store, text("SELECT * FROM no_such_table"))
    assert exc is not None and invalid_value(exc) is None
    assert (
        invalid_value(OperationalError("SELECT 1", {}, ConnectionRefusedError(111, "no"))) is None
    )
    assert invalid_value(ValueError("not from a driver")) is None


@pytest.mark.parametrize(
    "exc",
    [
        DataError("INSERT ...", {}, sqlite3.DataError("string or blob too big")),
        sqlite3.DataError("string or blob too big"),
    ],
)
def test_sqlite_data_errors(exc: BaseException) -> None:
    assert invalid_value(exc) == "string or blob too big"
