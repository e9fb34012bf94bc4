"""Where proxy-cache answers a HIT, against the access-phase limiters, on a real
``llmgate serve``.

As in APISIX: the memory strategy answers from proxy-cache's own access handler (priority
1085), before limit-count (1002) runs, so a HIT is neither counted nor refused; the disk
strategy only marks the request there and nginx's proxy_cache answers in the content phase,
after the whole access phase, so limit-count counts a disk HIT (its headers are on it) and
refuses one past the count with ``rejected_code``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.net import KeptAlive, LiveGateway, request_bytes

STATUS = "Apisix-Cache-Status"
REMAINING = "X-RateLimit-Remaining"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveGateway]:
    env = {"LLMGATE_CACHE_DIR": str(tmp_path_factory.mktemp("cache"))}
    with LiveGateway(tmp_path_factory.mktemp("gateway"), env=env) as live:
        yield live


def put_route(gateway: LiveGateway, route_id: str, uri: str, cache: dict[str, Any]) -> None:
    limit = {"count": 2, "time_window": 60, "rejected_code": 429, "key": "remote_addr"}
    gateway.put(
        f"routes/{route_id}",
        {
            "uri": uri,
            "plugins": {"proxy-cache": cache, "limit-count": limit},
            "upstream": gateway.upstream(),
        },
    )


def served(gateway: LiveGateway, path: str) -> int:
    return sum(1 for r in gateway.fake_requests() if r["raw_path"].startswith(path))


def test_a_disk_hit_is_counted_and_refused_by_limit_count(gateway: LiveGateway) -> None:
    put_route(gateway, "disk", "/phase/disk/*", {})
    # One keep-alive connection: each request is handled after the last one's log phase
    # (where the entry is stored).
    with KeptAlive(gateway.proxy_port) as session:
        answers = [session.request(request_bytes("GET", "/phase/disk/a")) for _ in range(3)]
    first, hit, refused = answers
    assert (first.status, first.header(STATUS), first.header(REMAINING)) == (200, "MISS", "1")
    assert (hit.status, hit.header(STATUS), hit.header(REMAINING)) == (200, "HIT", "0")
    assert hit.header("X-RateLimit-Limit") == "2"
    # The third is a HIT too, but limit-count refuses it first.
    assert refused.status == 429, refused
    assert refused.header(REMAINING) == "0"
    assert served(gateway, "/phase/disk/") == 1


def test_a_memory_hit_is_answered_before_limit_count(gateway: LiveGateway) -> None:
    put_route(gateway, "memory", "/phase/memory/*", {"cache_strategy": "memory"})
    with KeptAlive(gateway.proxy_port) as session:
        answers = [session.request(request_bytes("GET", "/phase/memory/a")) for _ in range(4)]
        miss = session.request(request_bytes("GET", "/phase/memory/b"))
    first, *hits = answers
    assert (first.status, first.header(STATUS), first.header(REMAINING)) == (200, "MISS", "1")
    for hit in hits:
        assert (hit.status, hit.header(STATUS), hit.header(REMAINING)) == (200, "HIT", None)
    # The HITs were not counted: the next MISS is the second request of the window.
    assert (miss.status, miss.header(STATUS), miss.header(REMAINING)) == (200, "MISS", "0")
    assert served(gateway, "/phase/memory/") == 2
