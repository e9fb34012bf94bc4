"""Micro-benchmark of the route matcher: prints ns per Router.match for 10, 100 and 1000 routes.

Run: .venv/bin/python bench/bench_router.py

The route table mixes what gateways carry: exact LLM endpoints, "/svc/*" prefixes, a few
method- and host-filtered routes and a "/*" catch-all.  Requests are a fixed mix of exact hits,
prefix hits, fall-throughs on method or host, and misses.
"""

from __future__ import annotations

import random
import time

from llmgate.routing import RouteEntry, Router

METHODS = (None, frozenset({"POST"}), frozenset({"GET", "HEAD"}))
HOSTS = (None, None, ("api.example.com",), ("*.tenant.example.com",))


def build(n: int) -> list[RouteEntry[int]]:
    rng = random.Random(n)
    entries: list[RouteEntry[int]] = [RouteEntry("catch-all", ("/*",), payload=-1)]
    for i in range(n - 1):
        kind = i % 3
        if kind == 0:
            uris: tuple[str, ...] = (f"/v1/svc{i}/chat/completions",)
        elif kind == 1:
            uris = (f"/svc{i}/*",)
        else:
            uris = (f"/api/v{i % 7}/team{i}/*", f"/legacy/team{i}")
        entries.append(
            RouteEntry(
                str(i),
                uris,
                methods=rng.choice(METHODS),
                hosts=rng.choice(HOSTS),
                priority=rng.choice((0, 0, 1)),
                payload=i,
            )
        )
    return entries


def requests(n: int) -> list[tuple[str, str | None, str]]:
    rng = random.Random(-n)
    out: list[tuple[str, str | None, str]] = []
    for _ in range(1000):
        i = rng.randrange(max(n - 1, 1))
        method = rng.choice(("GET", "POST", "POST"))
        host = rng.choice(("api.example.com:9080", "a.tenant.example.com", "other.org", None))
        path = rng.choice(
            (
                f"/v1/svc{i}/chat/completions",
                f"/svc{i}/models/gpt-4o",
                f"/api/v{i % 7}/team{i}/items",
                f"/legacy/team{i}",
                "/nowhere/at/all",
            )
        )
        out.append((method, host, path))
    return out


def ns_per_match(n: int, rounds: int = 200) -> float:
    router = Router(build(n))
    reqs = requests(n)
    match = router.match
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter_ns()
        for _ in range(rounds):
            for method, host, path in reqs:
                match(method, host, path)
        best = min(best, (time.perf_counter_ns() - start) / (rounds * len(reqs)))
    return best


def main() -> None:
    for n in (10, 100, 1000):
        start = time.perf_counter()
        Router(build(n))
        build_ms = (time.perf_counter() - start) * 1000
        print(f"{n:>5} routes: {ns_per_match(n):7.0f} ns/match  (build {build_ms:.1f} ms)")


if __name__ == "__main__":
    main()
