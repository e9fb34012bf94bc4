"""System calls, context switches and CPU time per request of ``llmgate serve`` under wrk load,
counted by the kernel (``perf stat`` on the process and all its threads): counts that move
little when other work shares the box, unlike req/s, and that callgrind
(``bench_instructions.py``) does not see.

    .venv/bin/python bench/bench_syscalls.py                       this checkout, basic set
    .venv/bin/python bench/bench_syscalls.py --src /path/to/other/src --src src --rounds 3

For each ``--src`` (put first on ``PYTHONPATH``; default: this checkout's) and each round, a
fresh server is configured as ``bench/run.py`` configures it for the plugin set (``--set``: a
word of its label), warmed up with a 2 s wrk run, then counted during a ``--seconds`` wrk run
at ``--connections``.  Trees alternate within a round.  Printed per request: every system call
(``raw_syscalls``) and the main ones by name, the process's context switches (its threads'
wake-ups included) and its CPU milliseconds (``task-clock``, all threads; inflated when the
box is busy).  Work done on a timer (usage shipments every second, spool fsyncs every 50 ms)
counts per second, not per request: compare trees at similar req/s.  Needs ``perf`` (Debian's
``linux-perf``) with tracepoints readable (root, or ``kernel.perf_event_paranoid`` <= -1).
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from benchkit.constants import CHAT_PATH
from benchkit.load import run_wrk
from benchkit.options import parse_args
from benchkit.targets import PLUGIN_SETS, Llmgate, Stack, preflight
from benchkit.trees import require, server_env, tree_parser, trees

SYSCALLS = (
    "read", "write", "recvfrom", "sendto", "writev", "sendmsg", "epoll_wait", "epoll_pwait",
    "epoll_ctl", "futex", "getpid", "getsockname", "getpeername", "setsockopt", "pwrite64",
    "fsync", "fdatasync", "mmap", "munmap", "accept4", "connect", "close",
)  # fmt: skip
EVENTS = (
    "task-clock",
    "context-switches",
    "raw_syscalls:sys_enter",
    *(f"syscalls:sys_enter_{name}" for name in SYSCALLS),
)


def measure(src: str, label: str, seconds: int, connections: int, env: dict[str, str]) -> str:
    _, options = parse_args(["--quick"])
    run_dir = Path(tempfile.mkdtemp(prefix="llmgate-syscalls-"))
    plugin_set = next(p for p in PLUGIN_SETS if label in p.label)
    out = run_dir / "perf.txt"
    with Stack(options, run_dir) as stack:
        _, upstream_port = stack.start_upstream()
        _, fake_port = stack.start_fake()
        server = Llmgate(options, run_dir, "sut", env_extra={"PYTHONPATH": src, **env})
        try:
            server.configure(plugin_set, upstream_port, fake_port)
            preflight(server.proxy_port, CHAT_PATH, plugin_set.headers, False, server.proc)
            port, headers = server.proxy_port, plugin_set.headers
            run_wrk(options, port, CHAT_PATH, connections, 2, headers)  # warm-up
            argv = ["perf", "stat", "-x", ",", "-o", str(out), "-e", ",".join(EVENTS)]
            perf = subprocess.Popen([*argv, "-p", str(server.proc.pid)])
            time.sleep(0.5)
            result = run_wrk(options, port, CHAT_PATH, connections, seconds, headers)
            perf.send_signal(signal.SIGINT)
            perf.wait(30)
        finally:
            server.stop()
    counts = _parse(out.read_text())
    shutil.rmtree(run_dir, ignore_errors=True)
    n = max(result.requests, 1)
    named = sorted(
        ((name, counts.get(f"syscalls:sys_enter_{name}", 0.0) / n) for name in SYSCALLS),
        key=lambda item: -item[1],
    )
    total = counts.get("raw_syscalls:sys_enter", 0.0) / n
    other = total - sum(per for _, per in named)
    by_name = " ".join(f"{name} {per:.3f}" for name, per in named if per >= 0.0005)
    return (
        f"{result.rps:8.0f} req/s  {counts.get('task-clock', 0.0) / n * 1000:6.1f} us CPU"
        f"  {counts.get('context-switches', 0.0) / n:.3f} cs  {total:.3f} syscalls"
        f" ({by_name} other {other:.3f}) a request"
    )


def _parse(text: str) -> dict[str, float]:
    """``perf stat -x ,`` lines: value,unit,event,..."""
    counts: dict[str, float] = {}
    for line in text.splitlines():
        fields = line.split(",")
        if len(fields) >= 3 and re.fullmatch(r"[\d.]+", fields[0]):
            counts[fields[2]] = float(fields[0])
    return counts


def main() -> None:
    parser = tree_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    require("perf", "linux-perf", "bench_syscalls")
    env = server_env(args)
    for _ in range(args.rounds):
        for src in trees(args):
            line = measure(src, args.set, args.seconds, args.connections, env)
            print(f"{line}  {src}", flush=True)


if __name__ == "__main__":
    main()
