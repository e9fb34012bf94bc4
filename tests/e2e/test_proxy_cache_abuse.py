"""proxy-cache against clients that would fill the disk or borrow another user's entries
(issue 11), on a real ``llmgate serve --workers 2`` sharing one cache directory."""

from __future__ import annotations

import base64
import contextlib
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.net import KeptAlive, LiveGateway, RawClient, http_json, request_bytes
from tests.processes import fake_upstream_process, llmgate_serve
from tests.support import ADMIN_KEY

CAP = 3 * 1024 * 1024
PAD = "p" * 1500  # each entry (the echo of the request) is about 5 KB: 5,000 keys, 25 MB
STATUS = "Apisix-Cache-Status"


def zone(cache_dir: Path) -> Path:
    return cache_dir / "disk_cache_one"


def zone_files(cache_dir: Path) -> list[Path]:
    """Entry files and temporary files (not the ledger and lock at the zone's top)."""
    top = zone(cache_dir)
    found = []
    for folder, _, names in os.walk(top):
        if Path(folder) != top:
            found += [Path(folder) / name for name in names]
    return found


def zone_bytes(cache_dir: Path) -> int:
    total = 0
    for path in zone_files(cache_dir):
        with contextlib.suppress(FileNotFoundError):  # evicted or renamed while we looked
            total += path.stat().st_size
    return total


def put_route(gateway: LiveGateway, route_id: str, uri: str, cache: dict[str, Any]) -> None:
    """A route, live on both workers when this returns (they poll the store)."""
    gateway.put(
        f"routes/{route_id}",
        {"uri": uri, "plugins": {"proxy-cache": cache}, "upstream": gateway.upstream()},
    )
    probe = request_bytes("GET", uri.replace("*", "probe"))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        answers = []
        for _ in range(4):  # new connections: the kernel spreads them over the workers
            with RawClient(gateway.proxy_port) as client:
                client.send(probe)
                answers.append(client.read_response().header(STATUS))
        if None not in answers:
            return
        time.sleep(0.1)
    raise AssertionError(f"route {uri} not live on every worker")


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> Iterator[LiveGateway]:
    env = {"LLMGATE_CACHE_DIR": str(cache_dir), "LLMGATE_CACHE_MAX_BYTES": str(CAP)}
    workdir = tmp_path_factory.mktemp("gateway")
    with LiveGateway(workdir, "--workers", "2", env=env) as live:
        yield live


def flood(port: int, prefix: str, keys: int, clients: int = 4) -> list[tuple[int, int]]:
    """``keys`` GETs of distinct URLs (``<prefix>/<n>``) from ``clients`` keep-alive
    connections; (n, status) in the order the answers came (the clients do not keep pace with
    each other: one may finish well before the others)."""
    answers: list[tuple[int, int]] = []
    lock = threading.Lock()

    def run(first: int) -> None:
        with KeptAlive(port) as session:
            for n in range(first, keys, clients):
                status = session.request(request_bytes("GET", f"{prefix}/{n}?pad={PAD}")).status
                with lock:
                    answers.append((n, status))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    return answers


def settled(cache_dir: Path, quiet: float = 1.0, limit: float = 60.0) -> None:
    """Wait until the zone's files have not changed for ``quiet`` seconds: the writes the
    workers still had queued when the last answer went out have landed (or were skipped)."""
    last: set[tuple[str, int]] = set()
    since = time.monotonic()
    deadline = since + limit
    while time.monotonic() < deadline:
        now: set[tuple[str, int]] = set()
        for path in zone_files(cache_dir):
            with contextlib.suppress(FileNotFoundError):
                now.add((str(path), path.stat().st_size))
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return
        time.sleep(0.1)
    raise AssertionError(f"the zone still changes {limit} s after the flood")


def test_expired_entries_are_removed(gateway: LiveGateway, cache_dir: Path) -> None:
    put_route(gateway, "short", "/short/*", {"cache_ttl": 1})
    assert {status for _, status in flood(gateway.proxy_port, "/short", 60)} == {200}
    time.sleep(0.5)
    assert len(zone_files(cache_dir)) >= 60  # they were stored
    deadline = time.monotonic() + 40  # a sweep runs every 10 s in each worker
    while zone_files(cache_dir) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert zone_files(cache_dir) == []


def test_a_capped_disk_cache_stays_under_its_cap(gateway: LiveGateway, cache_dir: Path) -> None:
    put_route(gateway, "big", "/big/*", {"cache_ttl": 300})
    largest = 0
    done = threading.Event()

    def watch() -> None:
        nonlocal largest
        while not done.is_set():
            largest = max(largest, zone_bytes(cache_dir))
            time.sleep(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        answers = flood(gateway.proxy_port, "/big", 5000)
        settled(cache_dir)  # the writes still queued land (a time bound only for a freeze)
    finally:
        done.set()
        watcher.join()
    held = zone_bytes(cache_dir)
    print(
        f"\n5000 keys of ~5 KB into a {CAP} B zone: at most {largest} B held, {held} B at the end"
    )
    assert [status for _, status in answers].count(200) == 5000
    assert largest <= CAP and held <= CAP
    assert held > CAP // 2  # the cache still works: it evicts, it does not just refuse
    # Least recently used first: the oldest keys are gone, the newest are there (a HIT from
    # whichever worker answers).  "Newest": the last answered, not the highest numbers (a
    # client may finish seconds before the others).  A worker whose writes fall behind the
    # flood skips its oldest waiting ones, never the newest, and a write that lands late
    # keeps the time of its use, so the sweeps evict it before the newer ones.
    with RawClient(gateway.proxy_port) as client:

        def looked_up(n: int) -> str | None:
            client.send(request_bytes("GET", f"/big/{n}?pad={PAD}"))
            return client.read_response().header(STATUS)

        recent = [looked_up(n) for n, _ in answers[-40:]]
        oldest = [looked_up(n) for n, _ in answers[:20]]
    print(f"newest 40 keys: {recent.count('HIT')} HIT; oldest 20: {oldest.count('HIT')} HIT")
    assert recent.count("HIT") >= 36 and oldest.count("HIT") == 0


def basic(user_pass: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(user_pass.encode()).decode()}


def test_an_unverified_user_name_never_picks_an_entry(gateway: LiveGateway) -> None:
    """On a route without gateway auth, ``alice:wrong`` neither gets nor purges the entry of
    ``alice:right`` (nor does a ``$remote_user`` cache key let it)."""
    plugins = {"basic-auth": {"username": "alice", "password": "right"}}
    gateway.put("consumers/alice", {"username": "alice", "plugins": plugins})
    put_route(gateway, "ident", "/ident/*", {"cache_strategy": "memory"})
    put_route(
        gateway,
        "ident2",
        "/ident2/*",
        {"cache_strategy": "memory", "cache_key": ["$host", "$remote_user", "$uri"]},
    )
    right, wrong = basic("alice:right"), basic("alice:wrong")
    with RawClient(gateway.proxy_port) as client:  # one connection: one worker's memory zone

        def status(method: str, path: str, headers: dict[str, str]) -> tuple[int, str | None]:
            client.send(request_bytes(method, path, headers))
            answer = client.read_response(method)
            return answer.status, answer.header(STATUS)

        for prefix in ("/ident", "/ident2"):
            assert status("GET", f"{prefix}/a", right) == (200, "MISS")
            assert status("GET", f"{prefix}/a", right) == (200, "HIT")
            assert status("GET", f"{prefix}/a", wrong) == (200, "MISS")
            assert status("GET", f"{prefix}/a", {}) == (200, "MISS")
            assert status("GET", f"{prefix}/b", right) == (200, "MISS")
            assert status("PURGE", f"{prefix}/b", wrong)[0] == 404
            assert status("GET", f"{prefix}/b", right) == (200, "HIT")
            assert status("PURGE", f"{prefix}/b", right)[0] == 200
            assert status("GET", f"{prefix}/b", right) == (200, "MISS")


def test_a_killed_gateway_leaves_a_directory_the_next_start_removes(tmp_path: Path) -> None:
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    env = {"TMPDIR": str(temporary)}
    with fake_upstream_process() as fake_port:
        route = {
            "uri": "/*",
            "plugins": {"proxy-cache": {}},
            "upstream": {"type": "roundrobin", "nodes": {f"127.0.0.1:{fake_port}": 1}},
        }
        with llmgate_serve(tmp_path, env=env) as first:
            status, answer = http_json(
                "PUT", f"{first.admin_url}/apisix/admin/routes/1", route, {"X-API-KEY": ADMIN_KEY}
            )
            assert status == 201, answer
            left = sorted(temporary.glob("llmgate-cache-*"))
            assert len(left) == 1
            first.proc.kill()  # SIGKILL: no clean-up
            first.proc.wait()
        assert left[0].exists()
        with llmgate_serve(tmp_path, env=env) as second:  # the same store: the route is there
            deadline = time.monotonic() + 10
            while left[0].exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            assert not left[0].exists()
            now = sorted(temporary.glob("llmgate-cache-*"))
            assert len(now) == 1 and now != left  # its own, alive
            assert second.proc.poll() is None
        assert not list(temporary.glob("llmgate-cache-*"))  # a clean stop removes its own
