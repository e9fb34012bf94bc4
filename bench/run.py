"""The llmgate benchmark: llmgate against a direct upstream and an nginx reverse proxy, on one box.

    .venv/bin/python bench/run.py                 every plugin set, 1 worker (make bench)
    .venv/bin/python bench/run.py --quick         2 s runs, nothing written: checks the harness
    .venv/bin/python bench/run.py --soak 600      RSS of llmgate under steady load (make bench-soak)
    .venv/bin/python bench/run.py --workers       1 vs 2 data-plane workers (make bench-workers)

Every process is started here, pinned with taskset and stopped at the end: the load generator
(wrk), the upstreams and this script on the load CPU (0), the system under test (llmgate or the
nginx reference) on the SUT CPU (1).  Upstreams: nginx answering a fixed ~600-byte chat
completion (bench/nginx/upstream.conf) for the load runs, and ``llmgate fake-upstream`` for the
SSE time-to-first-byte test and the upstream capacity check.  A target whose configuration is
rejected, whose pre-flight requests are not 200, or whose runs saw a non-2xx response or a socket
error is reported as failed in the table; the other targets still run.

Results are printed and, except with --quick (or --no-write), written into docs/benchmarks.md
between ``<!-- bench:MODE:begin -->`` and ``<!-- bench:MODE:end -->``.  See bench/README.md.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime
import http.client
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import string
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
DOCS = ROOT / "docs" / "benchmarks.md"
WRK_SCRIPT = BENCH / "wrk" / "chat.lua"

ADMIN_KEY = "bench-admin-key-0123456789"
BASIC_USER, BASIC_PASSWORD = "bench", "bench-password"
API_KEY = "bench-api-key"
BASIC_HEADER = "Basic " + base64.b64encode(f"{BASIC_USER}:{BASIC_PASSWORD}".encode()).decode()

CHAT_PATH = "/v1/chat/completions"
SSE_PATH = "/sse/v1/chat/completions"  # the fake upstream answers chat under any path prefix
FAKE_PATH = "/fake/v1/chat/completions"
REQUEST_BODY = json.dumps(
    {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "Say hello in one short sentence."}],
    },
    separators=(",", ":"),
)
SSE_BODY = REQUEST_BODY[:-1] + ',"stream":true}'
REPLY_TEXT = (
    "Hello! This is a fixed reply served by the benchmark upstream: an nginx worker that answers "
    "every request with the same chat completion, so the upstream never becomes the bottleneck "
    "of what is measured. It is about as long as a short real answer."
)
# ~600 bytes, like a short real chat completion; no ' or $ (it goes into nginx's `return '...'`).
CHAT_RESPONSE = json.dumps(
    {
        "id": "chatcmpl-bench000000000000000000000000",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": REPLY_TEXT, "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 14, "completion_tokens": 52, "total_tokens": 66},
        "system_fingerprint": "fp_bench0000",
    },
    separators=(",", ":"),
)

SOAK_SET = "basic-auth + limit-count + prometheus"


# --- options ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    duration: int
    warmup: int
    connections: int
    sse_requests: int
    sse_delay_ms: float
    load_cpu: str
    sut_cpu: str
    upstream: str  # "nginx" or "fake"
    write: bool
    keep: bool
    command: str
    only: tuple[str, ...] = ()
    quiet_threshold: float = 15.0
    quiet_wait: float = 60.0
    retries: int = 2


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, Options]:
    parser = argparse.ArgumentParser(
        prog="bench/run.py", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--soak", type=int, metavar="SECONDS", help="memory soak: steady load for SECONDS"
    )
    mode.add_argument("--workers", action="store_true", help="1 vs 2 data-plane workers")
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run (10)")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of warm-up per target (2)")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (32)")
    parser.add_argument("--sse-requests", type=int, default=50, help="SSE TTFB samples (50)")
    parser.add_argument(
        "--sse-delay-ms", type=float, default=5.0, help="fake upstream delay between events (5)"
    )
    parser.add_argument("--soak-interval", type=int, default=10, help="RSS sample period (10 s)")
    parser.add_argument(
        "--quick", action="store_true", help="2 s runs, 1 s warm-up, 10 SSE samples; no docs"
    )
    parser.add_argument("--load-cpu", default="0", help="CPU list of wrk and the upstreams (0)")
    parser.add_argument("--sut-cpu", default="1", help="CPU list of llmgate / nginx proxy (1)")
    parser.add_argument(
        "--upstream",
        choices=("nginx", "fake"),
        default="nginx",
        help="upstream of the load runs: nginx fixed body (default) or llmgate fake-upstream",
    )
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="NAME",
        help="default mode: run only the plugin sets whose label contains NAME (repeatable)",
    )
    write = parser.add_mutually_exclusive_group()
    write.add_argument("--write", action="store_true", help="write docs even with --quick")
    write.add_argument("--no-write", action="store_true", help="do not touch docs/benchmarks.md")
    parser.add_argument("--keep", action="store_true", help="keep the run directory (logs)")
    parser.add_argument(
        "--quiet-threshold",
        type=float,
        default=15.0,
        help="%% of a core other processes may use during a run before it is repeated (15)",
    )
    parser.add_argument(
        "--quiet-wait", type=float, default=60.0, help="max seconds to wait for a quiet box (60)"
    )
    parser.add_argument("--retries", type=int, default=2, help="repeats of a noisy run (2)")
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.warmup, args.sse_requests = 2, 1, 10
    if args.duration < 1 or args.warmup < 0 or args.connections < 1 or args.sse_requests < 1:
        parser.error("durations, connections and SSE samples must be positive")
    cpus = os.cpu_count() or 1
    if cpus < 2 and (args.load_cpu, args.sut_cpu) == ("0", "1"):
        args.sut_cpu = "0"
    options = Options(
        duration=args.duration,
        warmup=args.warmup,
        connections=args.connections,
        sse_requests=args.sse_requests,
        sse_delay_ms=args.sse_delay_ms,
        load_cpu=args.load_cpu,
        sut_cpu=args.sut_cpu,
        upstream=args.upstream,
        write=(args.write or not args.quick) and not args.no_write,
        keep=args.keep,
        command=command_line(argv),
        only=tuple(args.only),
        quiet_threshold=args.quiet_threshold,
        quiet_wait=0.0 if args.quick else args.quiet_wait,
        retries=0 if args.quick else max(args.retries, 0),
    )
    return args, options


def command_line(argv: list[str] | None) -> str:
    words = sys.argv[1:] if argv is None else argv
    return " ".join([".venv/bin/python bench/run.py", *words]).strip()


def log(line: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {line}", file=sys.stderr, flush=True)


class BenchError(Exception):
    """A target could not be measured; the message goes into the table."""


# --- processes ----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_list(spec: str) -> set[int]:
    cpus: set[int] = set()
    for part in spec.split(","):
        low, _, high = part.partition("-")
        cpus.update(range(int(low), int(high or low) + 1))
    return cpus


class Proc:
    """A process started here, pinned with taskset, in its own process group."""

    live: ClassVar[list[Proc]] = []  # started and not yet stopped

    def __init__(
        self,
        name: str,
        argv: list[str],
        cpus: str,
        run_dir: Path,
        env: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.log_path = run_dir / f"{name}.log"
        self._log = self.log_path.open("wb")
        self.popen = subprocess.Popen(
            ["taskset", "-c", cpus, *argv],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        self.pid = self.popen.pid  # taskset execs the program: this is its pid
        Proc.live.append(self)

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pid, signal.SIGKILL)
                self.popen.wait(5)
        else:  # the leader is gone; its group (e.g. llmgate workers) may not be
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)
        self._log.close()
        with contextlib.suppress(ValueError):
            Proc.live.remove(self)

    def tail(self, lines: int = 6) -> str:
        with contextlib.suppress(OSError):
            text = self.log_path.read_text(errors="replace").strip().splitlines()
            return " | ".join(text[-lines:])
        return ""


def wait_for(check: Callable[[], bool], what: str, timeout: float, proc: Proc | None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and not proc.alive():
            raise BenchError(f"{proc.name} exited ({proc.popen.returncode}): {proc.tail()}")
        with contextlib.suppress(OSError, http.client.HTTPException):
            if check():
                return
        time.sleep(0.05)
    raise BenchError(f"{what} not ready after {timeout:.0f} s")


def port_open(port: int) -> Callable[[], bool]:
    def check() -> bool:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True

    return check


def request(
    port: int,
    method: str,
    path: str,
    body: str | bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 5.0,
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        all_headers = {"Content-Type": "application/json", **(headers or {})}
        conn.request(method, path, body=body, headers=all_headers)
        response = conn.getresponse()
        data = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, data
    finally:
        conn.close()


# --- /proc sampling -----------------------------------------------------------------------------

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


# --- wrk ----------------------------------------------------------------------------------------

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


# --- SSE time to first byte ---------------------------------------------------------------------


def sse_ttfb(port: int, path: str, headers: dict[str, str], samples: int) -> list[float]:
    """Milliseconds from sending a streaming request to the first byte of its first SSE event.

    One fresh connection per request (the clock starts once it is connected); every stream is
    read to its end and must be a 200 ``text/event-stream`` ending in ``data: [DONE]``.
    """
    body = SSE_BODY.encode()
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Accept: text/event-stream\r\nContent-Length: {len(body)}\r\nConnection: close\r\n"
        f"{extra}\r\n"
    ).encode()
    out: list[float] = []
    for _ in range(samples):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            received = bytearray()
            first: float | None = None
            started = time.perf_counter()
            sock.sendall(head + body)
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                received += chunk
                if first is None and b"data:" in received:
                    first = time.perf_counter()
        status_line, _, rest = bytes(received).partition(b"\r\n")
        parts = status_line.split()
        status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
        headers_end = rest.find(b"\r\n\r\n")
        head_text = rest[:headers_end].lower()
        if status != 200 or b"text/event-stream" not in head_text or b"[DONE]" not in rest:
            snippet = rest[headers_end + 4 :][:200].decode(errors="replace")
            raise BenchError(f"SSE request answered {status}: {snippet}")
        assert first is not None
        out.append((first - started) * 1000)
    return out


# --- llmgate ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PluginSet:
    label: str
    plugins: Callable[[str], dict[str, Any]]  # endpoint URL (for ai-proxy) -> route plugins
    consumer: dict[str, Any] | None
    headers: dict[str, str]
    cache: bool = False  # expect Apisix-Cache-Status: HIT after the first request
    sse: bool = True


LIMIT_COUNT = {"count": 100_000_000, "time_window": 60, "key_type": "constant", "key": "bench"}

PLUGIN_SETS = (
    PluginSet("none", lambda _: {}, None, {}),
    PluginSet(
        SOAK_SET,
        lambda _: {"basic-auth": {}, "limit-count": dict(LIMIT_COUNT), "prometheus": {}},
        {
            "username": BASIC_USER,
            "plugins": {"basic-auth": {"username": BASIC_USER, "password": BASIC_PASSWORD}},
        },
        {"Authorization": BASIC_HEADER},
    ),
    PluginSet(
        "key-auth + ai-proxy + ai-rate-limiting",
        lambda endpoint: {
            "key-auth": {},
            "ai-proxy": {
                "provider": "openai-compatible",
                "auth": {"header": {"Authorization": "Bearer bench-provider-key"}},
                "override": {"endpoint": endpoint},
            },
            "ai-rate-limiting": {"limit": 1_000_000_000, "time_window": 60},
        },
        {"username": "benchkey", "plugins": {"key-auth": {"key": API_KEY}}},
        {"apikey": API_KEY},
    ),
    PluginSet(
        "proxy-cache (memory, hit)",
        lambda _: {
            "proxy-cache": {
                "cache_strategy": "memory",
                "cache_method": ["POST"],
                "cache_http_status": [200],
            }
        },
        None,
        {},
        cache=True,
        sse=False,
    ),
)


class Llmgate:
    """One ``llmgate serve`` (admin API + data plane) with its own SQLite store."""

    def __init__(self, options: Options, run_dir: Path, name: str, workers: int = 1, cpus=None):
        self.admin_port, self.proxy_port, self.metrics_port = free_port(), free_port(), free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("LLMGATE_")}
        db = run_dir / f"{name}.db"
        env.update(
            LLMGATE_ADMIN_KEY=ADMIN_KEY,
            LLMGATE_DATABASE_URL=f"sqlite+aiosqlite:///{db}",
            LLMGATE_ADMIN_LISTEN=f"127.0.0.1:{self.admin_port}",
            LLMGATE_PROXY_LISTEN=f"127.0.0.1:{self.proxy_port}",
            LLMGATE_METRICS_LISTEN=f"127.0.0.1:{self.metrics_port}",
        )
        argv = [sys.executable, "-m", "llmgate.cli", "serve", "--workers", str(workers)]
        self.proc = Proc(name, argv, cpus or options.sut_cpu, run_dir, env)
        try:
            wait_for(self._admin_ready, "llmgate admin API", 90, self.proc)
        except BaseException:
            self.proc.stop()
            raise

    def _admin_ready(self) -> bool:
        status, _, _ = self.admin("GET", "/apisix/admin/routes")
        return status == 200

    def admin(self, method: str, path: str, payload: Any = None) -> tuple[int, dict, bytes]:
        body = None if payload is None else json.dumps(payload)
        return request(self.admin_port, method, path, body, {"X-API-KEY": ADMIN_KEY})

    def put(self, path: str, payload: Any) -> None:
        status, _, data = self.admin("PUT", path, payload)
        if status not in (200, 201):
            text = data.decode(errors="replace")[:300]
            raise BenchError(f"admin API rejected PUT {path}: {status} {text}")

    def configure(self, plugin_set: PluginSet, upstream_port: int, fake_port: int) -> None:
        """Route /v1/* to the load upstream, /sse/* and /fake/* to the fake upstream."""
        self.put("/apisix/admin/upstreams/1", {"nodes": {f"127.0.0.1:{upstream_port}": 1}})
        self.put("/apisix/admin/upstreams/2", {"nodes": {f"127.0.0.1:{fake_port}": 1}})
        if plugin_set.consumer:
            self.put("/apisix/admin/consumers", plugin_set.consumer)
        routes = [("1", "/v1/*", "1", upstream_port)]
        if plugin_set.sse:
            routes.append(("2", "/sse/*", "2", fake_port))
        if plugin_set.label == "none":
            routes.append(("3", "/fake/*", "2", fake_port))
        for route_id, uri, upstream_id, port in routes:
            route: dict[str, Any] = {"uri": uri, "upstream_id": upstream_id}
            plugins = plugin_set.plugins(f"http://127.0.0.1:{port}{CHAT_PATH}")
            if plugins:
                route["plugins"] = plugins
            self.put(f"/apisix/admin/routes/{route_id}", route)

    def stop(self) -> None:
        self.proc.stop()


def preflight(port: int, path: str, headers: dict[str, str], cache: bool, proc: Proc | None):
    """Wait for the route to answer, then check a few requests: 200 and a chat completion."""
    last: tuple[int, bytes] = (0, b"")

    def answered() -> bool:
        # Ten requests, each on its own connection: with several workers (SO_REUSEPORT) they
        # reach every worker, and each loads the new configuration on its own.
        nonlocal last
        for _ in range(10):
            status, _, data = request(port, "POST", path, REQUEST_BODY, headers)
            last = (status, data)
            if status == 404:
                return False
        return True

    try:
        wait_for(answered, "route", 15, proc)
    except BenchError:
        if last[0] == 0 or (proc is not None and not proc.alive()):
            raise
    for attempt in range(8):
        status, got, data = request(port, "POST", path, REQUEST_BODY, headers)
        if not 200 <= status < 300 or b"chat.completion" not in data:
            text = data.decode(errors="replace")[:200]
            raise BenchError(f"pre-flight {path}: {status} {text}")
        if cache and attempt > 0 and got.get("apisix-cache-status") != "HIT":
            cache_status = got.get("apisix-cache-status")
            raise BenchError(
                f"pre-flight: expected a cache HIT, got Apisix-Cache-Status {cache_status}"
            )


# --- measuring one target -----------------------------------------------------------------------


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


class Stack:
    """The shared processes of a run: upstreams and (optionally) the nginx reference."""

    def __init__(self, options: Options, run_dir: Path) -> None:
        self.options = options
        self.run_dir = run_dir
        self.procs: list[Proc] = []
        self.nginx = shutil.which("nginx") or "/usr/sbin/nginx"

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in reversed(self.procs):
            proc.stop()
        self.procs.clear()

    def _nginx(
        self, name: str, template: str, cpus: str, fields: dict[str, Any]
    ) -> tuple[Proc, int]:
        port = free_port()
        text = string.Template((BENCH / "nginx" / template).read_text())
        conf = self.run_dir / f"{name}.conf"
        conf.write_text(text.substitute(RUN=self.run_dir, PORT=port, **fields))
        argv = [self.nginx, "-p", str(self.run_dir), "-e", "stderr", "-c", str(conf)]
        proc = Proc(name, argv, cpus, self.run_dir)
        self.procs.append(proc)
        wait_for(port_open(port), name, 15, proc)
        return proc, port

    def start_fake(self) -> tuple[Proc, int]:
        port = free_port()
        argv = [sys.executable, "-m", "llmgate.cli", "fake-upstream", "--port", str(port)]
        argv += ["--stream-delay-ms", str(self.options.sse_delay_ms)]
        proc = Proc("fake-upstream", argv, self.options.load_cpu, self.run_dir)
        self.procs.append(proc)
        wait_for(lambda: request(port, "GET", "/__fake/health")[0] == 200, "fake", 30, proc)
        return proc, port

    def start_upstream(self) -> tuple[Proc, int]:
        fields = {"CHAT_BODY": CHAT_RESPONSE}
        return self._nginx("upstream", "upstream.conf", self.options.load_cpu, fields)

    def start_reference(self, upstream_port: int, fake_port: int) -> tuple[Proc, int]:
        (self.run_dir / "htpasswd").write_text(f"{BASIC_USER}:{{PLAIN}}{BASIC_PASSWORD}\n")
        fields = {"UPSTREAM_PORT": upstream_port, "FAKE_PORT": fake_port}
        return self._nginx("proxy", "proxy.conf", self.options.sut_cpu, fields)

    def stop(self, proc: Proc) -> None:
        proc.stop()
        with contextlib.suppress(ValueError):
            self.procs.remove(proc)


# --- modes --------------------------------------------------------------------------------------


@dataclass
class Report:
    mode: str
    title: str
    sections: list[str] = field(default_factory=list)


def load_upstream(stack: Stack, fake: tuple[Proc, int]) -> tuple[Proc, int, str]:
    if stack.options.upstream == "fake":
        return fake[0], fake[1], "llmgate fake-upstream (351-byte reply)"
    proc, port = stack.start_upstream()
    return proc, port, f"nginx, fixed {len(CHAT_RESPONSE)}-byte chat completion"


def mode_default(options: Options, run_dir: Path) -> Report:
    rows: list[Row] = []
    capacity: list[Row] = []
    with Stack(options, run_dir) as stack:
        fake_proc, fake_port = stack.start_fake()
        up_proc, up_port, up_text = load_upstream(stack, (fake_proc, fake_port))
        fake_watch = Watch(upstream=fake_proc)

        direct = Row("direct (no proxy)")
        check = request(up_port, "POST", CHAT_PATH, REQUEST_BODY)
        if check[0] != 200:
            raise BenchError(f"the upstream answers {check[0]}")
        measure(options, direct, up_port, {}, Watch(upstream=up_proc), None)
        with contextlib.suppress(BenchError, OSError):
            direct.ttfb, other = quietly(
                options,
                "direct SSE",
                lambda: sse_ttfb(fake_port, SSE_PATH, {}, options.sse_requests),
            )
            direct.other_cpu = max(direct.other_cpu, other)
        rows.append(direct)

        if options.upstream == "nginx":
            capacity.append(
                capacity_run(options, "fake-upstream direct", fake_port, {}, fake_watch)
            )

        ref_proc, ref_port = stack.start_reference(up_port, fake_port)
        auth = {"Authorization": BASIC_HEADER}
        reference = Row("nginx reference (basic auth)")
        try:
            preflight(ref_port, CHAT_PATH, auth, False, ref_proc)
            measure(options, reference, ref_port, auth, Watch(ref_proc, up_proc), SSE_PATH)
        except BenchError as exc:
            reference.error = str(exc)
        rows.append(reference)
        if options.upstream == "nginx" and reference.ok:
            watch = Watch(ref_proc, fake_proc)
            name = "nginx reference -> fake-upstream"
            capacity.append(capacity_run(options, name, ref_port, auth, watch))
        stack.stop(ref_proc)

        for plugin_set in PLUGIN_SETS:
            if options.only and not any(word in plugin_set.label for word in options.only):
                continue
            row = Row(f"llmgate: {plugin_set.label}")
            gate: Llmgate | None = None
            try:
                gate = Llmgate(options, run_dir, f"llmgate-{len(rows)}")
                gate.configure(plugin_set, up_port, fake_port)
                headers = plugin_set.headers
                preflight(gate.proxy_port, CHAT_PATH, headers, plugin_set.cache, gate.proc)
                sse = SSE_PATH if plugin_set.sse else None
                measure(options, row, gate.proxy_port, headers, Watch(gate.proc, up_proc), sse)
                if plugin_set.label == "none" and options.upstream == "nginx" and row.ok:
                    watch = Watch(gate.proc, fake_proc)
                    name = "llmgate: none -> fake-upstream"
                    capacity.append(capacity_run(options, name, gate.proxy_port, {}, watch))
            except (BenchError, OSError, http.client.HTTPException) as exc:
                row.error = str(exc)
                log(f"{row.target}: FAILED: {row.error}")
            finally:
                if gate is not None:
                    gate.stop()
            rows.append(row)

    report = Report("default", "Plugin sets, 1 worker")
    report.sections.append(default_table(options, rows, up_text))
    report.sections.append(cpu_table(rows, options))
    if capacity:
        report.sections.append(capacity_table(capacity, options))
    return report


def mode_workers(options: Options, run_dir: Path) -> Report:
    plugin_set = PLUGIN_SETS[1]
    all_cpus = f"0-{(os.cpu_count() or 1) - 1}"
    layouts = [options.sut_cpu]
    if all_cpus != options.sut_cpu and (os.cpu_count() or 1) > 1:
        layouts.append(all_cpus)
    rows: list[tuple[int, str, Row]] = []
    with Stack(options, run_dir) as stack:
        fake_proc, fake_port = stack.start_fake()
        up_proc, up_port, up_text = load_upstream(stack, (fake_proc, fake_port))
        for cpus in layouts:
            for workers in (1, 2):
                row = Row(f"{workers} worker{'s' if workers > 1 else ''}, SUT on CPU {cpus}")
                gate: Llmgate | None = None
                try:
                    name = f"llmgate-w{workers}-{len(rows)}"
                    gate = Llmgate(options, run_dir, name, workers, cpus)
                    gate.configure(plugin_set, up_port, fake_port)
                    preflight(gate.proxy_port, CHAT_PATH, plugin_set.headers, False, gate.proc)
                    watch = Watch(gate.proc, up_proc)
                    measure(options, row, gate.proxy_port, plugin_set.headers, watch, None)
                except (BenchError, OSError, http.client.HTTPException) as exc:
                    row.error = str(exc)
                    log(f"{row.target}: FAILED: {row.error}")
                finally:
                    if gate is not None:
                        gate.stop()
                rows.append((workers, cpus, row))
    report = Report("workers", f"Workers: 1 vs 2, {plugin_set.label}")
    report.sections.append(workers_table(options, rows, up_text))
    report.sections.append(cpu_table([row for _, _, row in rows], options))
    return report


def mode_soak(options: Options, run_dir: Path, seconds: int, interval: int) -> Report:
    plugin_set = PLUGIN_SETS[1]
    samples: list[tuple[float, float]] = []
    with Stack(options, run_dir) as stack:
        fake_proc, fake_port = stack.start_fake()
        up_proc, up_port, up_text = load_upstream(stack, (fake_proc, fake_port))
        gate = Llmgate(options, run_dir, "llmgate-soak")
        try:
            gate.configure(plugin_set, up_port, fake_port)
            preflight(gate.proxy_port, CHAT_PATH, plugin_set.headers, False, gate.proc)
            watch = Watch(gate.proc, up_proc)
            port, headers, c = gate.proxy_port, plugin_set.headers, options.connections
            run_wrk(options, port, CHAT_PATH, c, max(options.warmup, 5), headers, watch)
            log(f"soak: {seconds} s at {options.connections} connections, RSS every {interval} s")
            result_box: list[WrkResult] = []
            error_box: list[BaseException] = []

            def load() -> None:
                try:
                    result_box.append(run_wrk(options, port, CHAT_PATH, c, seconds, headers, watch))
                except BaseException as exc:  # reported below
                    error_box.append(exc)

            thread = threading.Thread(target=load, daemon=True)
            meter = CpuMeter()
            started = time.monotonic()
            thread.start()
            next_sample = started
            while thread.is_alive():
                now = time.monotonic()
                if now >= next_sample:
                    samples.append((now - started, tree_rss_mb(gate.proc.pid)))
                    next_sample += interval
                thread.join(timeout=max(0.0, min(next_sample - time.monotonic(), 1.0)))
            samples.append((time.monotonic() - started, tree_rss_mb(gate.proc.pid)))
            if error_box:
                raise error_box[0]
            result = result_box[0]
            result.other_cpu = meter.other()
            if not gate.proc.alive():
                raise BenchError(f"llmgate exited: {gate.proc.tail()}")
        finally:
            gate.stop()
    report = Report("soak", f"Memory soak, {plugin_set.label}")
    report.sections.append(soak_table(options, seconds, interval, result, samples, up_text))
    return report


# --- tables -------------------------------------------------------------------------------------


def ms(value: float | None) -> str:
    if value is None:
        return "-"
    if abs(value) < 10:
        return f"{value:.3f}"
    return f"{value:.1f}"


def signed_ms(value: float | None) -> str:
    return "-" if value is None else ("+" if value >= 0 else "") + ms(value)


def rate(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def median(values: list[float] | None) -> float | None:
    return statistics.median(values) if values else None


def percentile(values: list[float] | None, q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def default_table(options: Options, rows: list[Row], up_text: str) -> str:
    direct = rows[0] if rows and rows[0].ok else None
    nginx = next((r for r in rows if r.target.startswith("nginx") and r.ok and r.c32), None)
    c = options.connections
    lines = [
        f"| target | req/s @{c} | vs nginx | p50 @1 | p99 @1 | added p50 / p99 @1 "
        f"| p50 @{c} | p99 @{c} | SSE TTFB p50 (p90) | TTFB added | result |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|",
    ]
    for row in rows:
        c32, c1 = row.c32 if row.ok else None, row.c1 if row.ok else None
        ratio = "-"
        if c32 and nginx and nginx.c32 and row is not direct:
            ratio = f"{100 * c32.rps / nginx.c32.rps:.0f}%"
        added = "-"
        if c1 and direct and direct.c1 and row is not direct:
            added = f"{signed_ms(c1.p50 - direct.c1.p50)} / {signed_ms(c1.p99 - direct.c1.p99)}"
        ttfb = "-"
        if row.ttfb:
            ttfb = f"{ms(median(row.ttfb))} ({ms(percentile(row.ttfb, 0.9))})"
        ttfb_added = "-"
        if row.ttfb and direct and direct.ttfb and row is not direct:
            ttfb_added = signed_ms(median(row.ttfb) - median(direct.ttfb))  # type: ignore[operator]
        result = status(row, options)
        lines.append(
            f"| {row.target} | {rate(c32.rps if c32 else None)} | {ratio} "
            f"| {ms(c1.p50 if c1 else None)} | {ms(c1.p99 if c1 else None)} | {added} "
            f"| {ms(c32.p50 if c32 else None)} | {ms(c32.p99 if c32 else None)} "
            f"| {ttfb} | {ttfb_added} | {result} |"
        )
    legend = (
        f"Latencies in ms (wrk, {options.duration} s per run; @1 = 1 connection, @{c} = {c} "
        f'connections).  Load upstream: {up_text}.  "added" is over the direct row, '
        f'"vs nginx" is req/s as a share of the nginx reference\'s.  SSE TTFB: '
        f"{options.sse_requests} streamed requests to `llmgate fake-upstream` "
        f"({options.sse_delay_ms:g} ms between events), time to the first `data:` byte."
    )
    return "\n".join(lines) + "\n\n" + legend


def status(row: Row, options: Options) -> str:
    if not row.ok:
        return f"FAILED: {short(row.error)}"
    if row.other_cpu > options.quiet_threshold:
        return f"ok, noisy (other processes: {row.other_cpu:.0f}% of a core)"
    return "ok"


def short(text: str | None, limit: int = 160) -> str:
    text = (text or "").replace("|", "/").replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def cpu_table(rows: list[Row], options: Options) -> str:
    c = options.connections
    lines = [
        f"Where the CPU went during the @{c} runs (% of one core; the load CPU {options.load_cpu} "
        f"runs wrk and the upstreams, the SUT CPU {options.sut_cpu} the proxy under test):",
        "",
        f"| target | req/s @{c} | SUT | upstream | wrk | load CPU busy | SUT CPU busy "
        "| other processes | SUT RSS after (MB) |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for row in rows:
        r = row.c32
        if r is None:
            continue
        rss = f"{row.rss_mb:.0f}" if row.rss_mb else "-"
        sut = f"{r.sut_cpu:.0f}%" if r.sut_cpu else "-"
        lines.append(
            f"| {row.target} | {rate(r.rps)} | {sut} | {r.upstream_cpu:.0f}% | {r.wrk_cpu:.0f}% "
            f"| {r.load_busy:.0f}% | {r.sut_busy:.0f}% | {r.other_cpu:.0f}% | {rss} |"
        )
    return "\n".join(lines)


def capacity_table(rows: list[Row], options: Options) -> str:
    c = options.connections
    lines = [
        "Upstream capacity check: `llmgate fake-upstream` (on the load CPU, with wrk) loaded "
        "directly and through each proxy.  Were it the load runs' upstream, it would cap every "
        "target whose req/s here is close to the direct row's while the load CPU is saturated:",
        "",
        f"| target | req/s @{c} | fake-upstream CPU | proxy CPU | wrk | load CPU busy "
        "| SUT CPU busy | other processes | result |",
        "|---|--:|--:|--:|--:|--:|--:|--:|---|",
    ]
    for row in rows:
        r = row.c32
        if r is None:
            lines.append(f"| {row.target} | - | - | - | - | - | - | - | {status(row, options)} |")
            continue
        proxy = f"{r.sut_cpu:.0f}%" if r.sut_cpu else "-"
        lines.append(
            f"| {row.target} | {rate(r.rps)} | {r.upstream_cpu:.0f}% | {proxy} | {r.wrk_cpu:.0f}% "
            f"| {r.load_busy:.0f}% | {r.sut_busy:.0f}% | {r.other_cpu:.0f}% "
            f"| {status(row, options)} |"
        )
    return "\n".join(lines)


def workers_table(options: Options, rows: list[tuple[int, str, Row]], up_text: str) -> str:
    c = options.connections
    lines = [
        f"| workers | SUT CPUs | req/s @{c} | vs 1 worker | p50 @{c} | p99 @{c} | p50 @1 "
        f"| p99 @1 | CPU @{c}: all / parent | RSS (MB, all processes) | result |",
        "|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|---|",
    ]
    base: dict[str, float] = {}
    for workers, cpus, row in rows:
        c32, c1 = (row.c32, row.c1) if row.ok else (None, None)
        if workers == 1 and c32:
            base[cpus] = c32.rps
        ratio = f"{c32.rps / base[cpus]:.2f}x" if c32 and cpus in base else "-"
        rss = f"{row.rss_mb:.0f}" if row.rss_mb else "-"
        cpu = f"{c32.sut_cpu:.0f}% / {c32.sut_parent_cpu:.0f}%" if c32 else "-"
        result = status(row, options)
        lines.append(
            f"| {workers} | {cpus} | {rate(c32.rps if c32 else None)} | {ratio} "
            f"| {ms(c32.p50 if c32 else None)} | {ms(c32.p99 if c32 else None)} "
            f"| {ms(c1.p50 if c1 else None)} | {ms(c1.p99 if c1 else None)} | {cpu} | {rss} "
            f"| {result} |"
        )
    legend = (
        f"Latencies in ms (wrk, {options.duration} s per run).  Load upstream: {up_text}; wrk and "
        f"the upstream stay on CPU {options.load_cpu}, so with the SUT on every CPU the workers "
        "share a core with the load generator.  CPU: % of one core used by all of llmgate's "
        "processes / by the parent alone (with 1 worker they are the same process; with more, "
        "the parent runs the admin API and the node's counter service that limit-count uses)."
    )
    return "\n".join(lines) + "\n\n" + legend


def slope_mb_per_min(points: list[tuple[float, float]]) -> float:
    if len(points) < 2:
        return 0.0
    xs, ys = [p[0] / 60 for p in points], [p[1] for p in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den if den else 0.0


def soak_table(
    options: Options,
    seconds: int,
    interval: int,
    result: WrkResult,
    samples: list[tuple[float, float]],
    up_text: str,
) -> str:
    first, last = samples[0][1], samples[-1][1]
    half = [p for p in samples if p[0] >= seconds / 2]
    half_first = half[0][1] if half else first
    peak = max(s[1] for s in samples)
    outcome = "ok" if result.ok else f"FAILED: {result.problem()}"
    if result.ok and result.other_cpu > options.quiet_threshold:
        outcome = f"ok, noisy (other processes: {result.other_cpu:.0f}% of a core)"
    lines = [
        "| duration | requests | req/s | p99 (ms) | RSS start | RSS end | RSS max | growth "
        "| growth, 2nd half | slope, 2nd half | result |",
        "|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|",
        f"| {seconds} s | {result.requests:,} | {rate(result.rps)} | {ms(result.p99)} "
        f"| {first:.1f} MB | {last:.1f} MB | {peak:.1f} MB | {100 * (last - first) / first:+.1f}% "
        f"| {100 * (last - half_first) / half_first:+.1f}% "
        f"| {slope_mb_per_min(half):+.3f} MB/min | {outcome} |",
        "",
        f"RSS of the llmgate process (VmRSS) every {interval} s, MB: "
        + " ".join(f"{mb:.1f}" for _, mb in samples),
        "",
        f"{options.connections} connections, load upstream: {up_text}; start = first sample, "
        "taken when the load starts (after a warm-up run).",
    ]
    return "\n".join(lines)


# --- output -------------------------------------------------------------------------------------


def first_line(argv: list[str]) -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
        text = (done.stdout or done.stderr).strip()
        return text.splitlines()[0] if text else "?"
    return "?"


def machine(options: Options, busy: dict[int, float]) -> str:
    model = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    commit = first_line(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"])
    dirty = first_line(
        ["git", "-C", str(ROOT), "--no-optional-locks", "status", "--porcelain", "--", "src"]
    )
    if dirty not in ("?", ""):
        commit += " + uncommitted changes in src/"
    nginx = first_line([shutil.which("nginx") or "/usr/sbin/nginx", "-v"]).replace(
        "nginx version: ", ""
    )
    wrk = first_line(["wrk", "-v"]).split(" Copyright")[0]
    background = ", ".join(f"CPU{cpu} {pct:.0f}%" for cpu, pct in sorted(busy.items()))
    retry = (
        f"a run during which other processes used over {options.quiet_threshold:g}% of a core "
        f"is repeated (up to {options.retries} times)"
        if options.retries
        else "noisy runs are not repeated"
    )
    return (
        f"- machine: {os.cpu_count()} CPUs (`nproc`), {model}, Linux {platform.release()}\n"
        f"- Python {platform.python_version()}, llmgate {version()} at {commit}, {nginx}, {wrk}\n"
        f"- pinning: wrk + upstreams on CPU {options.load_cpu}, "
        f"system under test on CPU {options.sut_cpu} (taskset)\n"
        f"- CPU busy just before the run (other work on the box): {background}; {retry}"
    )


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as package_version

    try:
        return package_version("llmgate")
    except PackageNotFoundError:
        return "?"


def render(report: Report, options: Options, about: str) -> str:
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")  # its end
    parts = [
        f"### {report.title}",
        "",
        f"Run ended {when}; command: `{options.command}`",
        "",
        *about.splitlines(),
        "",
        *("\n\n".join(report.sections).splitlines()),
    ]
    return "\n".join(wrap(line) for line in parts)


def wrap(line: str, width: int = 100) -> str:
    """Prose lines wrapped like the rest of the docs; table rows stay as they are."""
    if len(line) <= width or line.startswith("|"):
        return line
    indent = "  " if line.startswith("- ") else ""
    return textwrap.fill(
        line, width, subsequent_indent=indent, break_long_words=False, break_on_hyphens=False
    )


SKELETON = """# Benchmarks

Produced by `make bench` (`bench/run.py`; how it works and what each number means:
`bench/README.md`).  The sections between the `bench:` markers are rewritten by each run.

## Plugin sets

<!-- bench:default:begin -->
<!-- bench:default:end -->

## Workers

<!-- bench:workers:begin -->
<!-- bench:workers:end -->

## Memory soak

<!-- bench:soak:begin -->
<!-- bench:soak:end -->
"""


def write_docs(mode: str, text: str) -> None:
    DOCS.parent.mkdir(parents=True, exist_ok=True)
    current = DOCS.read_text() if DOCS.exists() else SKELETON
    begin, end = f"<!-- bench:{mode}:begin -->", f"<!-- bench:{mode}:end -->"
    if begin not in current or end not in current:
        current = current.rstrip("\n") + f"\n\n{begin}\n{end}\n"
    head, _, rest = current.partition(begin)
    _, _, tail = rest.partition(end)
    DOCS.write_text(f"{head}{begin}\n{text}\n{end}{tail}")
    log(f"wrote {DOCS.relative_to(ROOT)} ({mode})")


# --- main ---------------------------------------------------------------------------------------


def check_tools() -> None:
    missing = [tool for tool in ("wrk", "taskset") if not shutil.which(tool)]
    if not (shutil.which("nginx") or Path("/usr/sbin/nginx").exists()):
        missing.append("nginx")
    if missing:
        sys.exit(f"bench: missing {', '.join(missing)}; run bench/setup.sh first")


def budget(args: argparse.Namespace, options: Options) -> int:
    """Seconds the mode may take before it is stopped (a generous bound on the plan)."""
    runs = options.retries + 1
    per_target = (
        options.warmup
        + runs * (2 * options.duration + options.sse_requests * 0.3 + options.quiet_wait)
        + 30
    )
    if args.soak:
        return args.soak + 300
    if args.workers:
        return int(4 * per_target * 2 + 120)
    return int((len(PLUGIN_SETS) + 5) * per_target * 2 + 120)


@contextlib.contextmanager
def time_limit(seconds: int) -> Iterator[None]:
    def expired(signum: int, frame: object) -> None:
        raise TimeoutError(f"the benchmark exceeded its {seconds} s budget")

    def terminated(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, expired)
    previous_term = signal.signal(signal.SIGTERM, terminated)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
        signal.signal(signal.SIGTERM, previous_term)


def main(argv: list[str] | None = None) -> int:
    args, options = parse_args(argv)
    check_tools()
    # This script (the SSE client, the pre-flight requests) runs with the load generator.
    with contextlib.suppress(OSError):
        os.sched_setaffinity(0, cpu_list(options.load_cpu))
    busy = background_busy()
    if sum(busy.values()) > options.quiet_threshold and options.quiet_wait:
        log(f"other processes keep the CPUs busy ({busy}); waiting up to {options.quiet_wait} s")
        wait_quiet(options, "start")
        busy = background_busy()
    about = machine(options, busy)  # the commit and tree state the run starts from
    run_dir = Path(tempfile.mkdtemp(prefix="llmgate-bench-"))
    run_dir.chmod(0o755)  # nginx workers (nobody) read the htpasswd file here
    try:
        with time_limit(budget(args, options)):
            if args.soak:
                report = mode_soak(options, run_dir, args.soak, args.soak_interval)
            elif args.workers:
                report = mode_workers(options, run_dir)
            else:
                report = mode_default(options, run_dir)
    except (BenchError, TimeoutError) as exc:
        log(f"error: {exc} (logs in {run_dir})")
        return 1
    if options.keep:
        log(f"logs and configs kept in {run_dir}")
    else:
        shutil.rmtree(run_dir, ignore_errors=True)
    text = render(report, options, about)
    print(text)
    if options.write:
        write_docs(report.mode, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
