"""Measuring one target: warm-up, the loaded and one-connection wrk runs, SSE samples; the
upstream capacity check.
"""

from __future__ import annotations

import http.client
from dataclasses import dataclass

from benchkit.constants import CHAT_PATH, FAKE_PATH
from benchkit.load import Watch, WrkResult, run_wrk
from benchkit.logs import BenchError, log
from benchkit.options import Options
from benchkit.sampling import quietly, tree_rss_mb
from benchkit.sse import sse_ttfb


@dataclass
class Row:
    target: str
    c32: WrkResult | None = None
    c1: WrkResult | None = None
    ttfb: list[float] | None = None
    rss_mb: float | None = None
    error: str | None = None
    other_cpu: float = 0.0  # the most other processes used during one of its measurements

    @property
    def ok(self) -> bool:
        return self.error is None


def load_run(
    options: Options,
    row: Row,
    port: int,
    path: str,
    connections: int,
    headers: dict[str, str],
    watch: Watch,
) -> WrkResult:
    """One measured wrk run, repeated when other processes loaded the box meanwhile."""
    result, other = quietly(
        options,
        f"{row.target} @{connections}",
        lambda: run_wrk(options, port, path, connections, options.duration, headers, watch),
    )
    result.other_cpu = other
    row.other_cpu = max(row.other_cpu, other)
    return result


def measure(
    options: Options,
    row: Row,
    port: int,
    headers: dict[str, str],
    watch: Watch,
    sse_path: str | None,
) -> None:
    """Warm up, then c32 and c1 wrk runs and (with `sse_path`) the SSE TTFB samples."""
    try:
        if options.warmup:
            run_wrk(options, port, CHAT_PATH, options.connections, options.warmup, headers, watch)
        c, seconds = options.connections, options.duration
        log(f"{row.target}: {c} connections, {seconds} s")
        row.c32 = load_run(options, row, port, CHAT_PATH, c, headers, watch)
        if not row.c32.ok:
            raise BenchError(f"load run: {row.c32.problem()}")
        log(f"{row.target}: 1 connection, {seconds} s")
        row.c1 = load_run(options, row, port, CHAT_PATH, 1, headers, watch)
        if not row.c1.ok:
            raise BenchError(f"concurrency-1 run: {row.c1.problem()}")
        if watch.sut:
            row.rss_mb = tree_rss_mb(watch.sut.pid)
        if sse_path:
            log(f"{row.target}: SSE time to first byte, {options.sse_requests} requests")
            row.ttfb, other = quietly(
                options,
                f"{row.target} SSE",
                lambda: sse_ttfb(port, sse_path, headers, options.sse_requests),
            )
            row.other_cpu = max(row.other_cpu, other)
        if watch.sut and not watch.sut.alive():
            raise BenchError(f"{watch.sut.name} exited: {watch.sut.tail()}")
    except (BenchError, OSError, http.client.HTTPException) as exc:
        row.error = str(exc) or type(exc).__name__
        log(f"{row.target}: FAILED: {row.error}")


def capacity_run(
    options: Options, target: str, port: int, headers: dict[str, str], watch: Watch
) -> Row:
    """One load run against the fake upstream (directly or through a proxy)."""
    row = Row(target)
    log(f"{target}: {options.connections} connections, {options.duration} s")
    try:
        run_wrk(options, port, FAKE_PATH, options.connections, 1, headers, watch)
        row.c32 = load_run(options, row, port, FAKE_PATH, options.connections, headers, watch)
        if not row.c32.ok:
            row.error = row.c32.problem()
    except BenchError as exc:
        row.error = str(exc)
    return row
