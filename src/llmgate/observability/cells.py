"""Metric values written in one step: what the request path records without prometheus
client's cost per update.

prometheus_client's multiprocess value takes a lock, compares ``os.getpid()`` and packs two
doubles into its mmap'd file on every ``inc`` (~0.9 µs; a histogram observation ~1.9 µs, and a
request records a dozen).  A ``Cell`` is the same double, updated in place through a
memoryview (~0.1 µs):

    multiprocess mode   the double of this process's mmap'd file where prometheus_client
                        keeps the value (same file, same offset), so a scrape, in this process
                        or another one, reads every update as soon as it is made: nothing is
                        held back, there is nothing to flush
    one process         a double of its own (tests, a private registry)

``counter`` / ``gauge`` / ``histogram`` put cells in place of a label child's value objects, so
prometheus_client's own ``inc`` / ``observe`` and its collection read and write the same
doubles.  A child is adopted once, when its series is first recorded, and afterwards written
from the event loop's thread only (the lock prometheus_client takes guards against threads).

This reads prometheus_client's value internals (``_value``, ``_sum``, ``_buckets``,
``_upper_bounds``, the multiprocess value's ``_file`` / ``_key``): ``tests/observability/
test_cells.py`` checks them against the installed version.  A process forked after adopting
would go on writing into its parent's file: llmgate spawns its workers (``workers.py``).
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

_DOUBLE = 8


class Cell:
    """One double of a metric (a prometheus_client value object, for the metric's child)."""

    __slots__ = ("index", "view")

    def __init__(self, view: memoryview[float], index: int) -> None:
        self.view = view
        self.index = index

    def inc(self, amount: float) -> None:
        self.view[self.index] += amount

    def set(self, value: float, timestamp: float | None = None) -> None:
        # The double after a value is its timestamp (prometheus_client's "mostrecent" gauges).
        self.view[self.index] = value
        self.view[self.index + 1] = timestamp or 0.0

    def get(self) -> float:
        return float(self.view[self.index])

    def set_exemplar(self, exemplar: object) -> None:
        """Exemplars are not kept (prometheus_client's multiprocess mode has none)."""

    def get_exemplar(self) -> None:
        return None


class HistogramCells:
    """A histogram child's bucket counts (not cumulative, as prometheus_client keeps them)
    and sum."""

    __slots__ = ("_doubles", "_total", "bounds", "buckets", "sum")

    def __init__(self, bounds: tuple[float, ...], buckets: list[Cell], sum: Cell) -> None:
        self.bounds = bounds
        self.buckets = buckets
        self.sum = sum
        # The cells' (view, index): what ``observe`` writes, without reading a cell's fields.
        self._doubles = tuple((cell.view, cell.index) for cell in buckets)
        self._total = (sum.view, sum.index)

    def observe(self, amount: float) -> None:
        view, index = self._doubles[bisect_left(self.bounds, amount)]  # first bound >= amount
        view[index] += 1
        view, index = self._total
        view[index] += amount


def counter(child: Counter) -> Cell:
    """``child`` (``Counter(...).labels(...)``) recorded through the returned cell."""
    child._value = cell = _cell_of(child._value)
    return cell


def gauge(child: Gauge) -> Cell:
    """``child`` (``Gauge(...).labels(...)``, not "mostrecent") recorded through the cell."""
    child._value = cell = _cell_of(child._value)
    return cell


def histogram(child: Histogram) -> HistogramCells:
    """``child`` (``Histogram(...).labels(...)``) recorded through the returned cells."""
    buckets = [_cell_of(value) for value in child._buckets]
    child._buckets = buckets
    child._sum = total = _cell_of(child._sum)
    return HistogramCells(tuple(child._upper_bounds), buckets, total)


def _cell_of(value: Any) -> Cell:
    """A cell holding what ``value`` (a prometheus_client value object) holds."""
    mapped = getattr(value, "_file", None)
    if mapped is not None:  # multiprocess: the value's (value, timestamp) in the mmap'd file
        position = mapped._positions[value._key]
        if position % _DOUBLE:
            raise RuntimeError(f"unaligned prometheus_client value at {position}")
        return Cell(memoryview(mapped._m).cast("d"), position // _DOUBLE)
    cell = Cell(memoryview(bytearray(2 * _DOUBLE)).cast("d"), 0)
    cell.view[0] = value.get()
    return cell
