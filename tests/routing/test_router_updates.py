"""``Router.updated``: changing a few entries matches exactly as building the router afresh."""

from __future__ import annotations

import random

from llmgate.routing import RouteEntry, Router
from tests.routing.test_matcher import entry, matched_id

ALPHABET = "ab/"


def _uri(rng: random.Random) -> str:
    body = "/" + "".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 5)))
    return body + "*" if rng.random() < 0.5 else body


def _entry(rng: random.Random, id: str) -> RouteEntry[str]:
    uris = tuple(_uri(rng) for _ in range(rng.randint(1, 3)))
    if rng.random() < 0.05:
        uris = ("*",)
    methods = rng.choice([None, ("GET",), ("POST",)])
    hosts = rng.choice([None, None, ("a.test",), ("*.test",)])
    return entry(id, *uris, methods=methods, hosts=hosts, priority=rng.randint(0, 2))


def _paths(rng: random.Random) -> list[str]:
    paths = ["", "/", "/a", "/ab", "/a/", "/ab/b", "/b/a/", "/bb", "/aaa/b"]
    paths += [
        "/" + "".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 7))) for _ in range(40)
    ]
    return paths


def _same(one: Router[str], other: Router[str], paths: list[str]) -> None:
    for path in paths:
        for method in ("GET", "POST"):
            for host in (None, "a.test", "b.test"):
                assert matched_id(one, method, host, path) == matched_id(
                    other, method, host, path
                ), (
                    path,
                    method,
                    host,
                )


def test_updates_match_as_a_fresh_build() -> None:
    rng = random.Random(1234)
    for _round in range(60):
        entries = [_entry(rng, f"r{i}") for i in range(rng.randint(0, 40))]
        router = Router(entries)
        next_id = len(entries)
        for _step in range(4):
            changed: set[str] = set()
            for _ in range(rng.randint(1, 4)):
                action = rng.random()
                if entries and action < 0.35:  # replace one in place
                    index = rng.randrange(len(entries))
                    entries[index] = _entry(rng, entries[index].id)
                    changed.add(entries[index].id)
                elif entries and action < 0.6:  # delete one
                    gone = entries.pop(rng.randrange(len(entries)))
                    changed.add(gone.id)
                else:  # add one at the end
                    entries.append(_entry(rng, f"r{next_id}"))
                    changed.add(f"r{next_id}")
                    next_id += 1
            router = router.updated(entries, changed)
            assert [e.id for e in router.entries] == [e.id for e in entries]
            _same(router, Router(entries), _paths(rng))


def test_an_update_shares_what_it_did_not_touch() -> None:
    entries = [entry(f"r{i}", f"/r{i}/*", f"/x{i}") for i in range(2000)]
    router = Router(entries)
    entries[5] = entry("r5", "/r5/*", "/moved")
    updated = router.updated(entries, {"r5"})
    assert matched_id(updated, "GET", None, "/moved") == "r5"
    assert matched_id(updated, "GET", None, "/x5") is None
    assert matched_id(updated, "GET", None, "/r5/y") == "r5"
    assert matched_id(updated, "GET", None, "/x7") == "r7"
    assert updated._root.edges["/"][2] is not router._root.edges["/"][2]  # the path was copied
    shared = [k for k, v in updated._exact.items() if router._exact.get(k) is v]
    assert len(shared) >= 1998
