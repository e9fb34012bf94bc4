"""Whether the store answers, as this process last saw it, logged once per change of state.

Every process keeps one ``StoreState``: the data plane's watcher reports each poll to it, the
admin API each database error, a parent of workers its own periodic probe.  ``/readyz`` reads
it without touching the database; the log gets one line when the store becomes unavailable
(with why) and one when it answers again (with how long it was gone), never one per poll.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

log = logging.getLogger("llmgate.store")

# Errors that mean "the database did not answer" (or answered with a driver error), as opposed
# to a bug: SQLAlchemy wraps driver errors, but a connection attempt can also raise the
# socket's or the driver's own error, and a bounded wait its TimeoutError.
STORE_ERRORS: tuple[type[BaseException], ...] = (
    SQLAlchemyError,
    OSError,
    TimeoutError,
    sqlite3.Error,
)
try:  # asyncpg is installed with llmgate, but keep the store usable without it
    import asyncpg

    STORE_ERRORS += (asyncpg.PostgresError, asyncpg.InterfaceError)
except ImportError:  # pragma: no cover
    pass

_MAX_REASON = 200


def is_store_error(exc: BaseException) -> bool:
    return isinstance(exc, STORE_ERRORS)


def describe(exc: BaseException) -> str:
    """One short line saying why the store failed: the driver's message without the SQL or its
    parameters (which may hold stored secrets' digests), never a traceback."""
    inner: BaseException = getattr(exc, "orig", None) or exc
    if isinstance(exc, TimeoutError) or isinstance(inner, TimeoutError):
        return "timed out"
    text = str(inner).strip()
    if isinstance(inner, OSError) and inner.strerror:
        text = inner.strerror
    # SQLAlchemy's adapted asyncpg errors read "<class 'asyncpg...X'>: message".
    if text.startswith("<class '") and "'>: " in text:
        name, _, text = text.partition("'>: ")
        text = f"{name.rsplit('.', 1)[-1]}: {text}"
    line = text.splitlines()[0] if text else type(inner).__name__
    if len(line) > _MAX_REASON:
        line = line[: _MAX_REASON - 1] + "…"
    return line


class StoreState:
    """ "ok", "unavailable" or "unknown" (nothing asked yet), since when, and why."""

    def __init__(self) -> None:
        self.state = "unknown"
        self.error: str | None = None
        self.since = time.time()  # wall clock of the last change of state
        self.last_ok: float | None = None  # monotonic time of the last answer

    @property
    def available(self) -> bool:
        return self.state != "unavailable"

    def succeeded(self) -> None:
        self.last_ok = time.monotonic()
        if self.state == "ok":
            return
        if self.state == "unavailable":
            gone = time.time() - self.since
            log.warning("the store answers again (unavailable for %.1f s)", gone)
        self.state, self.error, self.since = "ok", None, time.time()

    def failed(self, exc: BaseException) -> None:
        reason = describe(exc)
        if self.state == "unavailable":
            self.error = reason  # the latest reason, but no new line in the log
            return
        log.error("the store is unavailable: %s (logged once until it answers again)", reason)
        self.state, self.error, self.since = "unavailable", reason, time.time()

    def report(self) -> dict[str, Any]:
        """For ``/readyz``: the state, since when (Unix seconds) and the last error."""
        body: dict[str, Any] = {"state": self.state, "since": round(self.since, 3)}
        if self.error is not None:
            body["error"] = self.error
        return body


async def probe(check: Any, state: StoreState, within: float) -> bool:
    """Await ``check()`` within ``within`` seconds; report the outcome to ``state``."""
    try:
        await asyncio.wait_for(check(), within)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        if not is_store_error(exc):
            raise
        state.failed(exc)
        return False
    state.succeeded()
    return True
