"""A value the database refuses is the client's 400, never the store's 503 (each test runs on
SQLite and on PostgreSQL; SQLite stores what PostgreSQL refuses, and then answers as usual)."""

from __future__ import annotations

from typing import Any

from llmgate.admin.handlers import STORE_KEY
from llmgate.store import Store

LONG_NAME = "u" * 230  # a valid username (256 at most), longer than the store's 200-wide id
NUL = "text holds a NUL byte (\\u0000), which the database cannot store"


async def _everything(store: Store) -> tuple[int, list[Any]]:
    async with store.read() as reader:
        items = await reader.all()
        return await reader.revision(), [(i.kind, i.id, i.value) for i in items]


async def test_values_postgresql_refuses_are_a_400_and_change_nothing(admin) -> None:  # type: ignore[no-untyped-def]
    store: Store = admin.server.app[STORE_KEY]
    postgres = store.engine.dialect.name == "postgresql"
    route = {"uri": "/a", "upstream": {"nodes": {"127.0.0.1:80": 1}}}
    assert (await admin.put("/apisix/admin/routes/1", json=route)).status == 201
    before = await _everything(store)

    resp = await admin.put("/apisix/admin/consumers", json={"username": LONG_NAME})
    if postgres:
        assert resp.status == 400, await resp.text()
        assert resp.content_type == "application/json"
        assert await resp.json() == {
            "error_msg": "invalid value: value too long for type character varying(200)"
        }
        assert await _everything(store) == before  # rolled back, revision bump included
    else:
        assert resp.status == 201

    for path in (
        "/apisix/admin/usage?consumer=jack%00" + "x" * 5000,
        "/apisix/admin/usage/calls?request_id=%00",
        "/apisix/admin/usage/calls?model=gpt%00",
    ):
        resp = await admin.get(path)
        if postgres:
            assert resp.status == 400, (path, await resp.text())
            assert await resp.json() == {"error_msg": f"invalid value: {NUL}"}
        else:
            assert resp.status == 200, (path, await resp.text())

    # The store answered all along: not reported unavailable, and still ready.
    resp = await admin.get("/readyz")
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["store"]["state"] == "ok"
    assert (await admin.get("/apisix/admin/routes/1")).status == 200
