"""The admin dispatcher: ``ttl`` (which llmgate does not enforce), X-API-VERSION on refusals."""

from __future__ import annotations

import pytest

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
