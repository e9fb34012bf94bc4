"""The benchmark harness behind ``bench/run.py`` (see bench/README.md), one idea per module.

- ``options``: the command line, parsed into frozen ``Options``; ``logs``: log lines, ``BenchError``
- ``constants``: paths, credentials, the request and response bodies
- ``procs``: pinned processes, ports, readiness, a blocking HTTP client
- ``sampling``: CPU and RSS from /proc, waiting for a quiet box, repeating disturbed runs
- ``load``: wrk runs and their parsed results; ``sse``: SSE time to first byte
- ``targets``: plugin sets, one configured ``llmgate serve``, pre-flight checks, the shared
  upstreams and nginx reference
- ``measure``: measuring one target; ``modes``: default, workers and soak, each giving a ``Report``
- ``tables``: the Markdown tables; ``report``: machine facts, rendering, docs/benchmarks.md
"""
