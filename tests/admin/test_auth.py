"""Admin API keys: header or query, admin and viewer roles, APISIX's 401 bodies."""

from __future__ import annotations

import asyncio
import json

import pytest

from llmgate.admin.auth import AdminKeys
from llmgate.app import build_admin_app
from tests.support import ADMIN_KEY, VIEWER_KEY


@pytest.fixture
async def anonymous(aiohttp_client, sqlite_store):  # type: ignore[no-untyped-def]
    return await aiohttp_client(build_admin_app(sqlite_store, AdminKeys(ADMIN_KEY, VIEWER_KEY)))


@pytest.mark.parametrize(
    ("headers", "query", "status", "description"),
    [
        ({}, "", 401, "missing apikey"),
        ({"X-API-KEY": "nope"}, "", 401, "wrong apikey"),
        ({"X-API-KEY": ADMIN_KEY[:-1]}, "", 401, "wrong apikey"),
        ({}, "?api_key=nope", 401, "wrong apikey"),
        ({"X-API-KEY": ADMIN_KEY}, "", 200, None),
        ({}, f"?api_key={ADMIN_KEY}", 200, None),
        ({"X-API-KEY": VIEWER_KEY}, "", 200, None),
    ],
)
async def test_get_needs_a_key(anonymous, headers, query, status, description) -> None:  # type: ignore[no-untyped-def]
    resp = await anonymous.get(f"/apisix/admin/routes{query}", headers=headers)
    assert resp.status == status
    body = await resp.json()
    if description:
        assert body == {"error_msg": "failed to check token", "description": description}
    else:
        assert body == {"list": [], "total": 0}


async def test_viewer_may_only_read(anonymous) -> None:  # type: ignore[no-untyped-def]
    body = {"uri": "/a", "upstream": {"nodes": {"127.0.0.1:1": 1}}}
    resp = await anonymous.put(
        "/apisix/admin/routes/1", json=body, headers={"X-API-KEY": VIEWER_KEY}
    )
    assert resp.status == 401
    assert (await resp.json())["description"] == "invalid method for role viewer"
    resp = await anonymous.put(
        "/apisix/admin/routes/1", json=body, headers={"X-API-KEY": ADMIN_KEY}
    )
    assert resp.status == 201
    resp = await anonymous.delete("/apisix/admin/routes/1", headers={"X-API-KEY": VIEWER_KEY})
    assert resp.status == 401


async def test_plugin_endpoints_need_a_key_too(anonymous) -> None:  # type: ignore[no-untyped-def]
    resp = await anonymous.get("/apisix/admin/plugins/list")
    assert resp.status == 401


def test_role_of_compares_every_key() -> None:
    keys = AdminKeys("admin-key-1", "viewer-key-1")
    assert keys.role_of("admin-key-1") == "admin"
    assert keys.role_of("viewer-key-1") == "viewer"
    assert keys.role_of("admin-key-") is None
    assert AdminKeys("admin-key-1").role_of("viewer-key-1") is None


async def test_head_on_the_admin_root_needs_no_key(anonymous) -> None:  # type: ignore[no-untyped-def]
    # APISIX answers ``HEAD /apisix/admin`` with an empty 200 before any key check: a
    # liveness probe of the admin listener.
    resp = await anonymous.head("/apisix/admin")
    assert resp.status == 200
    assert await resp.read() == b""
    resp = await anonymous.get("/apisix/admin")
    assert resp.status == 401


async def test_a_key_that_is_not_utf8_is_a_401(anonymous) -> None:  # type: ignore[no-untyped-def]
    """aiohttp reads header bytes that are not UTF-8 as surrogates, which hashing the key
    could not encode: a 500."""
    reader, writer = await asyncio.open_connection(anonymous.server.host, anonymous.server.port)
    writer.write(
        b"GET /apisix/admin/routes HTTP/1.1\r\nHost: x\r\nX-API-KEY: \xff\xfe"
        + ADMIN_KEY.encode()
        + b"\r\nConnection: close\r\n\r\n"
    )
    head, _, body = (await reader.read()).partition(b"\r\n\r\n")
    writer.close()
    assert head.startswith(b"HTTP/1.1 401 "), head
    assert json.loads(body)["description"] == "wrong apikey"


def test_role_of_a_key_with_surrogates() -> None:
    keys = AdminKeys(ADMIN_KEY, VIEWER_KEY)
    assert keys.role_of("\udcff\ud800" + ADMIN_KEY) is None
