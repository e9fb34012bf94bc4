"""What a run was asked to do: the command line, parsed into frozen ``Options``."""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass


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


def parse_args(
    argv: list[str] | None = None, description: str | None = None
) -> tuple[argparse.Namespace, Options]:
    """Options from ``argv`` (``sys.argv[1:]`` when None); ``description`` heads ``--help``."""
    parser = argparse.ArgumentParser(
        prog="bench/run.py", description=description, formatter_class=argparse.RawTextHelpFormatter
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
