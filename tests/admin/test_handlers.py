"""The admin dispatcher's query arguments: ``ttl`` (which llmgate does not enforce)."""

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
