"""A value the database refuses is the client's 400, never the store's 503.

The admin API's own checks keep such values away from a migrated store (ids as wide as the
schema allows, no NUL in usage filters); a PostgreSQL store still at migration 0005 (200-wide
ids) refuses a 230-character username, which the schema accepts."""

from __future__ import annotations

import asyncio
from typing import Any

from alembic import command

from llmgate.admin.auth import AdminKeys
from llmgate.app import build_admin_app
from llmgate.store import Store, open_engine
from llmgate.store.migrate import alembic_config
from tests.support import ADMIN_KEY, VIEWER_KEY

LONG_NAME = "u" * 230  # a valid username (256 at most), longer than 0005's 200-wide id


async def _everything(store: Store) -> tuple[int, list[Any]]:
    async with store.read() as reader:
        items = await reader.all()
        return await reader.revision(), [(i.kind, i.id, i.value) for i in items]


async def test_a_value_postgresql_refuses_is_a_400_and_changes_nothing(  # type: ignore[no-untyped-def]
    aiohttp_client, empty_postgres_url: str
) -> None:
    await asyncio.to_thread(command.upgrade, alembic_config(empty_postgres_url), "0005")
    store = Store(open_engine(empty_postgres_url))
    try:
        app = build_admin_app(store, AdminKeys(ADMIN_KEY, VIEWER_KEY))
        admin = await aiohttp_client(app, headers={"X-API-KEY": ADMIN_KEY})
        route = {"uri": "/a", "upstream": {"nodes": {"127.0.0.1:80": 1}}}
        assert (await admin.put("/apisix/admin/routes/1", json=route)).status == 201
        before = await _everything(store)

        resp = await admin.put("/apisix/admin/consumers", json={"username": LONG_NAME})
        assert resp.status == 400, await resp.text()
        assert resp.content_type == "application/json"
        assert await resp.json() == {
            "error_msg": "invalid value: value too long for type character varying(200)"
        }
        assert await _everything(store) == before  # rolled back, revision bump included

        # The store answered all along: not reported unavailable, and still ready.
        resp = await admin.get("/readyz")
        assert resp.status == 200, await resp.text()
        assert (await resp.json())["store"]["state"] == "ok"
        assert (await admin.get("/apisix/admin/routes/1")).status == 200
    finally:
        await store.close()
