"""``llmgate serve --workers 2``: two data-plane processes on one port, limits exact across them.

Redis tests use the server at redis://127.0.0.1:6379/0 and fail, never skip, without it.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis

from tests.processes import (
    Running,
    connections_held,
    fake_upstream_process,
    llmgate_serve,
    stop,
    worker_pids,
)
from tests.support import ADMIN_KEY

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture(scope="module")
def fake_port() -> Iterator[int]:
    with fake_upstream_process() as port:
        yield port


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory, fake_port: int) -> Iterator[Running]:
    with llmgate_serve(tmp_path_factory.mktemp("workers"), "--workers", "2") as running:
        workers = worker_pids(running.proc.pid)
        yield running
        # Ctrl-C: a clean exit that takes the workers along (SIGTERM takes the same path).
        stop(running.proc, signal.SIGINT)
    assert running.proc.returncode == 0, running.output()
    wait_gone(workers)


def put(node: Running, path: str, body: dict[str, Any]) -> None:
    request = urllib.request.Request(
        f"{node.admin_url}/apisix/admin/{path}",
        data=json.dumps(body).encode(),
        method="PUT",
        headers={"X-API-KEY": ADMIN_KEY},
    )
    with urllib.request.urlopen(request, timeout=5) as resp:
        assert resp.status in (200, 201)


async def live_on_every_worker(node: Running, marker: str) -> None:
    """Wait until a route written after the others answers on 30 fresh connections in a row:
    each connection lands on a random worker, so every worker has loaded the config."""
    in_a_row = 0
    deadline = time.monotonic() + 10
    while in_a_row < 30:
        assert time.monotonic() < deadline, "the config did not reach every worker"
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{node.proxy_url}{marker}") as resp,
        ):
            in_a_row = in_a_row + 1 if resp.status == 200 else 0


async def burst(node: Running, path: str, n: int) -> tuple[Counter[int], list[int]]:
    """``n`` concurrent requests, each on its own connection: the status counts, and how many
    of the connections each worker process holds."""
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one() -> int:
            async with session.get(f"{node.proxy_url}{path}") as resp:
                await resp.read()
                return resp.status

        statuses = Counter(await asyncio.gather(*(one() for _ in range(n))))
        # Counted while the (keep-alive) connections are still open.
        held = [connections_held(pid, node.proxy_port) for pid in worker_pids(node.proc.pid)]
    return statuses, held


def configure(node: Running, fake_port: int, route_id: str, limit: dict[str, Any]) -> str:
    uri = f"/{route_id}"
    put(
        node,
        f"routes/{route_id}",
        {
            "uri": uri,
            "plugins": {"limit-count": limit},
            "upstream": {"type": "roundrobin", "nodes": {f"127.0.0.1:{fake_port}": 1}},
        },
    )
    put(
        node,
        f"routes/{route_id}-ready",
        {
            "uri": f"{uri}-ready",
            "upstream": {"type": "roundrobin", "nodes": {f"127.0.0.1:{fake_port}": 1}},
        },
    )
    return uri


def test_two_worker_processes_serve_the_proxy_port(node: Running) -> None:
    workers = worker_pids(node.proc.pid)
    assert len(workers) == 2
    assert node.proc.pid not in workers
    assert "data plane listening on" in node.output() and "(2 workers)" in node.output()


async def test_local_limit_is_exact_across_workers(node: Running, fake_port: int) -> None:
    uri = configure(node, fake_port, "local", {"count": 10, "time_window": 600})
    await live_on_every_worker(node, f"{uri}-ready")
    statuses, held = await burst(node, uri, 40)
    assert statuses == {200: 10, 503: 30}
    assert len(held) == 2 and 0 < sum(held) <= 40
    assert all(count > 0 for count in held), f"one worker served every request: {held}"


async def test_redis_limit_is_exact_across_workers(node: Running, fake_port: int) -> None:
    key = f"test-workers-{uuid.uuid4().hex}"
    limit = {
        "count": 10,
        "time_window": 600,
        "key_type": "constant",
        "key": key,
        "policy": "redis",
        "redis_host": "127.0.0.1",
        "rejected_code": 429,
    }
    uri = configure(node, fake_port, "redis", limit)
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()  # fails loudly when Redis is not there
        await live_on_every_worker(node, f"{uri}-ready")
        statuses, _ = await burst(node, uri, 40)
        assert statuses == {200: 10, 429: 30}
        stored = list(client.scan_iter(match=f"llmgate:count:*{key}"))
        assert len(stored) == 1 and int(client.get(stored[0]) or 0) == 40
    finally:
        for stale in client.scan_iter(match=f"llmgate:*{key}"):
            client.delete(stale)
        client.close()


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")  # a zombie has exited, whoever reaps it


def wait_gone(pids: list[int]) -> None:
    deadline = time.monotonic() + 5
    while any(alive(pid) for pid in pids):
        assert time.monotonic() < deadline, "workers outlived their parent"
        time.sleep(0.05)


def test_workers_exit_when_their_parent_dies(tmp_path: Path) -> None:
    with llmgate_serve(tmp_path, "--workers", "2") as running:
        workers = worker_pids(running.proc.pid)
        assert len(workers) == 2
        os.kill(running.proc.pid, signal.SIGKILL)
        running.proc.wait(5)
        wait_gone(workers)


def test_a_worker_that_cannot_listen_stops_start_up(tmp_path: Path) -> None:
    with socket.socket() as taken:  # bound without SO_REUSEPORT: no one can share it
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        listen = f"127.0.0.1:{taken.getsockname()[1]}"
        with llmgate_serve(
            tmp_path, "--workers", "2", env={"LLMGATE_PROXY_LISTEN": listen}, wait=False
        ) as running:
            assert running.proc.wait(30) == 1
            # Found by the start-up check, before any worker is spawned or anything announced.
            assert f"error: data plane {listen}: Address already in use" in running.output()
            assert "listening" not in running.output()
