"""A cluster on one PostgreSQL: one admin process and two proxy nodes (one with two workers).

Config propagates to every worker quickly; a database outage (``ALLOW_CONNECTIONS false`` and
its sessions terminated) leaves both proxies ready and serving, the admin API answering 503
JSON, and a killed worker serving the node's last-good snapshot (a node that starts during an
outage: tests/runtime/test_last_good.py); once the database is back a write is live everywhere within a second.

Uses the PostgreSQL server at LLMGATE_TEST_POSTGRES_URL (a fresh database for the test); fails,
never skips, without it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import statistics
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from sqlalchemy.engine import make_url

from llmgate.store.migrate import upgrade
from tests.net import http_json
from tests.processes import Running, fake_upstream_process, llmgate_serve, worker_pids
from tests.support import ADMIN_KEY, POSTGRES_URL

HEADERS = {"X-API-KEY": ADMIN_KEY}


def _dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def _sql(*statements: str) -> None:
    conn = await asyncpg.connect(_dsn(POSTGRES_URL))
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


def sql(*statements: str) -> None:
    asyncio.run(_sql(*statements))


@pytest.fixture
def database() -> Iterator[tuple[str, str]]:
    """A fresh, migrated database: (its name, its URL)."""
    name = f"llmgate_cluster_{uuid.uuid4().hex[:12]}"
    sql(f'CREATE DATABASE "{name}"')
    url = make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    try:
        upgrade(url)
        yield name, url
    finally:
        sql(
            f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true',
            f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)',
        )


def status_of(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return int(err.code)
    except OSError:
        return 0


def wait_for(check: Callable[[], Any], what: str, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def readyz(node: Running) -> tuple[int, Any]:
    try:
        return http_json("GET", f"http://127.0.0.1:{node.metrics_port}/readyz")
    except OSError:  # not listening yet
        return 0, {}


def put_route(admin: Running, id: str, upstream_port: int) -> tuple[int, Any]:
    body = {"uri": f"/{id}", "upstream": {"nodes": {f"127.0.0.1:{upstream_port}": 1}}}
    return http_json("PUT", f"{admin.admin_url}/apisix/admin/routes/{id}", body, HEADERS)


def live_within(proxies: list[Running], path: str, since: float, limit: float) -> float:
    """Seconds from ``since`` until every proxy serves ``path`` (fails after ``limit``)."""
    for proxy in proxies:
        while status_of(f"{proxy.proxy_url}{path}") != 200:
            assert time.monotonic() - since < limit, f"{path} not live on {proxy.proxy_url}"
            time.sleep(0.005)
    return time.monotonic() - since


def test_a_cluster_rides_out_a_database_outage(tmp_path: Path, database: tuple[str, str]) -> None:
    name, url = database
    with ExitStack() as stack:
        upstream = stack.enter_context(fake_upstream_process())

        def node(label: str, *args: str, snapshot_dir: Path | None = None) -> Running:
            workdir = tmp_path / label
            workdir.mkdir(exist_ok=True)
            env = {"LLMGATE_SNAPSHOT_DIR": str(snapshot_dir or workdir / "state")}
            return stack.enter_context(
                llmgate_serve(workdir, *args, database_url=url, env=env, wait=False)
            )

        admin = node("admin", "--role=admin")
        a = node("a", "--role=proxy", "--workers", "2")
        b = node("b", "--role=proxy")
        proxies = [a, b]
        for running in (admin, *proxies):
            wait_for(lambda r=running: readyz_or_admin(r) == 200, "the node to be ready", 30)

        # Propagation: a write is served by both nodes (every worker of a) quickly.
        delays = []
        for i in range(8):
            status, body = put_route(admin, f"r{i}", upstream)
            assert status == 201, body
            delays.append(live_within(proxies, f"/r{i}", time.monotonic(), 1.0))
        p50 = statistics.median(delays)
        print(f"propagation p50 {p50 * 1000:.0f} ms, max {max(delays) * 1000:.0f} ms")
        assert p50 < 0.25
        # Both workers of a load the newest revision (each one's snapshot is written to disk).
        wait_for(lambda: all(readyz(p)[1].get("revision") == 8 for p in proxies), "revision 8")

        # --- the database goes away ------------------------------------------------------
        sql(
            f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false',
            f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'",
        )
        for proxy in proxies:
            wait_for(
                lambda p=proxy: readyz(p)[1].get("store", {}).get("state") == "unavailable",
                "the proxy to notice",
            )
        time.sleep(0.5)  # five more failed polls per process: still one line in the log
        for proxy in proxies:
            status, body = readyz(proxy)
            assert status == 200, body
            for i in range(8):
                assert status_of(f"{proxy.proxy_url}/r{i}") == 200
            strict = http_json("GET", f"http://127.0.0.1:{proxy.metrics_port}/readyz?strict=1")
            assert strict[0] == 503, strict
        assert b.output().count("the store is unavailable") == 1, b.output()[-3000:]

        for method, path, body in (
            ("GET", "/apisix/admin/routes", None),
            ("PUT", "/apisix/admin/routes/down", {"uri": "/down", "upstream": {"nodes": {}}}),
            ("GET", "/apisix/admin/usage", None),
        ):
            status, answer = http_json(method, f"{admin.admin_url}{path}", body, HEADERS)
            assert status == 503, (method, path, answer)
            assert answer["error_msg"].startswith("store unavailable: "), answer

        # A worker killed now starts again from the node's last-good snapshot.
        before = worker_pids(a.proc.pid)
        assert len(before) == 2
        os.kill(before[0], signal.SIGKILL)
        wait_for(
            lambda: len(p := worker_pids(a.proc.pid)) == 2 and before[0] not in p,
            "the worker to be started again",
            30,
        )
        wait_for(lambda: readyz(a)[0] == 200, "node a ready again")
        wait_for(lambda: "from the last-good snapshot" in a.output(), "the worker's log line", 30)
        for i in range(8):
            for _ in range(4):  # connections spread over both workers
                assert status_of(f"{a.proxy_url}/r{i}") == 200
        # --- the database is back: a write is live everywhere within a second --------------
        sql(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        back = time.monotonic()
        status, body = wait_for(
            lambda: (answer := put_route(admin, "back", upstream))[0] == 201 and answer,
            "the admin API to write again",
        )
        print(f"admin writes again after {time.monotonic() - back:.2f} s")
        delay = live_within(proxies, "/back", time.monotonic(), 1.0)
        print(f"after the outage: live in {delay * 1000:.0f} ms")
        for proxy in proxies:  # each process's view of the store follows within its probes
            wait_for(
                lambda p=proxy: readyz(p)[1].get("store", {}).get("state") == "ok",
                "the store's state to be ok again",
            )


def readyz_or_admin(node: Running) -> int:
    """A proxy node's /readyz status on its metrics listener, an admin's on the admin one."""
    if status_of(f"{node.admin_url}/healthz") == 200:
        return 200
    return readyz(node)[0]


@contextmanager
def tables_locked(url: str, *tables: str) -> Iterator[None]:
    """Another session holds ACCESS EXCLUSIVE locks on ``tables`` (every query of them waits)
    until the block ends."""
    locked, release = threading.Event(), threading.Event()

    async def hold() -> None:
        conn = await asyncpg.connect(_dsn(url))
        try:
            async with conn.transaction():
                await conn.execute(f"LOCK TABLE {', '.join(tables)} IN ACCESS EXCLUSIVE MODE")
                locked.set()
                await asyncio.get_running_loop().run_in_executor(None, release.wait)
        finally:
            await conn.close()

    thread = threading.Thread(target=asyncio.run, args=(hold(),))
    thread.start()
    try:
        assert locked.wait(10), "could not take the locks"
        yield
    finally:
        release.set()
        thread.join(10)


def test_a_store_that_does_not_answer_gets_503_not_a_hang(
    tmp_path: Path, database: tuple[str, str]
) -> None:
    """A store that accepts connections but answers no query (here: its tables locked by
    another session) is unavailable: the admin API answers 503 JSON within seconds rather than
    hanging, and the data plane keeps serving, ready, with the store reported unavailable."""
    _, url = database
    with fake_upstream_process() as upstream, llmgate_serve(tmp_path, database_url=url) as node:
        status, body = put_route(node, "r", upstream)
        assert status == 201, body
        live_within([node], "/r", time.monotonic(), 1.0)
        with tables_locked(url, "resources", "revision"):
            for method, path, body in (
                ("GET", "/apisix/admin/routes", None),
                ("GET", "/apisix/admin/routes/r", None),
                ("PUT", "/apisix/admin/routes/s", {"uri": "/s", "upstream": {"nodes": {}}}),
            ):
                started = time.monotonic()
                status, answer = http_json(method, f"{node.admin_url}{path}", body, HEADERS)
                took = time.monotonic() - started
                assert status == 503, (method, path, status, answer, took)
                assert answer == {"error_msg": "store unavailable: timed out"}, answer
                assert took < 15, took
            wait_for(
                lambda: readyz(node)[1].get("store", {}).get("state") == "unavailable",
                "the data plane to see the store unavailable",
                15,
            )
            assert readyz(node)[0] == 200
            assert status_of(f"{node.proxy_url}/r") == 200
        # The locks are gone: the store answers again, and writes are live.
        status, body = wait_for(
            lambda: (answer := put_route(node, "back", upstream))[0] == 201 and answer,
            "the admin API to write again",
        )
        live_within([node], "/back", time.monotonic(), 1.0)
        wait_for(lambda: readyz(node)[1].get("store", {}).get("state") == "ok", "store ok")


async def test_a_burst_of_writes_on_two_admin_nodes_all_land(
    tmp_path: Path, database: tuple[str, str]
) -> None:
    """Two admin processes (one also a data plane of two workers) take 200 concurrent writes
    of every kind: every one is stored, none answers 503 because it waited behind the others
    (each process's writers take turns before they reach the database), and each bumped the
    revision once."""
    _, url = database
    with ExitStack() as stack:
        upstream = stack.enter_context(fake_upstream_process())
        nodes = []
        for name, args in (("one", ("--workers", "2")), ("two", ("--role=admin",))):
            (tmp_path / name).mkdir()
            nodes.append(
                stack.enter_context(
                    llmgate_serve(tmp_path / name, *args, database_url=url, wait=False)
                )
            )
        for node in nodes:
            wait_for(lambda n=node: status_of(f"{n.admin_url}/healthz") == 200, "admin", 30)
        status, body = put_route(nodes[0], "m", upstream)
        assert status == 201, body
        nodes_of = {f"127.0.0.1:{upstream}": 1}
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector, headers=HEADERS) as session:

            async def write(i: int) -> tuple[str, int]:
                kind = i % 4
                if kind == 0:
                    method, path = "PUT", f"routes/c{i % 7}"
                    body: dict[str, Any] = {"uri": f"/c{i % 7}", "upstream": {"nodes": nodes_of}}
                elif kind == 1:
                    method, path, body = "POST", "upstreams", {"nodes": nodes_of}
                elif kind == 2:
                    method, path, body = "PATCH", "routes/m", {"desc": str(i)}
                else:
                    user = f"u{i % 5}"
                    auth = {"username": user, "password": f"secret-{i}"}
                    method, path = "PUT", "consumers"
                    body = {"username": user, "plugins": {"basic-auth": auth}}
                url = f"{nodes[i % 2].admin_url}/apisix/admin/{path}"
                async with session.request(method, url, json=body) as resp:
                    await resp.read()
                    return method, resp.status

            statuses = Counter(await asyncio.gather(*(write(i) for i in range(200))))
    assert statuses == Counter(
        {("PUT", 200): 88, ("PUT", 201): 12, ("PATCH", 200): 50, ("POST", 201): 50}
    ), statuses
    conn = await asyncpg.connect(_dsn(url))
    try:
        assert await conn.fetchval("SELECT value FROM revision") == 201
    finally:
        await conn.close()
