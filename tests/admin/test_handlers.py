"""The admin dispatcher (admin/handlers.py): ``ttl`` (which llmgate does not enforce), X-API-VERSION
on refusals, and what reaches it from the socket."""

from __future__ import annotations

import asyncio
import logging

import aiohttp
import pytest
from aiohttp import web

from llmgate.admin.auth import AdminKeys
from llmgate.app import build_admin_app
from llmgate.store import Store
from tests.support import ADMIN_KEY, VIEWER_KEY

ROUTE = {"uri": "/t", "upstream": {"nodes": {"127.0.0.1:1980": 1}}}


@pytest.mark.parametrize("method", ["put", "post", "patch"])
async def test_a_ttl_that_is_no_number_is_refused_as_apisix_does(admin, method) -> None:  # type: ignore[no-untyped-def]
    path = "/apisix/admin/routes" if method == "post" else "/apisix/admin/routes/1"
    resp = await getattr(admin, method)(f"{path}?ttl=abc", json=ROUTE)
    assert resp.status == 400
    assert await resp.json() == {"error_msg": "invalid argument ttl: should be a number"}


@pytest.mark.parametrize("method", ["put", "post", "patch"])
async def test_a_ttl_is_refused_rather_than_ignored(admin, method) -> None:  # type: ignore[no-untyped-def]
    # APISIX lets the resource expire after ttl seconds; llmgate would keep it for good.
    resp = await admin.put("/apisix/admin/routes/1", json=ROUTE)
    assert resp.status == 201
    path = "/apisix/admin/routes" if method == "post" else "/apisix/admin/routes/1"
    resp = await getattr(admin, method)(f"{path}?ttl=60", json={**ROUTE, "uri": "/u"})
    assert resp.status == 400
    assert (await resp.json())["error_msg"].startswith("ttl is not supported")
    resp = await admin.get("/apisix/admin/routes")
    assert [item["value"]["uri"] for item in (await resp.json())["list"]] == ["/t"]


async def test_reads_and_deletes_ignore_ttl(admin) -> None:  # type: ignore[no-untyped-def]
    # APISIX checks that ttl is a number on every method, and uses it on writes only.
    resp = await admin.get("/apisix/admin/routes?ttl=60")
    assert resp.status == 200
    resp = await admin.get("/apisix/admin/routes?ttl=x")
    assert resp.status == 400


async def test_a_resources_refusals_carry_the_api_version(admin) -> None:  # type: ignore[no-untyped-def]
    # APISIX sets X-API-VERSION on whatever a resource answers: 404 Key not found, 400 schema
    # errors and 405 unsupported methods too; not on what it refuses before (resource type).
    for method, path, body, status in [
        ("get", "routes/nope", None, 404),
        ("delete", "routes/nope", None, 404),
        ("put", "routes/1", {"uri": 1}, 400),
        ("post", "consumers", {"username": "a"}, 405),
        ("get", "routes", None, 200),
    ]:
        resp = await getattr(admin, method)(f"/apisix/admin/{path}", json=body)
        assert resp.status == status, (method, path)
        assert resp.headers.get("X-API-VERSION") == "v3", (method, path)
    resp = await admin.get("/apisix/admin/nope")
    assert resp.status == 404
    assert "X-API-VERSION" not in resp.headers
    resp = await admin.put("/apisix/admin/routes/1", data=b"{")
    assert resp.status == 400
    assert "X-API-VERSION" not in resp.headers


async def test_a_client_gone_mid_body_is_not_a_store_outage(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    """A client that hangs up before its body is whole was reported as the store going away
    ("the store is unavailable: Connection lost"): /readyz said not ready until a probe."""
    # As ``llmgate serve`` runs it: a handler runs to its end when its client leaves (the
    # test client's server cancels it, which hides this).
    runner = web.AppRunner(build_admin_app(store, AdminKeys(ADMIN_KEY, VIEWER_KEY)))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        with caplog.at_level(logging.WARNING, logger="llmgate.store"):
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(
                b"PUT /apisix/admin/routes/1 HTTP/1.1\r\nHost: x\r\nX-API-KEY: "
                + ADMIN_KEY.encode()
                + b'\r\nContent-Length: 100\r\n\r\n{"uri": '
            )
            await writer.drain()
            await asyncio.sleep(0.1)
            writer.close()
            await reader.read()
            await asyncio.sleep(0.1)
            async with (
                aiohttp.ClientSession(f"http://{host}:{port}") as client,
                client.get("/readyz") as resp,
            ):
                assert resp.status == 200, await resp.text()
                assert (await resp.json())["store"]["state"] == "ok"
        assert "unavailable" not in caplog.text
    finally:
        await runner.cleanup()


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", ""),
        ("post", ""),
        ("delete", ""),
        ("put", "/plugins/limit-count"),
        ("post", "/plugins/list"),
        ("put", "/schema/route"),
        ("get", "/schema/validate/routes"),
        ("delete", "/openapi.json"),
        ("post", "/usage"),
    ],
)
async def test_a_method_an_admin_path_does_not_take_is_a_json_404(admin, method, path) -> None:  # type: ignore[no-untyped-def]
    """As APISIX: ``/apisix/admin`` itself answers HEAD only, and the plugin, schema (and
    llmgate's own) endpoints their methods only; anything else is 404 ``not found``, as JSON
    (aiohttp answered ``/apisix/admin`` with a plain-text 405; the others said "Unsupported
    resource type")."""
    resp = await getattr(admin, method)(f"/apisix/admin{path}")
    assert resp.status == 404
    assert await resp.json() == {"error_msg": "not found"}
    assert (await admin.head("/apisix/admin")).status == 200


async def test_a_whole_number_written_with_a_decimal_point_is_that_integer(admin) -> None:  # type: ignore[no-untyped-def]
    """APISIX decodes JSON with cjson (one Lua number type): ``2.0`` passes an integer schema
    and is stored and returned as ``2``.  ``1.5`` is still no integer."""
    body = {
        **ROUTE,
        "priority": 2.0,
        "plugins": {"limit-count": {"count": 5.0, "time_window": 60.0}},
    }
    resp = await admin.put("/apisix/admin/routes/1", json=body)
    assert resp.status == 201, await resp.text()
    value = (await resp.json())["value"]
    assert value["priority"] == 2 and isinstance(value["priority"], int)
    assert value["plugins"]["limit-count"] == {"count": 5, "time_window": 60}
    resp = await admin.put("/apisix/admin/routes/2", json={**ROUTE, "priority": 1.5})
    assert resp.status == 400
