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
import contextlib
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from benchkit.logs import BenchError, log
from benchkit.modes import mode_default, mode_soak, mode_workers
from benchkit.options import Options, parse_args
from benchkit.procs import cpu_list
from benchkit.report import machine, render, write_docs
from benchkit.sampling import background_busy, wait_quiet
from benchkit.targets import PLUGIN_SETS


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
    args, options = parse_args(argv, __doc__)
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
