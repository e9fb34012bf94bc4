"""How the harness reports: log lines on stderr, ``BenchError`` for a target that cannot be
measured (its message goes into the table).
"""

from __future__ import annotations

import sys
import time


def log(line: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {line}", file=sys.stderr, flush=True)


class BenchError(Exception):
    """A target could not be measured; the message goes into the table."""
