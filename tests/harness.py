"""An in-process gateway for plugin and proxy tests: admin API, data plane and fake upstream.

    async def test_x(gateway):
        await gateway.put("routes/1", {"uri": "/*", "upstream": gateway.upstream()})
        resp = await gateway.proxy.get("/anything")

``put``/``delete`` go through the real admin API and then wait for the data plane to load the
new revision, so a test never races the reload.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from llmgate.runtime.loader import SnapshotLoader
from llmgate.runtime.services import Services
from llmgate.store import Store


@dataclass
class Gateway:
    admin: TestClient
    proxy: TestClient
    fake: TestServer
    loader: SnapshotLoader
    services: Services
    store: Store

    @property
    def fake_address(self) -> str:
        return f"127.0.0.1:{self.fake.port}"

    def upstream(self, **extra: Any) -> dict[str, Any]:
        """An inline upstream pointing at the fake."""
        return {"type": "roundrobin", "nodes": {self.fake_address: 1}, **extra}

    async def put(self, path: str, body: Any, status: int | None = None) -> dict[str, Any]:
        resp = await self.admin.put(f"/apisix/admin/{path}", json=body)
        answer = await resp.json()
        if status is None:
            assert resp.status in (200, 201), answer
        else:
            assert resp.status == status, answer
        await self.loader.reload()
        return answer

    async def delete(self, path: str) -> None:
        resp = await self.admin.delete(f"/apisix/admin/{path}")
        assert resp.status == 200, await resp.text()
        await self.loader.reload()

    async def fake_requests(self) -> list[dict[str, Any]]:
        """What the fake upstream received, oldest first."""
        async with (
            _session() as session,
            session.get(f"http://{self.fake_address}/__fake/requests") as resp,
        ):
            return (await resp.json())["requests"]

    async def clear_fake(self) -> None:
        async with _session() as session:
            await session.delete(f"http://{self.fake_address}/__fake/requests")


def _session():  # type: ignore[no-untyped-def]
    import aiohttp

    return aiohttp.ClientSession()
