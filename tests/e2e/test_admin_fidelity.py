"""Admin API behaviours whose effect is on the data plane, against a real ``llmgate serve``:
limit-count groups, PATCH with an empty object, a consumer PUT carrying an ``id`` and an
http-logger ``uri`` given as ``$env://``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.net import LiveGateway

LOG_URI_ENV = "FIDELITY_LOG_URI"


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveGateway]:
    workdir = tmp_path_factory.mktemp("admin-fidelity")
    with LiveGateway(workdir, env={LOG_URI_ENV: "ftp://127.0.0.1:21/logs"}) as gateway:
        yield gateway


def route(live: LiveGateway, uri: str, plugins: dict[str, Any]) -> dict[str, Any]:
    return {"uri": uri, "plugins": plugins, "upstream": live.upstream()}


def test_a_limit_count_group_counts_once_for_every_route(live: LiveGateway) -> None:
    group = {"count": 3, "time_window": 60, "group": "shared", "rejected_code": 429}
    live.put("routes/g1", route(live, "/g1", {"limit-count": group}))
    live.put("routes/g2", route(live, "/g2", {"limit-count": group}))
    seen = []
    for path in ("/g1", "/g2", "/g1"):
        status, _, headers = live.get(path)
        seen.append((status, headers["X-RateLimit-Remaining"]))
    assert seen == [(200, "2"), (200, "1"), (200, "0")]
    # A third route may not count the group's requests in another way ...
    status, answer = live.admin(
        "PUT", "routes/g3", route(live, "/g3", {"limit-count": {**group, "count": 100}})
    )
    assert status == 400 and "group conf mismatched" in answer["error_msg"]
    assert live.get("/g3")[0] == 404
    # ... and rewriting a route with the group's conf keeps the group's count.
    live.put("routes/g2", route(live, "/g2", {"limit-count": group, "cors": {}}))
    assert live.get("/g2")[0] == 429
    assert live.get("/g1")[0] == 429


def test_patch_with_an_empty_plugins_object_clears_them(live: LiveGateway) -> None:
    live.put("routes/p1", route(live, "/p1", {"key-auth": {}}))
    assert live.get("/p1")[0] == 401
    status, answer = live.admin("PATCH", "routes/p1", {"plugins": {}})
    assert status == 200 and answer["value"]["plugins"] == {}
    assert live.get("/p1")[0] == 200


def test_a_consumer_is_its_username_whatever_id_its_body_carries(live: LiveGateway) -> None:
    live.put("routes/c1", route(live, "/c1", {"key-auth": {}}))
    status, answer = live.admin(
        "PUT",
        "consumers",
        {"username": "jack", "id": "other", "plugins": {"key-auth": {"key": "k1"}}},
    )
    assert status == 201 and answer["key"] == "/apisix/consumers/jack"
    assert answer["value"]["id"] == "other"  # stored as written, as APISIX does
    status, body, _ = live.get("/c1", {"apikey": "k1"})
    assert status == 200
    assert body["headers"]["x-consumer-username"] == "jack"


def test_an_http_logger_uri_from_the_environment_is_checked_when_written(
    live: LiveGateway,
) -> None:
    """The admin's process has the variable: its value is checked as a literal uri would be
    (llmgate posts logs over http and https only)."""
    logger = {"http-logger": {"uri": f"$env://{LOG_URI_ENV}"}}
    status, answer = live.admin("PUT", "routes/l1", route(live, "/l1", logger))
    assert status == 400, answer
    assert "uri" in answer["error_msg"] and "ftp://" not in answer["error_msg"]
    assert live.get("/l1")[0] == 404
