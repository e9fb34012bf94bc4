"""limit-count ``group``: one configuration per group across everything stored (APISIX's
"group conf mismatched"), on both stores."""

from __future__ import annotations

from typing import Any

import pytest

UPSTREAM = {"type": "roundrobin", "nodes": {"127.0.0.1:1980": 1}}
GROUP = {"count": 2, "time_window": 60, "group": "g"}
MISMATCH = "failed to check the configuration of plugin limit-count err: group conf mismatched"


def limited(conf: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"plugins": {"limit-count": conf}, **extra}


def route(conf: dict[str, Any], uri: str = "/a") -> dict[str, Any]:
    return limited(conf, uri=uri, upstream=UPSTREAM)


async def put(admin, path: str, body: Any) -> tuple[int, Any]:  # type: ignore[no-untyped-def]
    resp = await admin.put(f"/apisix/admin/{path}", json=body)
    return resp.status, await resp.json()


# Where a limit-count can sit, with a body carrying it.
HOLDERS = [
    pytest.param("routes/9", lambda conf: route(conf, "/z"), id="route"),
    pytest.param("services/9", lambda conf: limited(conf, upstream=UPSTREAM), id="service"),
    pytest.param("plugin_configs/9", limited, id="plugin_config"),
    pytest.param("consumers", lambda conf: limited(conf, username="jack"), id="consumer"),
    pytest.param("consumer_groups/9", limited, id="consumer_group"),
    pytest.param("global_rules/9", limited, id="global_rule"),
]


@pytest.mark.parametrize(("path", "body"), HOLDERS)
async def test_a_group_has_one_conf_wherever_it_is_written(admin, path, body) -> None:  # type: ignore[no-untyped-def]
    assert (await put(admin, "routes/1", route(GROUP)))[0] == 201
    status, answer = await put(admin, path, body({**GROUP, "count": 3}))
    assert status == 400
    assert answer["error_msg"].startswith(MISMATCH) or (
        "invalid plugins configuration: " + MISMATCH in answer["error_msg"]
    )
    assert "route [1]" in answer["error_msg"]
    # The same conf (defaults written out or not) is welcome.
    status, _ = await put(admin, path, body({**GROUP, "key": "remote_addr", "policy": "local"}))
    assert status == 201


@pytest.mark.parametrize(("path", "body"), HOLDERS)
async def test_a_stored_holder_guards_its_group_against_routes(admin, path, body) -> None:  # type: ignore[no-untyped-def]
    assert (await put(admin, path, body(GROUP)))[0] == 201
    status, answer = await put(admin, "routes/1", route({**GROUP, "time_window": 10}))
    assert status == 400 and MISMATCH in answer["error_msg"]


@pytest.mark.parametrize(
    "changed",
    [
        {"rejected_code": 429},
        {"key": "http_x"},
        {"key_type": "constant"},
        {"show_limit_quota_header": False},
        {"window_type": "sliding"},
        {"rejected_msg": "no"},
        {"allow_degradation": True},
    ],
)
async def test_every_field_counts(admin, changed) -> None:  # type: ignore[no-untyped-def]
    await put(admin, "routes/1", route(GROUP))
    status, answer = await put(admin, "routes/2", route({**GROUP, **changed}, "/b"))
    assert status == 400 and MISMATCH in answer["error_msg"], changed


async def test_other_groups_and_ungrouped_are_free(admin) -> None:  # type: ignore[no-untyped-def]
    await put(admin, "routes/1", route(GROUP))
    other_group = {**GROUP, "group": "h", "count": 9}
    assert (await put(admin, "routes/2", route(other_group, "/b")))[0] == 201
    ungrouped = {"count": 9, "time_window": 1}
    assert (await put(admin, "routes/3", route(ungrouped, "/c")))[0] == 201


async def test_the_only_user_may_change_its_groups_conf(admin) -> None:  # type: ignore[no-untyped-def]
    """APISIX remembers a group's first conf in each process for an hour, even after the
    resource is gone; llmgate compares with what is stored (docs/compatibility.md)."""
    await put(admin, "routes/1", route(GROUP))
    assert (await put(admin, "routes/1", route({**GROUP, "count": 5})))[0] == 200
    await put(admin, "routes/2", route({**GROUP, "count": 5}, "/b"))
    resp = await admin.delete("/apisix/admin/routes/2")
    assert resp.status == 200
    status, answer = await put(admin, "routes/1", route({**GROUP, "count": 7}))
    assert status == 200, answer


async def test_patch_is_checked_too(admin) -> None:  # type: ignore[no-untyped-def]
    await put(admin, "routes/1", route(GROUP))
    await put(admin, "routes/2", route(GROUP, "/b"))
    resp = await admin.patch(
        "/apisix/admin/routes/2", json={"plugins": {"limit-count": {"count": 3}}}
    )
    assert resp.status == 400 and MISMATCH in (await resp.json())["error_msg"]
    resp = await admin.patch("/apisix/admin/routes/2/plugins/limit-count/count", json=3)
    assert resp.status == 400


async def test_a_rejected_write_changes_nothing(admin) -> None:  # type: ignore[no-untyped-def]
    await put(admin, "routes/1", route(GROUP))
    await put(admin, "routes/2", route({**GROUP, "count": 3}, "/b"))
    resp = await admin.get("/apisix/admin/routes")
    assert (await resp.json())["total"] == 1
