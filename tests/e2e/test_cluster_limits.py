"""Two nodes on one PostgreSQL and one Redis (issue 13): limits shared through the node's
default Redis, ``LLMGATE_REDIS_URL``, limit-conn slots that heal when their holder dies, and
the usage of a worker SIGKILLed under load shipped from its spool by the node.

Node A runs the admin API and a data plane; node B is a proxy with ``--workers 2``.  Both get
``LLMGATE_REDIS_URL`` and no limiter names a ``redis_host``.  Real PostgreSQL and Redis; the
tests fail, never skip, without them.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from tests.net import KeptAlive, http_json, request_bytes
from tests.processes import (
    Running,
    connections_held,
    fake_upstream_process,
    llmgate_serve,
    worker_pids,
)
from tests.support import ADMIN_KEY

REDIS_URL = "redis://127.0.0.1:6379/0"


@dataclass
class Cluster:
    a: Running  # admin API + data plane
    b: Running  # data plane only, two workers
    fake_port: int

    def upstream(self) -> dict[str, Any]:
        return {"type": "roundrobin", "nodes": {f"127.0.0.1:{self.fake_port}": 1}}

    def put(self, path: str, body: dict[str, Any]) -> None:
        status, answer = http_json(
            "PUT",
            f"{self.a.admin_url}/apisix/admin/{path}",
            body,
            {"X-API-KEY": ADMIN_KEY, "Content-Type": "application/json"},
        )
        assert status in (200, 201), answer

    def fake_paths(self) -> list[str]:
        """The paths the fake upstream was asked for (recorded when a request arrives)."""
        _, answer = http_json("GET", f"http://127.0.0.1:{self.fake_port}/__fake/requests")
        return [request["path"] for request in answer["requests"]]

    def route(self, route_id: str, plugins: dict[str, Any]) -> str:
        """Write a route; returns its path once every process of both nodes serves it."""
        uri = f"/{route_id}/{uuid.uuid4().hex}"
        self.put(
            f"routes/{route_id}", {"uri": uri, "plugins": plugins, "upstream": self.upstream()}
        )
        # A route written after it: once a process serves this one, it serves the first too.
        marker = f"/ready/{uuid.uuid4().hex}"
        self.put("routes/ready", {"uri": marker, "upstream": self.upstream()})
        deadline = time.monotonic() + 10
        for node in (self.a, self.b):
            live = 0
            while live < 10:  # fresh connections land on either worker of node B
                assert time.monotonic() < deadline, "the route did not reach every process"
                status, _ = http_json("GET", f"{node.proxy_url}{marker}")
                live = live + 1 if status == 200 else 0
        return uri


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, postgres_database: str) -> Iterator[Cluster]:
    workdir = tmp_path_factory.mktemp("cluster")

    def env(node: str) -> dict[str, str]:
        return {"LLMGATE_REDIS_URL": REDIS_URL, "LLMGATE_SPOOL_DIR": str(workdir / f"spool-{node}")}

    with (
        fake_upstream_process(None, "--record", "100000") as fake_port,
        llmgate_serve(workdir, env=env("a"), database_url=postgres_database) as a,
        llmgate_serve(
            workdir,
            "--role=proxy",
            "--workers",
            "2",
            env=env("b"),
            database_url=postgres_database,
        ) as b,
    ):
        yield Cluster(a, b, fake_port)


def fake_ai_proxy(fake: str) -> dict[str, Any]:
    """ai-proxy's config for the cluster's fake upstream (an OpenAI-compatible chat endpoint)."""
    return {
        "provider": "openai-compatible",
        "auth": {"header": {"Authorization": "Bearer upstream-secret"}},
        "options": {"model": "gpt-4o-mini"},
        "override": {"endpoint": f"{fake}/v1/chat/completions"},
    }


async def spread(cluster: Cluster, path: str, n: int) -> Counter[int]:
    """``n`` requests at once, half on each node, each on its own connection."""
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(node: Running) -> int:
            async with session.get(f"{node.proxy_url}{path}") as resp:
                await resp.read()
                return resp.status

        nodes = [cluster.a, cluster.b] * (n // 2)
        return Counter(await asyncio.gather(*(one(node) for node in nodes)))


async def test_policy_redis_without_host_is_exact_across_nodes(cluster: Cluster) -> None:
    key = f"cluster-{uuid.uuid4().hex}"
    limit = {"count": 25, "time_window": 60, "key_type": "constant", "key": key, "policy": "redis"}
    uri = cluster.route("count", {"limit-count": limit})
    statuses = await spread(cluster, uri, 80)
    assert statuses == Counter({200: 25, 503: 55})


async def test_resaving_a_route_keeps_its_redis_window_on_every_node(cluster: Cluster) -> None:
    """The key is the route's id and a digest of the plugin's stored config (as APISIX's
    resource key and conf_version), never a per-process value: re-saved, on a new uri, the
    route counts on in the same window on both nodes; its own config changed, in a new one."""
    key = f"resave-{uuid.uuid4().hex}"
    limit = {"count": 10, "time_window": 60, "key_type": "constant", "key": key, "policy": "redis"}
    uri = cluster.route("resave", {"limit-count": limit})
    assert await spread(cluster, uri, 20) == Counter({200: 10, 503: 10})
    uri = cluster.route("resave", {"limit-count": limit})
    assert await spread(cluster, uri, 4) == Counter({503: 4})
    uri = cluster.route("resave", {"limit-count": {**limit, "count": 6}})
    assert await spread(cluster, uri, 10) == Counter({200: 6, 503: 4})


async def _held_then_freed(cluster: Cluster, plugins: dict[str, Any], probe: Running) -> float:
    """Hold limit-conn's one slot with a long request on node B, SIGKILL the worker that
    serves it, and return how long until ``probe`` (a node) lets a request through again."""
    uri = cluster.route(f"conn-{uuid.uuid4().hex[:8]}", plugins)
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def status(node: Running, **headers: str) -> int:
            # POST: aiohttp sends an idempotent request again when its connection breaks.
            try:
                async with session.post(f"{node.proxy_url}{uri}", headers=headers) as resp:
                    await resp.read()
                    return resp.status
            except aiohttp.ClientError:
                return 0  # no worker listening (yet), or the worker died mid-request

        held = asyncio.create_task(status(cluster.b, **{"X-Fake-Latency-Ms": "60000"}))
        deadline = time.monotonic() + 10
        while uri not in cluster.fake_paths():  # it holds the slot, waiting for its answer
            assert time.monotonic() < deadline and not held.done(), "the slot was never held"
            await asyncio.sleep(0.05)
        assert await status(probe) == 503
        holders = [
            pid
            for pid in worker_pids(cluster.b.proc.pid)
            if connections_held(pid, cluster.b.proxy_port)
        ]
        assert len(holders) == 1, holders
        os.kill(holders[0], signal.SIGKILL)
        killed = time.monotonic()
        assert await held == 0
        while (code := await status(probe)) != 200:
            assert code in (0, 503), code
            assert time.monotonic() - killed < 10, "the dead worker's slot is still held"
            await asyncio.sleep(0.1)
        return time.monotonic() - killed


async def test_local_slots_of_a_killed_worker_are_freed_at_once(cluster: Cluster) -> None:
    """``policy: local`` across ``--workers 2``: the counter service frees a worker's slots
    when its connection ends (the kernel closes it when the worker dies)."""
    limit = {"conn": 1, "burst": 0, "default_conn_delay": 0.1, "key_type": "var_combination"}
    limit["key"] = f"local-{uuid.uuid4().hex}"
    elapsed = await _held_then_freed(cluster, {"limit-conn": limit}, cluster.b)
    assert elapsed < 10


async def test_redis_slots_of_a_killed_worker_end_with_its_lease(cluster: Cluster) -> None:
    """``policy: redis`` (the default Redis): node A sees node B's slot until the worker that
    held it is SIGKILLed and its lease (5 s) ends."""
    limit = {
        "conn": 1,
        "burst": 0,
        "default_conn_delay": 0.1,
        "key_type": "var_combination",  # a key without $variables: one key for every request
        "key": f"redis-{uuid.uuid4().hex}",
        "policy": "redis",
    }
    elapsed = await _held_then_freed(cluster, {"limit-conn": limit}, cluster.a)
    assert elapsed < 10


async def test_a_killed_workers_usage_is_shipped_from_its_spool(cluster: Cluster) -> None:
    """SIGKILL one of node B's workers under load: every call it counted was in the node's
    spool, and the node's other process (or its replacement) ships it; only calls in flight
    when it died (at most one per client) are missing, none counts twice."""
    route_id = f"usage-{uuid.uuid4().hex[:8]}"
    fake = f"http://127.0.0.1:{cluster.fake_port}"
    ai_proxy = fake_ai_proxy(fake)
    uri = cluster.route(route_id, {"ai-proxy": ai_proxy})
    http_json("DELETE", f"{fake}/__fake/requests")
    body = {"messages": [{"role": "user", "content": "Who is Pikachu?"}]}
    clients = 6
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        until = time.monotonic() + 1.5

        async def client() -> None:
            while time.monotonic() < until:
                try:
                    async with session.post(f"{cluster.b.proxy_url}{uri}", json=body) as resp:
                        await resp.read()
                except aiohttp.ClientError:
                    await asyncio.sleep(0.01)  # its worker died: connect again

        load = asyncio.gather(*(client() for _ in range(clients)))
        await asyncio.sleep(0.7)
        os.kill(worker_pids(cluster.b.proc.pid)[0], signal.SIGKILL)
        await load
    received = len(cluster.fake_paths())
    assert received > 50, "too little load to measure anything"
    deadline = time.monotonic() + 15
    while True:  # the dead worker's spool is shipped within ORPHAN_SCAN (5 s) of its death
        _, answer = http_json(
            "GET",
            f"{cluster.a.admin_url}/apisix/admin/usage?route={route_id}",
            headers={"X-API-KEY": ADMIN_KEY},
        )
        stored = int(answer["total"]["requests"])
        if received - stored <= clients or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.25)
    assert stored <= received, "usage counted twice"
    assert received - stored <= clients, f"received {received}, stored {stored}"


def test_a_finished_stream_leaves_only_its_usage_on_the_shared_budget(cluster: Cluster) -> None:
    """ai-rate-limiting on the default Redis: a stream reserves its estimate (prompt plus
    ``max_tokens``, over the whole budget here) and is settled with its real usage (a few
    tokens) before the client sees its end, so a call sent to the other node at once is
    admitted: the budget is far from spent.  Each round has a budget of its own (a rule keyed
    by a header); the rounds alternate nodes."""
    fake = f"http://127.0.0.1:{cluster.fake_port}"
    ai_proxy = fake_ai_proxy(fake)
    budget = {
        "rules": [{"count": 300, "time_window": 60, "key": "$http_x_budget"}],
        "policy": "redis",
        "rejected_code": 429,
    }
    uri = cluster.route(
        f"stream-{uuid.uuid4().hex[:8]}", {"ai-proxy": ai_proxy, "ai-rate-limiting": budget}
    )
    body = {
        "messages": [{"role": "user", "content": "Who is Pikachu?"}],
        "max_tokens": 1000,
        "stream": True,
    }
    raw = json.dumps(body).encode()
    refused = []
    with KeptAlive(cluster.a.proxy_port) as on_a, KeptAlive(cluster.b.proxy_port) as on_b:
        for n in range(300):
            headers = {"Content-Type": "application/json", "X-Budget": uuid.uuid4().hex}
            call = request_bytes("POST", uri, headers, raw)
            first, then = (on_a, on_b) if n % 2 == 0 else (on_b, on_a)
            streamed = first.request(call)
            assert streamed.status == 200 and b"[DONE]" in streamed.body, streamed
            following = then.request(call)
            if following.status != 200:
                refused.append((n, following.status, following.body[:200]))
    assert refused == []
