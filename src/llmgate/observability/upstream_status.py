"""``upstream_status{name, ip, port}``: 1 while a node is healthy, 0 while it is not (APISIX's
gauge, fed by the health checkers).

Each data-plane process runs its own checkers, so each keeps its own view: ``StatusBoard``
writes it to ``<metrics dir>/upstream_status_<pid>.json`` when it changes (rarely: at a
checker's start and stop and at each health transition), and the exporter adds a family read
from those files (``collect``).  Unlike prometheus_client's multiprocess files, a series whose
checker is gone (its upstream deleted or changed) disappears.  With several processes a node
shows 1 only while every process sends it traffic.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

FILE_PREFIX = "upstream_status_"
HELP = "Upstream status from health check"
_DIRECTORY_ENV = "PROMETHEUS_MULTIPROC_DIR"


class StatusBoard:
    """This process's node health, written to the metrics directory (kept in memory only when
    there is none)."""

    def __init__(self, prefix: str, directory: str | None = None) -> None:
        self.name = prefix + "upstream_status"
        directory = directory if directory is not None else os.environ.get(_DIRECTORY_ENV)
        self.path = Path(directory) / f"{FILE_PREFIX}{os.getpid()}.json" if directory else None
        self.series: dict[tuple[str, str, int], int] = {}
        self._scheduled = False

    def update(self, name: str, ip: str, port: int, healthy: bool | None) -> None:
        """A node's health (None: its checker stopped, the series goes)."""
        key = (name, ip, port)
        if healthy is None:
            if self.series.pop(key, None) is None:
                return
        else:
            value = 1 if healthy else 0
            if self.series.get(key) == value:
                return
            self.series[key] = value
        self._schedule()

    def _schedule(self) -> None:
        if self._scheduled:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.write()
            return
        self._scheduled = True
        loop.call_soon(self.write)

    def write(self) -> None:
        self._scheduled = False
        if self.path is None:
            return
        data = {"name": self.name, "series": [[*key, value] for key, value in self.series.items()]}
        temporary = self.path.with_suffix(".tmp")
        with contextlib.suppress(OSError):
            temporary.write_text(json.dumps(data))
            temporary.replace(self.path)


def forget(pid: int, directory: str) -> None:
    """Drop the file of a process that exited."""
    with contextlib.suppress(OSError):
        (Path(directory) / f"{FILE_PREFIX}{pid}.json").unlink()


def collect(directory: str, alive: Callable[[int], bool]) -> list[Metric]:
    """The ``upstream_status`` family over every live process's file (the lowest value of a
    series across processes)."""
    from prometheus_client.core import GaugeMetricFamily

    name: str | None = None
    merged: dict[tuple[str, str, str], int] = {}
    for path in sorted(Path(directory).glob(f"{FILE_PREFIX}*.json")):
        pid = path.stem[len(FILE_PREFIX) :]
        if not pid.isdigit() or not alive(int(pid)):
            continue
        try:
            data: dict[str, Any] = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        name = data.get("name") or name
        for upstream, ip, port, value in data.get("series", ()):
            key = (str(upstream), str(ip), str(port))
            merged[key] = min(merged.get(key, 1), int(value))
    if name is None:
        return []
    family = GaugeMetricFamily(name, HELP, labels=["name", "ip", "port"])
    for key, value in sorted(merged.items()):
        family.add_metric(list(key), value)
    return [family]
