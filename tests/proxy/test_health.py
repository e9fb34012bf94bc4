"""The health checker: lua-resty-healthcheck's counting, its probing task, and how an upstream
pool routes around unhealthy nodes."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from llmgate.proxy.health import HealthChecker, Target
from llmgate.proxy.probe import Outcome, Prober
from llmgate.proxy.upstream import PoolRegistry, UpstreamPool
from llmgate.schemas.checks import Checks
from llmgate.schemas.upstream import UpstreamSpec


class ScriptedProber(Prober):
    """Answers probes from a per-port outcome the test changes."""

    def __init__(self, checks: Checks) -> None:
        super().__init__(checks.active)
        self.outcomes: dict[int, Outcome] = {}
        self.calls: list[tuple[int, float]] = []

    async def probe(self, host: str, port: int, host_header: str) -> Outcome:
        self.calls.append((port, time.monotonic()))
        return self.outcomes.get(port, ("status", 200))


def checker(conf: dict[str, Any], nodes: int = 2) -> HealthChecker:
    checks = Checks.model_validate(conf)
    targets = [Target("127.0.0.1", 8000 + i, "up") for i in range(nodes)]
    return HealthChecker("/apisix/upstreams/1", targets, checks, Prober(checks.active))


def test_passive_failures_of_each_kind_count_against_their_own_threshold() -> None:
    health = checker({"active": {}, "passive": {"unhealthy": {"tcp_failures": 2, "timeouts": 3}}})
    health.report_tcp_failure(0)
    assert health.targets[0].state == "mostly_healthy"
    assert health.down == frozenset()  # mostly healthy still gets traffic
    health.report_timeout(0)
    health.report_timeout(0)
    assert health.down == frozenset()
    health.report_tcp_failure(0)
    assert health.down == {0}
    assert health.targets[1].state == "healthy"


def test_a_success_resets_the_failures() -> None:
    health = checker({"active": {}, "passive": {"unhealthy": {"http_statuses": [500]}}})
    for _ in range(4):
        health.report_status(0, 500)
    health.report_status(0, 200)
    for _ in range(4):
        health.report_status(0, 500)
    assert health.down == frozenset()  # never 5 in a row
    health.report_status(0, 500)
    assert health.down == {0}


def test_statuses_in_neither_list_are_ignored() -> None:
    health = checker({"active": {}, "passive": {"unhealthy": {"http_failures": 1}}})
    health.report_status(0, 404)  # passive unhealthy statuses: 429, 500, 503
    assert health.targets[0].state == "healthy"
    health.report_status(0, 503)
    assert health.down == {0}


def test_traffic_brings_a_node_back_after_healthy_successes() -> None:
    health = checker({"active": {}, "passive": {"unhealthy": {"http_failures": 1}}})
    health.report_status(0, 500)
    assert health.down == {0}
    for _ in range(4):
        health.report_status(0, 200)
    assert health.targets[0].state == "mostly_unhealthy"
    assert health.down == {0}
    health.report_status(0, 200)
    assert health.down == frozenset()


def test_zero_turns_a_kind_of_report_off() -> None:
    health = checker(
        {
            "active": {},
            "passive": {
                "healthy": {"successes": 0},
                "unhealthy": {"timeouts": 0, "tcp_failures": 1},
            },
        }
    )
    for _ in range(50):
        health.report_timeout(0)
    assert health.down == frozenset()
    health.report_tcp_failure(0)
    for _ in range(50):
        health.report_status(0, 200)  # traffic never brings it back: only probes do
    assert health.down == {0}


def test_without_passive_traffic_is_not_counted() -> None:
    health = checker({"active": {}})
    for _ in range(50):
        health.report_tcp_failure(0)
        health.report_status(0, 500)
    assert health.down == frozenset()


def test_the_listener_hears_every_transition_and_the_stop() -> None:
    heard: list[tuple[str, str, int, bool | None]] = []
    health = checker({"active": {}, "passive": {"unhealthy": {"tcp_failures": 1}}})
    health.listener = lambda *args: heard.append(args)
    health.start()  # no running loop: tells, does not probe
    health.report_tcp_failure(1)
    assert heard == [
        ("/apisix/upstreams/1", "127.0.0.1", 8000, True),
        ("/apisix/upstreams/1", "127.0.0.1", 8001, True),
        ("/apisix/upstreams/1", "127.0.0.1", 8001, False),
    ]
    asyncio.run(health.stop())
    assert heard[-2:] == [
        ("/apisix/upstreams/1", "127.0.0.1", 8000, None),
        ("/apisix/upstreams/1", "127.0.0.1", 8001, None),
    ]


async def test_probes_take_a_node_out_within_two_intervals_and_bring_it_back() -> None:
    checks = Checks.model_validate(
        {
            "active": {
                "healthy": {"interval": 1, "successes": 1},
                "unhealthy": {"interval": 1, "http_failures": 1},
            }
        }
    )
    prober = ScriptedProber(checks)
    targets = [Target("127.0.0.1", 8000, "up"), Target("127.0.0.1", 8001, "up")]
    health = HealthChecker("/apisix/upstreams/1", targets, checks, prober)
    prober.outcomes[8001] = ("status", 500)
    began = time.monotonic()
    health.start()
    try:
        while health.down != {1}:
            assert time.monotonic() - began < 2.5, "not taken out within two intervals"
            await asyncio.sleep(0.05)
        prober.outcomes[8001] = ("status", 200)
        while health.down:
            assert time.monotonic() - began < 5, "never came back"
            await asyncio.sleep(0.05)
    finally:
        await health.stop()
    # One probe per node per interval, not one per request or per snapshot.
    per_node = [sum(1 for port, _ in prober.calls if port == p) for p in (8000, 8001)]
    elapsed = time.monotonic() - began
    assert all(calls <= elapsed + 1 for calls in per_node), (per_node, elapsed)


async def test_probes_run_concurrently_up_to_concurrency() -> None:
    checks = Checks.model_validate({"active": {"concurrency": 2, "timeout": 1}})
    running = 0
    most = 0

    class Slow(Prober):
        async def probe(self, host: str, port: int, host_header: str) -> Outcome:
            nonlocal running, most
            running += 1
            most = max(most, running)
            await asyncio.sleep(0.3)
            running -= 1
            return "status", 200

    targets = [Target("127.0.0.1", 8000 + i, "up") for i in range(6)]
    health = HealthChecker("u", targets, checks, Slow(checks.active))
    health.start()
    await asyncio.sleep(1.8)
    await health.stop()
    assert most == 2


def pool(conf: dict[str, Any]) -> UpstreamPool:
    return UpstreamPool(UpstreamSpec.model_validate(conf), "/apisix/upstreams/1")


def test_unhealthy_nodes_are_excluded_unless_all_are() -> None:
    upstream = pool(
        {
            "nodes": {"127.0.0.1:8000": 1, "127.0.0.1:8001": 1, "127.0.0.1:8002": 1},
            "checks": {"active": {}, "passive": {"unhealthy": {"tcp_failures": 1}}},
        }
    )
    assert upstream.checker is not None
    upstream.checker.report_tcp_failure(1)
    assert upstream._excluded(set()) == {1}
    picks = {upstream.balancer.pick(None, upstream._excluded(set())) for _ in range(20)}
    assert picks == {0, 2}
    assert upstream._excluded({0}) == {0, 1}
    assert upstream._excluded({0, 2}) is None  # the healthy ones are tried: no more retries
    upstream.checker.report_tcp_failure(0)
    upstream.checker.report_tcp_failure(2)
    assert upstream._excluded(set()) == frozenset()  # all unhealthy: use them all


def test_a_lone_node_is_tried_again() -> None:
    upstream = pool({"nodes": {"127.0.0.1:8000": 1}, "retries": 2})
    assert upstream._excluded({0}) == frozenset()


def test_probe_targets_use_the_active_host_and_port() -> None:
    upstream = pool(
        {
            "nodes": [{"host": "10.0.0.1", "port": 80, "weight": 1}],
            "pass_host": "rewrite",
            "upstream_host": "api.example",
            "checks": {"active": {"port": 9000}},
        }
    )
    assert upstream.checker is not None
    target = upstream.checker.targets[0]
    assert (target.host, target.port, target.host_header) == ("10.0.0.1", 9000, "api.example")
    with_host = pool(
        {"nodes": {"10.0.0.1:80": 1}, "checks": {"active": {"host": "health.example"}}}
    )
    assert with_host.checker is not None
    assert with_host.checker.targets[0].host_header == "health.example"


async def test_a_checker_survives_reloads_while_its_config_holds() -> None:
    registry = PoolRegistry()
    spec = UpstreamSpec.model_validate(
        {"nodes": {"127.0.0.1:8000": 1}, "checks": {"active": {"healthy": {"interval": 30}}}}
    )
    first = registry.get(spec, "k", "/apisix/upstreams/1")
    again = registry.get(spec, "k", "/apisix/upstreams/1")
    other = registry.get(spec, "k", "/apisix/upstreams/2")  # same config, another upstream
    assert first is again
    assert first.checker is not None and other.checker is not None
    assert first.checker is not other.checker
    task = first.checker._task
    assert task is not None and not task.done()
    await registry.retire({"k@/apisix/upstreams/1"})
    assert not task.done()
    assert other.checker._task is None  # stopped with its pool
    await registry.close()
    assert task.done()
