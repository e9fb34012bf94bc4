"""Metric values written in place: what prometheus_client collects, in one process and in
multiprocess mode (a subprocess writing into a directory this process reads)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from llmgate.observability.cells import counter, gauge, histogram
from llmgate.observability.exporter import collect

BUCKETS = (1, 10, 100)


def values(registry: CollectorRegistry) -> dict[str, float]:
    return {
        s.name + str(sorted(s.labels.items())): s.value
        for family in (registry.collect())
        for s in family.samples
        if not s.name.endswith("_created")
    }


def test_cells_are_what_a_private_registry_collects() -> None:
    registry = CollectorRegistry()
    requests = Counter("requests", "", ("route",), registry=registry).labels("1")
    requests.inc(2)  # before adoption: kept
    cell = counter(requests)
    cell.inc(3)
    requests.inc(1)  # prometheus_client's own inc writes the same double
    active = gauge(Gauge("active", "", ("route",), registry=registry).labels("1"))
    active.inc(1)
    active.inc(1)
    active.inc(-1)
    latency = histogram(
        Histogram("latency", "", ("route",), buckets=BUCKETS, registry=registry).labels("1")
    )
    for amount in (0.5, 1, 1.5, 10, 99, 100.5):
        latency.observe(amount)
    found = values(registry)
    assert found["requests_total[('route', '1')]"] == 6
    assert cell.get() == 6
    assert found["active[('route', '1')]"] == 1
    # Cumulative, as prometheus_client counts: le=1 holds 0.5 and 1 (a bound is inclusive).
    assert found["latency_bucket[('le', '1.0'), ('route', '1')]"] == 2
    assert found["latency_bucket[('le', '10.0'), ('route', '1')]"] == 4
    assert found["latency_bucket[('le', '100.0'), ('route', '1')]"] == 5
    assert found["latency_bucket[('le', '+Inf'), ('route', '1')]"] == 6
    assert found["latency_count[('route', '1')]"] == 6
    assert found["latency_sum[('route', '1')]"] == 212.5


WRITER = textwrap.dedent(
    """
    from prometheus_client import Counter, Histogram
    from llmgate.observability.cells import counter, histogram

    first = counter(Counter("requests", "", ("route",)).labels("first"))
    first.inc(1)
    latency = Histogram("latency", "", ("route",), buckets=(1, 10))
    # Enough series to outgrow the file's first mmap (64 KiB): prometheus_client maps the
    # grown file anew, the cells adopted before go on writing the same file.
    late = [histogram(latency.labels(f"route-{i:04d}")) for i in range(400)]
    first.inc(2)
    late[0].observe(5)
    late[-1].observe(50)
    """
)


def test_cells_write_the_multiprocess_file_a_scrape_reads(tmp_path: Path) -> None:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    for _ in range(2):  # two processes, added up
        subprocess.run([sys.executable, "-c", WRITER], env=env, check=True)
    assert sum(f.stat().st_size for f in tmp_path.glob("histogram_*.db")) > 2 * 65536
    found = {
        s.name + str(sorted(s.labels.items())): s.value
        for family in collect(str(tmp_path))
        for s in family.samples
    }
    assert found["requests_total[('route', 'first')]"] == 6
    assert found["latency_bucket[('le', '10.0'), ('route', 'route-0000')]"] == 2
    assert found["latency_sum[('route', 'route-0000')]"] == 10
    assert found["latency_bucket[('le', '10.0'), ('route', 'route-0399')]"] == 0
    assert found["latency_bucket[('le', '+Inf'), ('route', 'route-0399')]"] == 2
    assert found["latency_sum[('route', 'route-0399')]"] == 100
