"""Big configs on PostgreSQL: 10,000 routes and 10,000 consumers, one admin and one proxy process.

Run: .venv/bin/python bench/bench_cluster.py [--routes N] [--consumers N] [--no-write]
     (or ``make bench-cluster``).  Needs the PostgreSQL server of the test suite
     (LLMGATE_TEST_POSTGRES_URL, default postgresql+asyncpg://postgres@127.0.0.1:5432/test); it
     creates a fresh database and drops it at the end.

Measures, with the config loaded:

* consumer PUT: sequential PUTs of new consumers with a key-auth key through the admin API
  (validation, the duplicate-key lookup, the write), p50 / p99;
* single write live: a route PUT until the proxy process serves it (polled every 2 ms), p50 / max;
* data-plane requests during reloads: a keep-alive client sends requests to an existing
  key-auth route, first with no writes (baseline), then while routes and consumers are written
  (one write every 100 ms); the latency distribution of each, and the proxy's own account of how
  long each incremental reload held its event loop (its debug log);
* the proxy's start (a full compilation of every row).

Results are printed and written into docs/benchmarks.md (section ``cluster``) unless --no-write.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.benchkit.report import write_docs  # noqa: E402

from llmgate.credentials import hash_password, store_key  # noqa: E402
from llmgate.store import Store, open_engine  # noqa: E402
from llmgate.store.migrate import upgrade  # noqa: E402
from tests.processes import free_port, wait_for_http  # noqa: E402

POSTGRES_URL = os.environ.get(
    "LLMGATE_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
ADMIN_KEY = "bench-admin-key-0123456789"
LLMGATE = [sys.executable, "-m", "llmgate.cli"]


def _dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def seed(url: str, routes: int, consumers: int, upstream: int) -> float:
    """Every route and consumer in one revision, through the store (as ``config apply``)."""
    store = Store(open_engine(url))
    started = time.monotonic()
    nodes = {f"127.0.0.1:{upstream}": 1}
    try:
        async with store.write() as writer:
            await writer.put("upstreams", "u", {"nodes": nodes, "type": "roundrobin"})
            for i in range(routes):
                await writer.put(
                    "routes",
                    f"r{i}",
                    {
                        "uri": f"/bench/{i}/*",
                        "upstream_id": "u",
                        "plugins": {
                            "key-auth": {},
                            "limit-count": {"count": 10**9, "time_window": 60},
                        },
                    },
                )
            for i in range(consumers):
                await writer.put(
                    "consumers",
                    f"c{i}",
                    {"username": f"c{i}", "plugins": {"key-auth": {"key": store_key(f"k{i}")}}},
                )
            # One basic-auth consumer, so that index is not empty either.
            await writer.put(
                "consumers",
                "basic",
                {
                    "username": "basic",
                    "plugins": {
                        "basic-auth": {"username": "basic", "password": hash_password("pw")}
                    },
                },
            )
    finally:
        await store.close()
    return time.monotonic() - started


def start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def put(session: aiohttp.ClientSession, admin: str, path: str, body: Any) -> int:
    async with session.put(
        f"{admin}/apisix/admin/{path}", json=body, headers={"X-API-KEY": ADMIN_KEY}
    ) as resp:
        await resp.read()
        return resp.status


async def consumer_puts(session: aiohttp.ClientSession, admin: str, count: int) -> list[float]:
    times = []
    for i in range(count):
        body = {"username": f"new{i}", "plugins": {"key-auth": {"key": f"new-key-{i}"}}}
        started = time.perf_counter()
        status = await put(session, admin, f"consumers/new{i}", body)
        times.append(time.perf_counter() - started)
        assert status in (200, 201), status
    return times


async def writes_live(
    session: aiohttp.ClientSession, admin: str, proxy: str, upstream: int, count: int
) -> list[float]:
    delays = []
    for i in range(count):
        body = {"uri": f"/live/{i}", "upstream": {"nodes": {f"127.0.0.1:{upstream}": 1}}}
        assert await put(session, admin, f"routes/live{i}", body) in (200, 201)
        written = time.perf_counter()
        while True:
            async with session.get(f"{proxy}/live/{i}") as resp:
                await resp.read()
                if resp.status == 200:
                    break
            if time.perf_counter() - written > 10:
                raise RuntimeError(f"/live/{i} not live after 10 s")
            await asyncio.sleep(0.002)
        delays.append(time.perf_counter() - written)
        await asyncio.sleep(0.05)
    return delays


async def traffic(
    session: aiohttp.ClientSession, proxy: str, seconds: float, routes: int
) -> list[float]:
    """Latencies of back-to-back requests to key-auth routes for ``seconds``."""
    latencies = []
    deadline = time.perf_counter() + seconds
    i = 0
    while time.perf_counter() < deadline:
        n = (i * 7919) % routes
        started = time.perf_counter()
        async with session.get(f"{proxy}/bench/{n}/v1/models", headers={"apikey": f"k{n}"}) as resp:
            await resp.read()
            assert resp.status == 200, resp.status
        latencies.append(time.perf_counter() - started)
        i += 1
    return latencies


async def writer_loop(
    session: aiohttp.ClientSession, admin: str, upstream: int, stop_at: float
) -> int:
    written = 0
    while time.perf_counter() < stop_at:
        if written % 2:
            body: dict[str, Any] = {
                "uri": f"/churn/{written}",
                "upstream": {"nodes": {f"127.0.0.1:{upstream}": 1}},
            }
            await put(session, admin, f"routes/churn{written % 50}", body)
        else:
            body = {
                "username": f"churn{written % 50}",
                "plugins": {"key-auth": {"key": f"churn-key-{written}"}},
            }
            await put(session, admin, f"consumers/churn{written % 50}", body)
        written += 1
        await asyncio.sleep(0.1)
    return written


def reload_times(log: str) -> list[tuple[float, float]]:
    """(milliseconds of compiling in all, of its longest step) per incremental reload."""
    found = re.findall(r"changed rows compiled in ([0-9.]+) ms \(longest step ([0-9.]+) ms\)", log)
    return [(float(total), float(step)) for total, step in found]


def load_average() -> str:
    return " / ".join(f"{x:.1f}" for x in os.getloadavg())


async def run(options: argparse.Namespace) -> dict[str, Any]:
    name = f"llmgate_bench_{uuid.uuid4().hex[:10]}"
    admin_dsn = _dsn(POSTGRES_URL)
    conn = await asyncpg.connect(admin_dsn)
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    url = make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    work = Path(tempfile.mkdtemp(prefix="llmgate-bench-cluster-"))
    procs: list[subprocess.Popen[bytes]] = []
    result: dict[str, Any] = {"routes": options.routes, "consumers": options.consumers}
    try:
        await asyncio.get_running_loop().run_in_executor(None, upgrade, url)
        upstream = free_port()
        procs.append(
            start(
                [*LLMGATE, "fake-upstream", "--port", str(upstream)],
                dict(os.environ),
                work / "fake.log",
            )
        )
        result["seed_s"] = await seed(url, options.routes, options.consumers, upstream)
        env = {k: v for k, v in os.environ.items() if not k.startswith("LLMGATE_")}
        admin_port, proxy_port = free_port(), free_port()
        common = {
            **env,
            "LLMGATE_DATABASE_URL": url,
            "LLMGATE_ADMIN_KEY": ADMIN_KEY,
            "LLMGATE_SNAPSHOT_DIR": str(work / "state"),
            "PYTHONUNBUFFERED": "1",
        }
        started = time.monotonic()
        procs.append(
            start(
                [*LLMGATE, "serve", "--role=proxy", "--log-level=debug"],
                {
                    **common,
                    "LLMGATE_PROXY_LISTEN": f"127.0.0.1:{proxy_port}",
                    "LLMGATE_METRICS_LISTEN": f"127.0.0.1:{free_port()}",
                },
                work / "proxy.log",
            )
        )
        procs.append(
            start(
                [*LLMGATE, "serve", "--role=admin"],
                {**common, "LLMGATE_ADMIN_LISTEN": f"127.0.0.1:{admin_port}"},
                work / "admin.log",
            )
        )
        admin, proxy = f"http://127.0.0.1:{admin_port}", f"http://127.0.0.1:{proxy_port}"
        await asyncio.get_running_loop().run_in_executor(
            None, lambda: wait_for_http(f"{proxy}/", timeout=300, proc=procs[1])
        )
        result["proxy_start_s"] = time.monotonic() - started
        await asyncio.get_running_loop().run_in_executor(
            None, lambda: wait_for_http(f"{admin}/healthz", timeout=120, proc=procs[2])
        )
        connector = aiohttp.TCPConnector(limit=4)
        async with aiohttp.ClientSession(connector=connector) as session:
            await traffic(session, proxy, 1.0, options.routes)  # warm up
            puts = await consumer_puts(session, admin, options.puts)
            result["consumer_put_ms"] = (pct(puts, 0.5) * 1000, pct(puts, 0.99) * 1000)
            live = await writes_live(session, admin, proxy, upstream, options.lives)
            result["live_ms"] = (statistics.median(live) * 1000, max(live) * 1000)
            before = len(reload_times((work / "proxy.log").read_text()))
            quiet = await traffic(session, proxy, options.seconds, options.routes)
            stop_at = time.perf_counter() + options.seconds
            busy, written = await asyncio.gather(
                traffic(session, proxy, options.seconds, options.routes),
                writer_loop(session, admin, upstream, stop_at),
            )
            await asyncio.sleep(0.5)
        proxy_log = (work / "proxy.log").read_text()
        reloads = reload_times(proxy_log)[before:]
        full = re.search(
            r"every row compiled in ([0-9.]+) ms \(longest step ([0-9.]+) ms\)", proxy_log
        )
        result["full_ms"] = (float(full.group(1)), float(full.group(2))) if full else None
        result["quiet_ms"] = [x * 1000 for x in (pct(quiet, 0.5), pct(quiet, 0.99), max(quiet))]
        result["busy_ms"] = [x * 1000 for x in (pct(busy, 0.5), pct(busy, 0.99), max(busy))]
        result["requests"] = (len(quiet), len(busy))
        result["writes"] = written
        totals = [total for total, _ in reloads]
        steps = [step for _, step in reloads]
        result["reload_ms"] = (
            (statistics.median(totals), max(totals), len(reloads)) if reloads else None
        )
        result["step_ms"] = (statistics.median(steps), max(steps)) if reloads else None
        result["load"] = load_average()
        result["cpus"] = os.cpu_count()
    finally:
        for proc in reversed(procs):
            stop(proc)
        conn = await asyncpg.connect(admin_dsn)
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.close()
    return result


def render(r: dict[str, Any], command: str) -> str:
    reload, step = r["reload_ms"], r["step_ms"]
    reload_text = (
        f"{reload[0]:.1f} ms p50, {reload[1]:.1f} ms max over {reload[2]} reloads"
        if reload
        else "none logged"
    )
    step_text = f"{step[0]:.1f} ms p50, {step[1]:.1f} ms max" if step else "none logged"
    full = r["full_ms"]
    full_text = f"{full[0]:.0f} ms, longest step {full[1]:.1f} ms" if full else "not logged"
    return "\n".join(
        [
            f"### {r['routes']:,} routes and {r['consumers']:,} consumers on PostgreSQL",
            "",
            f"`{command}` on {time.strftime('%Y-%m-%d')}, one admin and one proxy process "
            f"(`--workers 1`), {r['cpus']} CPUs **shared with other jobs** (load average "
            f"{r['load']} at the end): absolute numbers are pessimistic and noisy.",
            "",
            "| what | result | target |",
            "|---|---|---|",
            f"| seeding (one revision, through the store) | {r['seed_s']:.1f} s | |",
            f"| proxy start (process start, full compilation, listening) | "
            f"{r['proxy_start_s']:.1f} s | |",
            f"| full compilation at start (in steps) | {full_text} | |",
            f"| consumer PUT (admin API) | p50 {r['consumer_put_ms'][0]:.1f} ms, "
            f"p99 {r['consumer_put_ms'][1]:.1f} ms | p50 < 50 ms |",
            f"| a route PUT served by the proxy | p50 {r['live_ms'][0]:.0f} ms, "
            f"max {r['live_ms'][1]:.0f} ms | < 250 ms |",
            f"| incremental reload, compiling in all (proxy's log) | {reload_text} | |",
            f"| incremental reload, longest step holding the event loop | {step_text} | < 20 ms |",
            f"| requests, no writes ({r['requests'][0]}) | p50 {r['quiet_ms'][0]:.1f} ms, "
            f"p99 {r['quiet_ms'][1]:.1f} ms, max {r['quiet_ms'][2]:.1f} ms | |",
            f"| requests during {r['writes']} writes ({r['requests'][1]}) | "
            f"p50 {r['busy_ms'][0]:.1f} ms, p99 {r['busy_ms'][1]:.1f} ms, "
            f"max {r['busy_ms'][2]:.1f} ms | max - quiet max < 20 ms |",
            "",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--routes", type=int, default=10_000)
    parser.add_argument("--consumers", type=int, default=10_000)
    parser.add_argument("--puts", type=int, default=100, help="consumer PUTs measured")
    parser.add_argument("--lives", type=int, default=30, help="route writes measured")
    parser.add_argument("--seconds", type=float, default=10.0, help="traffic per phase")
    parser.add_argument("--no-write", action="store_true", help="do not touch docs/")
    options = parser.parse_args()
    result = asyncio.run(run(options))
    command = "python bench/bench_cluster.py " + " ".join(sys.argv[1:])
    text = render(result, command.strip())
    print(text)
    print(json.dumps(result))
    if not options.no_write:
        write_docs("cluster", text)


if __name__ == "__main__":
    main()
