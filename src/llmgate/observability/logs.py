"""Where llmgate's log records go: standard error, as text or as one JSON object per line.

``--log-level`` sets the level of llmgate's own loggers (``llmgate.*``); other libraries' records
pass from ``warning`` up (or from the chosen level when it is higher), so ``debug`` shows
llmgate's debugging, not every library's.
"""

from __future__ import annotations

import logging
import os
import sys
import time
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


def configure(level: str = "warning", fmt: str = "text") -> None:
    """Send log records to standard error at ``level`` in ``fmt`` (``text`` or ``json``),
    replacing whatever handlers the root logger had."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    chosen = logging.getLevelName(level.upper())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(chosen, logging.WARNING))
    logging.getLogger("llmgate").setLevel(chosen)
