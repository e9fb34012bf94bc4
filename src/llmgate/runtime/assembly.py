"""One compilation's bookkeeping: every stored resource tried once, with the previous snapshot's
units to fall back on.

A resource whose stored config does not compile (``runtime/instances.py``) is never dropped:
it keeps what it compiled to in the previous snapshot (its last good version), or, when it never
compiled in this process, stands in as a 503 that still matches its traffic.  Either way the
snapshot's ``problems`` names it.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from llmgate.proxy.upstream import PoolRegistry
from llmgate.runtime.instances import CompileError
from llmgate.runtime.services import Services
from llmgate.runtime.snapshot import Snapshot

log = logging.getLogger("llmgate.runtime")


@dataclass(frozen=True, slots=True)
class Unit:
    """What one stored resource compiled to, and the upstream pools it holds (kept alive for
    as long as a snapshot serves it)."""

    compiled: Any
    pool_keys: frozenset[str]
    good: bool = True  # False: a 503 stand-in for a resource that never compiled


@contextlib.contextmanager
def _recording(pools: PoolRegistry) -> Iterator[set[str]]:
    """The keys of the pools asked for inside the block (still counted as touched)."""
    outer = pools.touched
    inner: set[str] = set()
    pools.touched = inner
    try:
        yield inner
    finally:
        pools.touched = outer
        outer |= inner


class Assembly:
    """One compilation: every resource tried once, with the previous snapshot to fall back on."""

    def __init__(self, services: Services, pools: PoolRegistry, previous: Snapshot | None) -> None:
        self.services = services
        self.pools = pools
        self.previous = previous.units if previous is not None else {}
        self.units: dict[str, Unit] = {}
        self.problems: dict[str, str] = {}

    def unit(self, key: str, build: Any, stand_in: Any) -> Any:
        """``build()``'s result for resource ``key``; on a ``CompileError``, the last good
        version (or ``stand_in()``, which may be None: nothing to serve)."""
        try:
            with _recording(self.pools) as keys:
                compiled = build()
        except Exception as exc:
            if isinstance(exc, CompileError):
                self.problems[key] = str(exc)
            else:  # a bug, not the config: say so, and still never drop the resource
                log.exception("compiling %s failed", key)
                self.problems[key] = f"internal error ({type(exc).__name__})"
            last = self.previous.get(key)
            if last is None or not last.good:
                compiled = stand_in()
                if compiled is not None:
                    self.units[key] = Unit(compiled, frozenset(), good=False)
                return compiled
            self.pools.touched |= last.pool_keys
            self.units[key] = last
            return last.compiled
        self.units[key] = Unit(compiled, frozenset(keys))
        return compiled
