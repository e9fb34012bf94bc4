"""Values the database refuses (SQLSTATE class 22, "data exception"): the caller's input, not
the store, is at fault.

A string longer than its column, a number out of its column's range, a NUL byte in text
(PostgreSQL's text cannot hold one) reach the database as bind parameters and come back as a
driver error.  ``invalid_value`` tells such an error from a store that does not answer, and says
what is wrong in one short line that never repeats the value (it may be megabytes, or a
secret).  A write that meets one is rolled back whole, so nothing is stored.

    sqlalchemy.exc.DataError            any driver's data exception, as SQLAlchemy maps it
    sqlalchemy.exc.DBAPIError           asyncpg's, which SQLAlchemy maps to a plain Error
      .orig.sqlstate "22..."            (the server's code)
    asyncpg's DataError                 a parameter asyncpg cannot encode (an int past int64)
    sqlite3.DataError                   SQLite's (a value past its length limit)
"""

from __future__ import annotations

import re
import sqlite3

from sqlalchemy.exc import DataError

from llmgate.store.health import describe

_CLIENT_ERRORS: tuple[type[BaseException], ...] = (sqlite3.DataError,)
try:  # asyncpg is installed with llmgate, but keep the store usable without it
    from asyncpg.exceptions import _base as _asyncpg_base

    # Raised by asyncpg itself, before the query is sent, for a parameter it cannot encode
    # (older asyncpg; newer ones raise the server's DataError class, SQLSTATE 22000).
    _CLIENT_ERRORS += (_asyncpg_base.DataError,)
except ImportError:  # pragma: no cover
    pass

# SQLSTATE -> what is wrong (PostgreSQL's own text would quote the value).
_MESSAGES = {
    "22003": "a number is out of range for its column",
    "22P05": "text holds a character the database cannot store",
    "22021": "text holds a character the database cannot store",
}
_NUL = "text holds a NUL byte (\\u0000), which the database cannot store"
# asyncpg: "invalid input for query argument $1: 123... (value out of int64 range)"
_ARGUMENT = re.compile(r"invalid input for query argument \$\d+: .*\(([^()]*)\)\s*$", re.DOTALL)
_MAX_REASON = 120


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc``, the driver's error SQLAlchemy wraps, and what that one wraps."""
    found = [exc]
    orig = getattr(exc, "orig", None)
    if isinstance(orig, BaseException):
        found.append(orig)
        if orig.__cause__ is not None:
            found.append(orig.__cause__)
    return found


def _sqlstate(errors: list[BaseException]) -> str | None:
    for error in errors:
        state = getattr(error, "sqlstate", None)
        if isinstance(state, str):
            return state
    return None


def invalid_value(exc: BaseException) -> str | None:
    """Why the database refused a value of the statement that raised ``exc`` (one line, the
    value left out); None when ``exc`` is not a data exception."""
    errors = _chain(exc)
    state = _sqlstate(errors)
    client = any(isinstance(error, _CLIENT_ERRORS) for error in errors)
    if not (isinstance(exc, DataError) or (state or "").startswith("22") or client):
        return None
    text = describe(exc)
    if "0x00" in text or "\\u0000" in text:
        return _NUL
    argument = _ARGUMENT.match(str(errors[-1]))
    if argument is not None:
        return f"a query argument cannot be sent: {argument.group(1)}"
    if state in _MESSAGES:
        return _MESSAGES[state]
    # Otherwise the server's line (value too long for type character varying(200), ...).
    return text if len(text) <= _MAX_REASON else text[: _MAX_REASON - 1] + "…"
