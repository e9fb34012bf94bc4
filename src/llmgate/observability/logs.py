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
    """A start-up (or shutdown) line on standard output: ``llmgate: <line>``, or with the
    ``json`` format one JSON object as the log records' (``level`` ``error`` for a line that
    starts with ``error: ``, else ``info``; ``logger`` ``llmgate``)."""
    if _say_format != "json":
        print(f"llmgate: {line}", flush=True)
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
    print(orjson.dumps(record).decode(), flush=True)


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

    The loader compiles the whole configuration at every revision; a warning about it (a
    plugin reading an unset environment variable, a stored regex that never matches...) would
    come back each time.  While ``compiling()``, a warning (or error) of an ``llmgate.*`` logger
    that the previous compilation already logged is dropped; one the newest compilation no
    longer raises is forgotten, so it is logged again if it comes back.  Records compare by
    logger and text.  Outside a compilation every record passes.
    """

    def __init__(self) -> None:
        self._shown: set[tuple[str, str]] = set()
        self._round: set[tuple[str, str]] = set()
        self._thread = 0

    @contextlib.contextmanager
    def compiling(self) -> Iterator[None]:
        """Around one synchronous compilation (nothing else logs meanwhile)."""
        self._round = set()
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
            self._shown = self._round
        finally:
            for logger in loggers:
                logger.removeFilter(self._once)

    def _once(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING or record.thread != self._thread:
            return True  # another thread's records are not about this compilation
        key = (record.name, record.getMessage())
        if key in self._round:
            return False
        self._round.add(key)
        return key not in self._shown
