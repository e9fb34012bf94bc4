"""Durable usage (issue 13): a node SIGKILLed under load loses at most 100 ms of calls.

Calls the fake upstream received are counted against ``GET /apisix/admin/usage`` after the
node was killed and started again on the same store and spool: the restart ships what the
dead process had spooled, and nothing counts twice.
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from typing import Any

import aiohttp

from tests.net import http_json
from tests.processes import Running, fake_upstream_process, llmgate_serve
from tests.support import ADMIN_KEY

LOAD_SECONDS = 1.5
CLIENTS = 8
BODY = {"messages": [{"role": "user", "content": "Who is Pikachu?"}]}


def admin(node: Running, method: str, path: str, body: Any = None) -> Any:
    headers = {"X-API-KEY": ADMIN_KEY, "Content-Type": "application/json"}
    status, answer = http_json(method, f"{node.admin_url}/apisix/admin/{path}", body, headers)
    assert status in (200, 201), (status, answer)
    return answer


def requests_stored(node: Running) -> int:
    return int(admin(node, "GET", "usage")["total"]["requests"])


async def load_until_killed(node: Running) -> float:
    """``CLIENTS`` clients calling as fast as they can; SIGKILL the node after
    ``LOAD_SECONDS``.  Returns how long the load ran."""
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def client() -> None:
            while True:
                try:
                    async with session.post(
                        f"{node.proxy_url}/v1/chat/completions", json=BODY
                    ) as r:
                        await r.read()
                except aiohttp.ClientError:
                    return  # the node is gone

        started = time.monotonic()
        clients = [asyncio.create_task(client()) for _ in range(CLIENTS)]
        await asyncio.sleep(LOAD_SECONDS)
        node.proc.send_signal(signal.SIGKILL)
        ran = time.monotonic() - started
        await asyncio.wait_for(asyncio.gather(*clients), 10)
    return ran


async def test_sigkill_under_load_loses_at_most_100_ms_of_calls(tmp_path: Path) -> None:
    with fake_upstream_process(None, "--record", "100000") as fake_port:
        fake = f"http://127.0.0.1:{fake_port}"
        with llmgate_serve(tmp_path) as node:
            ai_proxy = {
                "provider": "openai-compatible",
                "auth": {"header": {"Authorization": "Bearer upstream-secret"}},
                "options": {"model": "gpt-4o-mini"},
                "override": {"endpoint": f"{fake}/v1/chat/completions"},
            }
            admin(node, "PUT", "routes/llm", {"uri": "/v1/*", "plugins": {"ai-proxy": ai_proxy}})
            ran = await load_until_killed(node)
            node.proc.wait(10)
        received = len(http_json("GET", f"{fake}/__fake/requests")[1]["requests"])
        assert received > 100, "too little load to measure anything"
        with llmgate_serve(tmp_path) as again:  # the same store and spool directory
            deadline = time.monotonic() + 15
            stored, previous = requests_stored(again), -1
            while stored != previous or stored == 0:  # the spool is shipped at start
                assert time.monotonic() < deadline, f"usage still moving: {stored}"
                await asyncio.sleep(0.5)
                stored, previous = requests_stored(again), stored
    rate = received / ran
    lost = received - stored
    print(f"received {received} in {ran:.2f} s ({rate:.0f}/s), stored {stored}, lost {lost}")
    assert stored <= received, "usage counted twice"
    assert lost <= rate * 0.1, f"lost {lost} calls: more than 100 ms at {rate:.0f} calls/s"
    assert not list((tmp_path / "llmgate.db.spool").glob("*.seg")), "spool left behind"
