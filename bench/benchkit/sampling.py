"""CPU and memory read from /proc: per-process-tree CPU time and RSS, per-CPU busy time, and
how much CPU processes that are not ours used (runs disturbed by them are repeated).
"""

from __future__ import annotations

import contextlib
import os
import resource
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchkit.logs import log
from benchkit.options import Options
from benchkit.procs import Proc, cpu_list

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def process_tree(root: int) -> list[int]:
    """`root` and its descendants."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            stat = Path(f"/proc/{entry}/stat").read_text()
            ppid = int(stat.rpartition(")")[2].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def tree_cpu_seconds(root: int, tree: bool = True) -> float:
    """CPU time of `root` and (with `tree`) its descendants."""
    total = 0
    for pid in process_tree(root) if tree else [root]:
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLOCK_TICKS


def tree_rss_mb(root: int) -> float:
    """Summed VmRSS of the tree (shared pages of forked workers count once per process)."""
    total_kb = 0
    for pid in process_tree(root):
        with contextlib.suppress(OSError, ValueError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kb += int(line.split()[1])
    return total_kb / 1024


def cpu_times() -> dict[int, tuple[int, int]]:
    """Per CPU: (busy, total) jiffies."""
    out: dict[int, tuple[int, int]] = {}
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("cpu") and line[3:4].isdigit():
            name, *values = line.split()
            numbers = [int(v) for v in values[:8]]
            idle = numbers[3] + numbers[4]
            out[int(name[3:])] = (sum(numbers) - idle, sum(numbers))
    return out


def cpu_busy(before: dict[int, tuple[int, int]], after: dict[int, tuple[int, int]], cpus: str):
    busy = total = 0
    for cpu in cpu_list(cpus):
        if cpu in before and cpu in after:
            busy += after[cpu][0] - before[cpu][0]
            total += after[cpu][1] - before[cpu][1]
    return 100.0 * busy / total if total else 0.0


def our_cpu_seconds() -> float:
    """CPU time of this script, its reaped children (wrk) and every process it started."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    reaped = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = own.ru_utime + own.ru_stime + reaped.ru_utime + reaped.ru_stime
    return total + sum(tree_cpu_seconds(proc.pid) for proc in Proc.live)


class CpuMeter:
    """How much CPU (% of one core) processes that are not ours used since it was created."""

    def __init__(self) -> None:
        self.stat = cpu_times()
        self.ours = our_cpu_seconds()
        self.started = time.monotonic()

    def other(self) -> float:
        stat, ours = cpu_times(), our_cpu_seconds()
        elapsed = max(time.monotonic() - self.started, 1e-6)
        busy = sum(
            (stat[cpu][0] - self.stat[cpu][0]) / CLOCK_TICKS for cpu in stat if cpu in self.stat
        )
        return max(0.0, 100.0 * (busy - (ours - self.ours)) / elapsed)


def wait_quiet(options: Options, reason: str) -> float:
    """Wait (at most options.quiet_wait s) until other processes use under the threshold."""
    deadline = time.monotonic() + options.quiet_wait
    other = 0.0
    while True:
        meter = CpuMeter()
        time.sleep(1.0)
        other = meter.other()
        if other <= options.quiet_threshold or time.monotonic() >= deadline:
            break
    if other > options.quiet_threshold:
        log(f"{reason}: other processes still use {other:.0f}% of a core; going on")
    return other


def quietly(options: Options, what: str, run: Callable[[], Any]) -> tuple[Any, float]:
    """`run()` again (up to options.retries times) when other processes loaded the box.

    Returns the least disturbed attempt and how much CPU other processes used during it.
    """
    best: tuple[Any, float] | None = None
    for attempt in range(options.retries + 1):
        meter = CpuMeter()
        result = run()
        other = meter.other()
        if best is None or other < best[1]:
            best = (result, other)
        if other <= options.quiet_threshold:
            break
        if attempt < options.retries:
            log(f"{what}: other processes used {other:.0f}% of a core; waiting, then again")
            wait_quiet(options, what)
    assert best is not None
    return best


def background_busy(seconds: float = 1.0) -> dict[int, float]:
    """How busy each CPU is before anything of ours runs (other work skews the numbers)."""
    before = cpu_times()
    time.sleep(seconds)
    after = cpu_times()
    return {
        cpu: 100.0 * (after[cpu][0] - before[cpu][0]) / max(after[cpu][1] - before[cpu][1], 1)
        for cpu in after
    }
