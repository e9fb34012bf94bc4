"""wrk runs: the command, its output parsed into ``WrkResult``, and the CPU each watched process
used meanwhile.
"""

from __future__ import annotations

import os
import re
import resource
import subprocess
import time
from dataclasses import dataclass

from benchkit.constants import REQUEST_BODY, WRK_SCRIPT
from benchkit.logs import BenchError
from benchkit.options import Options
from benchkit.procs import Proc
from benchkit.sampling import cpu_busy, cpu_times, tree_cpu_seconds

_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0, "h": 3600000.0}


def _millis(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if not match:
        raise ValueError(text)
    return float(match.group(1)) * _UNITS[match.group(2)]


@dataclass
class WrkResult:
    connections: int
    rps: float
    requests: int
    p50: float  # ms
    p99: float
    non2xx: int
    socket_errors: int
    wrk_cpu: float = 0.0  # % of one core
    sut_cpu: float = 0.0
    sut_parent_cpu: float = 0.0  # the SUT's first process alone (llmgate's supervisor)
    upstream_cpu: float = 0.0
    load_busy: float = 0.0  # % of the load CPU(s)
    sut_busy: float = 0.0
    other_cpu: float = 0.0  # % of one core used by processes that are not ours

    @property
    def ok(self) -> bool:
        return self.requests > 0 and self.non2xx == 0 and self.socket_errors == 0

    def problem(self) -> str:
        if self.requests == 0:
            return "no requests completed"
        parts = []
        if self.non2xx:
            parts.append(f"{self.non2xx} non-2xx of {self.requests}")
        if self.socket_errors:
            parts.append(f"{self.socket_errors} socket errors")
        return ", ".join(parts)


def parse_wrk(text: str, connections: int) -> WrkResult:
    def number(pattern: str, default: str | None = None) -> str:
        match = re.search(pattern, text)
        if match:
            return match.group(1)
        if default is None:
            raise BenchError(f"cannot parse wrk output: {text.strip()[-300:]!r}")
        return default

    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text
    )
    return WrkResult(
        connections=connections,
        rps=float(number(r"Requests/sec:\s+([\d.]+)")),
        requests=int(number(r"(\d+) requests in")),
        p50=_millis(number(r"\s50%\s+(\S+)")),
        p99=_millis(number(r"\s99%\s+(\S+)")),
        non2xx=int(number(r"Non-2xx or 3xx responses: (\d+)", "0")),
        socket_errors=sum(int(g) for g in errors.groups()) if errors else 0,
    )


@dataclass
class Watch:
    """The processes whose CPU use a run reports."""

    sut: Proc | None = None
    upstream: Proc | None = None


def run_wrk(
    options: Options,
    port: int,
    path: str,
    connections: int,
    seconds: int,
    headers: dict[str, str] | None = None,
    watch: Watch | None = None,
) -> WrkResult:
    watch = watch or Watch()
    env = dict(os.environ)
    env["BENCH_BODY"] = REQUEST_BODY
    env["BENCH_HEADERS"] = "|".join(f"{k}: {v}" for k, v in (headers or {}).items())
    argv = [
        "taskset",
        "-c",
        options.load_cpu,
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{seconds}s",
        "--timeout",
        "5s",
        "--latency",
        "-s",
        str(WRK_SCRIPT),
        f"http://127.0.0.1:{port}{path}",
    ]
    sut_before = tree_cpu_seconds(watch.sut.pid) if watch.sut else 0.0
    parent_before = tree_cpu_seconds(watch.sut.pid, tree=False) if watch.sut else 0.0
    up_before = tree_cpu_seconds(watch.upstream.pid) if watch.upstream else 0.0
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    stat_before = cpu_times()
    started = time.monotonic()
    try:
        done = subprocess.run(
            argv, env=env, capture_output=True, text=True, timeout=seconds + 30, check=False
        )
    except subprocess.TimeoutExpired:
        raise BenchError(f"wrk did not finish within {seconds + 30} s") from None
    elapsed = max(time.monotonic() - started, 1e-6)
    stat_after = cpu_times()
    children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise BenchError(f"wrk failed ({done.returncode}): {done.stderr.strip()[-300:]}")
    result = parse_wrk(done.stdout, connections)
    wrk_seconds = (children_after.ru_utime - children_before.ru_utime) + (
        children_after.ru_stime - children_before.ru_stime
    )
    result.wrk_cpu = 100.0 * wrk_seconds / elapsed
    if watch.sut:
        result.sut_cpu = 100.0 * (tree_cpu_seconds(watch.sut.pid) - sut_before) / elapsed
        parent = tree_cpu_seconds(watch.sut.pid, tree=False) - parent_before
        result.sut_parent_cpu = 100.0 * parent / elapsed
    if watch.upstream:
        result.upstream_cpu = 100.0 * (tree_cpu_seconds(watch.upstream.pid) - up_before) / elapsed
    result.load_busy = cpu_busy(stat_before, stat_after, options.load_cpu)
    result.sut_busy = cpu_busy(stat_before, stat_after, options.sut_cpu)
    return result
