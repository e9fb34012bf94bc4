"""A read-only admin API (``serve --standalone``) still checks configs: validating writes
nothing, every real write answers 405."""

from __future__ import annotations

from llmgate.admin.auth import AdminKeys
from llmgate.app import build_admin_app
from llmgate.store import Store
from tests.support import ADMIN_KEY


async def test_validate_works_when_writes_are_refused(aiohttp_client, sqlite_store: Store) -> None:  # type: ignore[no-untyped-def]
    app = build_admin_app(sqlite_store, AdminKeys(ADMIN_KEY), read_only="standalone mode")
    admin = await aiohttp_client(app, headers={"X-API-KEY": ADMIN_KEY})
    route = {"uri": "/x", "upstream": {"nodes": {"127.0.0.1:1": 1}}}
    resp = await admin.post("/apisix/admin/schema/validate/routes", json=route)
    assert resp.status == 200
    resp = await admin.post("/apisix/admin/schema/validate/routes", json={"uri": 1})
    assert resp.status == 400
    resp = await admin.put("/apisix/admin/routes/1", json=route)
    assert resp.status == 405 and await resp.json() == {"error_msg": "standalone mode"}
    resp = await admin.put("/apisix/admin/plugins/reload")
    assert resp.status == 405
