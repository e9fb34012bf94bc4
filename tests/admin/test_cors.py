"""Admin API CORS as APISIX's ``enable_admin_cors`` (apisix/init.lua ``cors_admin``): on by
default, preflights answered without a key, the origin never reflected."""

from __future__ import annotations

import pytest

from llmgate.admin.auth import AdminKeys
from llmgate.app import build_admin_app
from llmgate.settings import load_settings
from tests.support import ADMIN_KEY, VIEWER_KEY

EVIL = "https://evil.example"
PREFLIGHT = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "POST, GET, PUT, OPTIONS, DELETE, PATCH",
    "Access-Control-Max-Age": "3600",
    "Access-Control-Allow-Headers": "*",
    "Access-Control-Allow-Credentials": "true",
}
ANSWER = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Credentials": "true",
    "Access-Control-Expose-Headers": "*",
    "Access-Control-Max-Age": "3600",
}


@pytest.fixture
async def anonymous(aiohttp_client, sqlite_store):  # type: ignore[no-untyped-def]
    return await aiohttp_client(build_admin_app(sqlite_store, AdminKeys(ADMIN_KEY, VIEWER_KEY)))


@pytest.mark.parametrize(
    "path", ["/apisix/admin/routes", "/apisix/admin/routes/1", "/apisix/admin/nothing/x"]
)
async def test_preflight_needs_no_key(anonymous, path: str) -> None:  # type: ignore[no-untyped-def]
    resp = await anonymous.options(
        path,
        headers={
            "Origin": EVIL,
            "Access-Control-Request-Method": "PUT",
            "Access-Control-Request-Headers": "x-api-key, content-type",
        },
    )
    assert resp.status == 200
    for name, value in PREFLIGHT.items():
        assert resp.headers[name] == value
    assert await resp.read() == b""


@pytest.mark.parametrize(
    ("key", "status"), [(ADMIN_KEY, 200), (VIEWER_KEY, 200), ("wrong-key", 401), (None, 401)]
)
async def test_every_admin_answer_carries_the_headers(anonymous, key, status) -> None:  # type: ignore[no-untyped-def]
    headers = {"Origin": EVIL, **({"X-API-KEY": key} if key else {})}
    resp = await anonymous.get("/apisix/admin/routes", headers=headers)
    assert resp.status == status
    for name, value in ANSWER.items():
        assert resp.headers[name] == value  # "*": never the caller's origin


async def test_errors_and_writes_carry_them_too(anonymous) -> None:  # type: ignore[no-untyped-def]
    key = {"X-API-KEY": ADMIN_KEY, "Origin": EVIL}
    missing = await anonymous.get("/apisix/admin/routes/none", headers=key)
    assert missing.status == 404 and missing.headers["Access-Control-Allow-Origin"] == "*"
    write = await anonymous.put(
        "/apisix/admin/upstreams/u1", json={"nodes": {"127.0.0.1:1": 1}}, headers=key
    )
    assert write.status == 201 and write.headers["Access-Control-Expose-Headers"] == "*"


async def test_other_paths_are_left_alone(anonymous) -> None:  # type: ignore[no-untyped-def]
    resp = await anonymous.get("/healthz", headers={"Origin": EVIL})
    assert "Access-Control-Allow-Origin" not in resp.headers
    resp = await anonymous.options("/apisix/administrator", headers={"Origin": EVIL})
    assert resp.status == 401 and "Access-Control-Allow-Origin" not in resp.headers


async def test_off_as_apisix_with_enable_admin_cors_false(aiohttp_client, sqlite_store) -> None:  # type: ignore[no-untyped-def]
    app = build_admin_app(sqlite_store, AdminKeys(ADMIN_KEY), cors=False)
    client = await aiohttp_client(app)
    resp = await client.options("/apisix/admin/routes", headers={"Origin": EVIL})
    assert resp.status == 401
    resp = await client.get("/apisix/admin/routes", headers={"X-API-KEY": ADMIN_KEY})
    assert resp.status == 200 and "Access-Control-Allow-Origin" not in resp.headers


def test_setting() -> None:
    assert load_settings({}, {}).admin_cors is True
    assert load_settings({"admin_cors": "off"}, {}).admin_cors is False
    assert load_settings({}, {"LLMGATE_ADMIN_CORS": "false"}).admin_cors is False
