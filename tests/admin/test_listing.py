"""List queries: pagination and the name / label / uri / filter filters."""

from __future__ import annotations

import time
from urllib.parse import quote

import pytest

UPSTREAM = {"nodes": {"127.0.0.1:1": 1}}


@pytest.fixture
async def routes(admin):  # type: ignore[no-untyped-def]
    for i in range(1, 26):
        body = {
            "uri": f"/r{i}" if i % 2 else None,
            "uris": None if i % 2 else [f"/many/{i}", "/x"],
            "name": f"route-{i}" if i <= 20 else f"other-{i}",
            "labels": {"team": "a"} if i <= 5 else {"env": "prod"},
            "upstream": UPSTREAM,
        }
        body = {k: v for k, v in body.items() if v is not None}
        resp = await admin.put(f"/apisix/admin/routes/{i}", json=body)
        assert resp.status == 201
    return admin


async def listing(admin, query: str):  # type: ignore[no-untyped-def]
    resp = await admin.get(f"/apisix/admin/routes?{query}")
    return resp.status, await resp.json()


async def test_pages(routes) -> None:  # type: ignore[no-untyped-def]
    status, body = await listing(routes, "page=3&page_size=10")
    assert status == 200 and body["total"] == 25
    assert [item["value"]["id"] for item in body["list"]] == [str(i) for i in range(21, 26)]
    _, body = await listing(routes, "page=1&page_size=10")
    assert [item["value"]["id"] for item in body["list"]] == [str(i) for i in range(1, 11)]
    _, body = await listing(routes, "page=9&page_size=10")
    assert body["list"] == [] and body["total"] == 25
    _, body = await listing(routes, "page_size=10")  # paging needs both arguments
    assert len(body["list"]) == 25


async def test_unpaged_lists_are_in_key_order_paged_in_creation_order(admin) -> None:  # type: ignore[no-untyped-def]
    # APISIX lists what an etcd range over the prefix returns: byte order of the keys; only a
    # paged list is sorted by createdIndex (apisix/admin/v3_adapter.lua).
    for route_id in ["2", "10", "1", "b", "B", "1a"]:
        resp = await admin.put(
            f"/apisix/admin/routes/{route_id}", json={"uri": "/x", "upstream": UPSTREAM}
        )
        assert resp.status == 201
    _, body = await listing(admin, "")
    assert [item["value"]["id"] for item in body["list"]] == ["1", "10", "1a", "2", "B", "b"]
    _, body = await listing(admin, "page=1&page_size=10")
    assert [item["value"]["id"] for item in body["list"]] == ["2", "10", "1", "b", "B", "1a"]


@pytest.mark.parametrize("size", ["9", "501", "0", "-10", "1e3"])
async def test_bad_page_size(routes, size: str) -> None:  # type: ignore[no-untyped-def]
    status, body = await listing(routes, f"page=1&page_size={size}")
    assert status == 400 and body == {"error_msg": "page_size must be between 10 and 500"}


WHOLE = sorted(range(1, 26), key=str)  # no paging: the whole list, in key order


# APISIX reads both with Lua's tonumber: one that is no number turns paging off (the whole
# list), a page below 1 is page 1.  A number that is not whole is a 400 (APISIX slices with
# it: docs/compatibility.md).
@pytest.mark.parametrize(
    ("query", "ids"),
    [
        ("page=abc&page_size=10", WHOLE),
        ("page=2&page_size=abc", WHOLE),
        ("page=&page_size=10", WHOLE),
        ("page=abc&page_size=5", WHOLE),  # no paging: page_size is not checked
        ("page=1_0&page_size=10", WHOLE),  # not a Lua number
        ("page=%2B-1&page_size=10", WHOLE),
        ("page=1.5&page_size=abc", WHOLE),
        ("page=%D9%A2&page_size=10", WHOLE),  # "٢": not ASCII digits
        ("page=0&page_size=10", list(range(1, 11))),
        ("page=-3&page_size=10", list(range(1, 11))),
        ("page=%202%20&page_size=10", list(range(11, 21))),  # Lua skips spaces
        ("page=2.0&page_size=1e1", list(range(11, 21))),
        ("page=0x2&page_size=0XA", list(range(11, 21))),
        ("page=%2B2&page_size=10", list(range(11, 21))),
        ("page=99999999999999999999&page_size=10", []),
    ],
)
async def test_page_arguments_as_apisix_reads_them(routes, query: str, ids: list[int]) -> None:  # type: ignore[no-untyped-def]
    status, body = await listing(routes, query)
    assert status == 200, body
    assert [int(item["value"]["id"]) for item in body["list"]] == ids
    assert body["total"] == 25


@pytest.mark.parametrize(
    "query",
    [
        "page=1.5&page_size=10",
        "page=1&page_size=10.5",
        "page=inf&page_size=10",
        "page=nan&page_size=10",
    ],
)
async def test_a_page_that_is_not_whole_is_refused(routes, query: str) -> None:  # type: ignore[no-untyped-def]
    status, body = await listing(routes, query)
    assert status == 400
    assert body["error_msg"].endswith("should be an integer")


async def test_filters(routes) -> None:  # type: ignore[no-untyped-def]
    _, body = await listing(routes, "name=other")
    assert body["total"] == 5
    _, body = await listing(routes, "label=team")
    assert sorted(int(i["value"]["id"]) for i in body["list"]) == [1, 2, 3, 4, 5]
    _, body = await listing(routes, "uri=/many/1")
    assert sorted(int(i["value"]["id"]) for i in body["list"]) == [10, 12, 14, 16, 18]
    _, body = await listing(routes, "name=route&label=team&page=1&page_size=10")
    assert body["total"] == 5
    status, body = await listing(routes, "name=(")
    assert status == 400


async def test_filter_by_field(admin) -> None:  # type: ignore[no-untyped-def]
    await admin.put("/apisix/admin/upstreams/1", json=UPSTREAM)
    await admin.put("/apisix/admin/routes/1", json={"uri": "/a", "upstream_id": "1"})
    await admin.put("/apisix/admin/routes/2", json={"uri": "/b", "upstream": UPSTREAM})
    _, body = await listing(admin, "filter=upstream_id%3D1")
    assert [i["value"]["id"] for i in body["list"]] == ["1"]


async def test_regex_filters_are_linear_time(admin) -> None:  # type: ignore[no-untyped-def]
    """The attacker's side (any key, the viewer's too): a filter that makes a backtracking
    engine take forever is answered at once; one that needs backtracking is a 400."""
    for i in range(10):
        body = {"uri": "/" + "a" * 60 + str(i), "name": "a" * 40 + "!", "upstream": UPSTREAM}
        assert (await admin.put(f"/apisix/admin/routes/{i}", json=body)).status == 201
    started = time.perf_counter()
    status, body = await listing(admin, "uri=" + quote("^(.*.*)*Z"))
    assert (status, body["total"]) == (200, 0)
    status, body = await listing(admin, "name=" + quote("^(a|aa)+$"))
    assert (status, body["total"]) == (200, 0)
    assert time.perf_counter() - started < 1.0  # Python's re: hours
    for pattern in (r"(a)\1", "(?=a)", "(", "x" * 1025):
        status, body = await listing(admin, "uri=" + quote(pattern))
        assert status == 400, pattern
        assert body["error_msg"].startswith("invalid uri filter: ")
