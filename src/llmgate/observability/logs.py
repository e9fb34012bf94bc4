"""Where llmgate's log records go: standard error, as text or as one JSON object per line.

``--log-level`` sets the level of llmgate's own loggers (``llmgate.*``); other libraries' records
pass from ``warning`` up (or from the chosen level when it is higher), so ``debug`` shows
llmgate's debugging, not every library's.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import orjson

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ``time`` (UTC, ISO 8601), ``level``, ``logger``,
    ``message``, ``pid``, and ``exception`` when the record carries one."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        line: dict[str, Any] = {
            "time": f"{stamp}.{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process or os.getpid(),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        return orjson.dumps(line).decode()


_say_format = "text"


def say(line: str) -> None:
    """A start-up (or shutdown) line: ``llmgate: <line>`` (errors and warnings on standard
    error, the rest on standard output), or with the
    ``json`` format one JSON object as the log records' (``level`` ``error`` for a line that
    starts with ``error: ``, else ``info``; ``logger`` ``llmgate``)."""
    # Why start-up stopped (or what it could not do) goes to standard error, as invalid
    # settings do; the rest (listeners, the generated key) to standard output.
    out = sys.stderr if line.startswith(("error: ", "warning: ")) else sys.stdout
    if _say_format != "json":
        print(f"llmgate: {line}", file=out, flush=True)
        return
    now = time.time()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now))
    error = line.startswith("error: ")
    record = {
        "time": f"{stamp}.{int(now * 1000) % 1000:03d}Z",
        "level": "error" if error else "info",
        "logger": "llmgate",
        "message": line.removeprefix("error: "),
        "pid": os.getpid(),
    }
    print(orjson.dumps(record).decode(), file=out, flush=True)


def configure(level: str = "warning", fmt: str = "text") -> None:
    """Send log records to standard error at ``level`` in ``fmt`` (``text`` or ``json``),
    replacing whatever handlers the root logger had; ``say`` writes in ``fmt`` too."""
    global _say_format
    _say_format = fmt
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    chosen = logging.getLevelName(level.upper())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(chosen, logging.WARNING))
    logging.getLogger("llmgate").setLevel(chosen)


class Notices:
    """Configuration warnings said once while they hold, not at every reload.

    The loader compiles the configuration at every revision; a warning about it (a plugin
    reading an unset environment variable, a stored regex that never matches...) would come
    back each time.  In a ``round()`` (one compilation), a warning (or error) that an
    ``llmgate.*`` logger emits inside a ``step()`` (its synchronous parts) is dropped when an
    earlier round already logged it.  A full round forgets what it did not raise again (logged
    anew if it comes back); an incremental one (``full=False``: only changed resources) only
    adds.  Records compare by logger and text; other threads' records, and everything outside
    a step, pass.  ``compiling()`` is a round of one step.
    """

    def __init__(self) -> None:
        self._shown: set[tuple[str, str]] = set()
        self._round: set[tuple[str, str]] | None = None
        self._thread = 0

    @contextlib.contextmanager
    def round(self, full: bool = True) -> Iterator[None]:
        found: set[tuple[str, str]] = set()
        self._round = found
        try:
            yield
            self._shown = found if full else self._shown | found
        finally:
            self._round = None

    @contextlib.contextmanager
    def step(self) -> Iterator[None]:
        """A synchronous part of the round's compilation: nothing else logs meanwhile on this
        thread."""
        if self._round is None:
            yield
            return
        self._thread = threading.get_ident()
        # A copy made in one step: another thread may be creating a logger meanwhile (iterating
        # the registry itself then fails with "dictionary changed size during iteration").
        registry = logging.Logger.manager.loggerDict.copy()
        loggers = [logging.getLogger("llmgate")] + [
            logger
            for name, logger in registry.items()
            if name.startswith("llmgate.") and isinstance(logger, logging.Logger)
        ]
        for logger in loggers:
            logger.addFilter(self._once)
        try:
            yield
        finally:
            for logger in loggers:
                logger.removeFilter(self._once)

    @contextlib.contextmanager
    def compiling(self) -> Iterator[None]:
        """One synchronous full compilation."""
        with self.round(), self.step():
            yield

    def _once(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING or record.thread != self._thread:
            return True  # another thread's records are not about this compilation
        found = self._round
        if found is None:
            return True
        key = (record.name, record.getMessage())
        if key in found:
            return False
        found.add(key)
        return key not in self._shown
