"""Instructions per request of ``llmgate serve``, counted by valgrind's callgrind: the same
number on a quiet box and on a busy one, so two commits can be compared while other work runs.

    .venv/bin/python bench/bench_instructions.py                      this checkout, basic set
    .venv/bin/python bench/bench_instructions.py --src /path/to/other/src --src src
    .venv/bin/python bench/bench_instructions.py --set none --env LLMGATE_SPOOL_DIR=off

For each ``--src`` (a ``src`` directory put first on ``PYTHONPATH``; default: this checkout's)
the server runs under callgrind with instrumentation off, is configured as ``bench/run.py``
configures it for the plugin set (``--set``: a word of its label), gets ``--warmup`` requests,
then ``--requests`` requests one after the other on one keep-alive connection with
instrumentation on (every thread of the process, user space only), then as long again without
requests.  Callgrind runs the server ~50 times slower, so work done on a timer (the usage
spool's fsync every 50 ms, the usage shipment every second, the metrics sampler) would weigh
~50 times more per request than at full speed: the idle period measures it, and the printed
number is the requests' instructions less the idle period's.

Caveats: kernel time (system calls) is not counted; the requests are sequential (concurrency
1), where ``bench/run.py`` measures concurrency 32.  Compare commits with it, and confirm with
``bench/run.py`` on a quiet box.
"""

from __future__ import annotations

import http.client
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

from benchkit.constants import CHAT_PATH, REQUEST_BODY
from benchkit.options import parse_args
from benchkit.targets import PLUGIN_SETS, Llmgate, Stack, preflight
from benchkit.trees import require, server_env, tree_parser, trees


def count(src: str, label: str, requests: int, warmup: int, env: dict[str, str]) -> Count:
    """Instructions per request of the server run from ``src`` (thousands)."""
    _, options = parse_args(["--quick"])
    run_dir = Path(tempfile.mkdtemp(prefix="llmgate-instructions-"))
    plugin_set = next(p for p in PLUGIN_SETS if label in p.label)
    out = run_dir / "callgrind.out"
    wrap = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}"]
    extra = {"PYTHONPATH": src, **env}
    with Stack(options, run_dir) as stack:
        _, upstream_port = stack.start_upstream()
        _, fake_port = stack.start_fake()
        server = Llmgate(options, run_dir, "sut", wrap=wrap, env_extra=extra)
        try:
            server.configure(plugin_set, upstream_port, fake_port)
            preflight(server.proxy_port, CHAT_PATH, plugin_set.headers, False, server.proc)
            conn = http.client.HTTPConnection("127.0.0.1", server.proxy_port, timeout=120)
            headers = {"Content-Type": "application/json", **plugin_set.headers}

            def fire(n: int) -> None:
                for _ in range(n):
                    conn.request("POST", CHAT_PATH, REQUEST_BODY, headers)
                    response = conn.getresponse()
                    response.read()
                    if response.status != 200:
                        sys.exit(f"bench_instructions: answered {response.status}")

            fire(warmup)
            pid = str(server.proc.pid)

            def control(*flags: str) -> None:
                subprocess.run(["callgrind_control", *flags, pid], check=True, capture_output=True)

            control("-i", "on")
            started = time.monotonic()
            fire(requests)
            busy = time.monotonic() - started
            control("-i", "off")
            control("-d")  # part 1: the requests
            control("-i", "on")
            time.sleep(busy)  # as long again without requests: what the timers cost
            control("-i", "off")
            control("-d")  # part 2: idle
            time.sleep(0.5)
        finally:
            server.stop()
    totals = [_total(Path(f"{out}.{part}")) for part in (1, 2)]
    shutil.rmtree(run_dir, ignore_errors=True)
    return Count(totals[0] / requests / 1000, totals[1] / requests / 1000)


class Count(NamedTuple):
    """Thousands of instructions per request: all of them while the requests ran, and what
    the process's timers cost in as much time without requests (included in the first)."""

    busy: float
    idle: float


def _total(path: Path) -> int:
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("totals:"):
            return int(line.split()[1])
    sys.exit(f"bench_instructions: no callgrind total in {path}")


def main() -> None:
    parser = tree_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--warmup", type=int, default=300)
    args = parser.parse_args()
    require("valgrind", "valgrind", "bench_instructions")
    env = server_env(args)
    for src in trees(args):
        got = count(src, args.set, args.requests, args.warmup, env)
        print(
            f"{got.busy - got.idle:8.1f}k instructions/request"
            f" ({got.busy:.1f}k, of which timers {got.idle:.1f}k)  {src}",
            flush=True,
        )


if __name__ == "__main__":
    main()
