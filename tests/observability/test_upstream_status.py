"""``upstream_status``: each process's node health in a file, merged by the exporter."""

from __future__ import annotations

import os
from pathlib import Path

from llmgate.observability import exporter
from llmgate.observability.upstream_status import StatusBoard, collect, forget


def samples(directory: Path) -> dict[tuple[str, str, str], float]:
    return {
        (s.labels["name"], s.labels["ip"], s.labels["port"]): s.value
        for family in collect(str(directory), lambda pid: True)
        for s in family.samples
    }


def test_boards_are_merged_and_forgotten(tmp_path: Path) -> None:
    mine = StatusBoard("apisix_", str(tmp_path))
    other = StatusBoard("apisix_", str(tmp_path))
    other.path = tmp_path / "upstream_status_999999.json"
    mine.update("/apisix/upstreams/1", "127.0.0.1", 80, True)
    mine.update("/apisix/upstreams/1", "127.0.0.1", 81, True)
    other.update("/apisix/upstreams/1", "127.0.0.1", 81, False)
    assert samples(tmp_path) == {
        ("/apisix/upstreams/1", "127.0.0.1", "80"): 1,
        ("/apisix/upstreams/1", "127.0.0.1", "81"): 0,  # unhealthy in one process: 0
    }
    (family,) = collect(str(tmp_path), lambda pid: True)
    assert family.name == "apisix_upstream_status" and family.type == "gauge"
    forget(999999, str(tmp_path))
    assert samples(tmp_path)[("/apisix/upstreams/1", "127.0.0.1", "81")] == 1
    mine.update("/apisix/upstreams/1", "127.0.0.1", 81, None)  # its checker stopped
    assert list(samples(tmp_path)) == [("/apisix/upstreams/1", "127.0.0.1", "80")]


def test_the_files_of_dead_processes_are_skipped(tmp_path: Path) -> None:
    board = StatusBoard("llmgate_", str(tmp_path))
    board.path = tmp_path / "upstream_status_999999.json"
    board.update("u", "10.0.0.1", 80, False)
    assert collect(str(tmp_path), exporter._alive) == []
    live = StatusBoard("llmgate_", str(tmp_path))
    assert live.path == tmp_path / f"upstream_status_{os.getpid()}.json"
    live.update("u", "10.0.0.1", 80, True)
    (family,) = collect(str(tmp_path), exporter._alive)
    assert [(s.labels["ip"], s.value) for s in family.samples] == [("10.0.0.1", 1)]
