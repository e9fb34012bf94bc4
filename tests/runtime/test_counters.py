"""The ``Counters`` contract, on every backend: in-process, the node's counter service over a
real Unix socket, Redis, and Redis named as a one-node cluster.

Redis tests use the server at redis://127.0.0.1:6379/0 and fail, never skip, without it; each
test's keys are unique and deleted afterwards.
"""

from __future__ import annotations

import asyncio
import struct
import time
import uuid
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import TypeVar

import orjson
import pytest
import redis.asyncio as aioredis

from llmgate.runtime.counter_server import CounterServer, SharedCounters
from llmgate.runtime.counters import (
    Counters,
    CountersUnavailable,
    LocalCounters,
    leak,
    slide,
)
from llmgate.runtime.redis_counters import RedisCounters, RedisRegistry, RedisTarget
from tests.processes import free_port

T = TypeVar("T")

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
def key() -> str:
    return f"test-{uuid.uuid4().hex}"


@pytest.fixture
async def redis_cleanup(key: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(REDIS_URL)
    await client.ping()  # fails loudly when Redis is not there
    yield client
    await delete_keys(client, key)
    await client.aclose()


@pytest.fixture
def socket_path(tmp_path: Path) -> str:
    return str(tmp_path / "counters.sock")


async def delete_keys(client: aioredis.Redis, key: str) -> None:
    async for stale in client.scan_iter(match=f"llmgate:*{key}*"):
        await client.delete(stale)


@pytest.fixture(params=["local", "shared", "redis", "redis-cluster"])
async def counters(
    request: pytest.FixtureRequest, socket_path: str, key: str
) -> AsyncIterator[Counters]:
    backend: Counters
    server = client = None
    if request.param == "local":
        backend = LocalCounters()
    elif request.param == "shared":
        server = CounterServer(socket_path)
        await server.start()
        backend = SharedCounters(socket_path)
    else:
        client = aioredis.Redis.from_url(REDIS_URL)
        await client.ping()  # fails loudly when Redis is not there
        nodes = ("127.0.0.1:6379",) if request.param == "redis-cluster" else ()
        # 5 s per answer, not 1: a Redis shared with a loaded machine's other tests may be slow
        # to answer 100 concurrent calls, which is not what these tests are about.
        backend = RedisCounters(RedisTarget(cluster_nodes=nodes, timeout=5.0))
    yield backend
    await backend.close()
    if server is not None:
        await server.close()
    if client is not None:
        await delete_keys(client, key)
        await client.aclose()


async def timed(call: Awaitable[T]) -> tuple[T, float, float]:
    """The answer, and when the call started and ended: the store did its work in between."""
    started = time.monotonic()
    answer = await call
    return answer, started, time.monotonic()


async def test_fixed_window_counts_and_reports_time_left(counters: Counters, key: str) -> None:
    assert await counters.peek(key, 60) == (0, 60)
    count, left = await counters.incr(key, 60)
    assert count == 1 and 59 < left <= 60.001
    count, left = await counters.incr(key, 60, 4)
    assert count == 5 and 59 < left <= 60.001
    count, left = await counters.peek(key, 60)
    assert count == 5 and 59 < left <= 60.001
    other, _ = await counters.incr(key + "-other", 60)
    assert other == 1


async def test_a_window_ends_and_the_count_starts_again(counters: Counters, key: str) -> None:
    (first, _), first_start, first_end = await timed(counters.incr(key, 0.3))
    (second, _), second_start, second_end = await timed(counters.incr(key, 0.3))
    assert first == 1
    # On a loaded machine the second call may reach the store after the window has ended: then
    # it opens a new one.  The expected count follows the time that really passed.
    if second_end - first_start < 0.3:
        assert second == 2
    elif second_start - first_end > 0.3:
        assert second == 1
    await asyncio.sleep(0.35)
    assert (await counters.peek(key, 0.3))[0] == 0
    count, left = await counters.incr(key, 0.3)
    assert count == 1 and 0.2 < left <= 0.301


async def test_concurrent_increments_are_atomic(counters: Counters, key: str) -> None:
    results = await asyncio.gather(*(counters.incr(key, 60) for _ in range(200)))
    assert sorted(count for count, _ in results) == list(range(1, 201))


async def test_reservations_are_admitted_while_below_the_limit(
    counters: Counters, key: str
) -> None:
    assert await counters.reserve(key, 60, 40, 100) == (True, 40, pytest.approx(60, abs=0.5))
    admitted, count, _ = await counters.reserve(key, 60, 70, 100)
    assert admitted and count == 110  # below the limit when asked: one reservation overshoots
    admitted, count, left = await counters.reserve(key, 60, 1, 100)
    assert (admitted, count) == (False, 110) and 59 < left <= 60.001  # refused: nothing added
    assert (await counters.incr(key, 60, -70))[0] == 40  # settled for nothing
    assert (await counters.incr(key, 60, -500))[0] == 0  # never below 0
    assert (await counters.incr(key + "-gone", 60, -5)) == (0, 60)  # opens no window
    assert (await counters.peek(key + "-gone", 60))[0] == 0


async def test_concurrent_reservations_never_pass_the_limit_by_more_than_one(
    counters: Counters, key: str
) -> None:
    """As the attacker: 100 concurrent reservations of 30 against a limit of 100 -- four are
    admitted (0, 30, 60, 90 were below 100), whatever the interleaving."""
    results = await asyncio.gather(*(counters.reserve(key, 60, 30, 100) for _ in range(100)))
    assert sum(admitted for admitted, _, _ in results) == 4
    assert (await counters.peek(key, 60))[0] == 120


async def test_sliding_window_counts_only_accepted_requests(counters: Counters, key: str) -> None:
    # An hour-long window: a test straddling two windows is all but impossible.
    results = [await counters.sliding(key, 3, 3600) for _ in range(5)]
    assert [(accepted, remaining) for accepted, remaining, _ in results] == [
        (True, 2),
        (True, 1),
        (True, 0),
        (False, 0),
        (False, 0),
    ]
    assert all(0 < reset <= 3600 for _, _, reset in results)
    assert (await counters.sliding(key + "-other", 3, 3600))[0] is True


@pytest.mark.parametrize(
    ("current", "previous", "now", "expected"),
    [
        pytest.param(0, 0, 120.0, (True, 9, 60.0), id="fresh"),
        pytest.param(0, 10, 150.0, (True, 4, 30.0), id="half-the-previous-window-counts"),
        pytest.param(0, 25, 150.0, (True, 4, 30.0), id="previous-capped-at-the-limit"),
        pytest.param(6, 10, 150.0, (False, 0, 6.0), id="rejected-until-the-estimate-drops"),
        pytest.param(10, 0, 150.0, (False, 0, 30.0), id="full-until-the-next-window"),
    ],
)
def test_slide_is_apisix_sliding_window(
    current: int, previous: int, now: float, expected: tuple[bool, int, float]
) -> None:
    assert slide(current, previous, limit=10, window=60, now=now) == pytest.approx(expected)


async def test_leaky_bucket_delays_then_rejects(counters: Counters, key: str) -> None:
    """1 request/s, 2.5 queued at most: 0 s, ~1 s, ~2 s, then full; after 0.6 s one more fits.

    The n-th accepted request waits n seconds minus what drained since the first (excess n -
    elapsed), and a request is refused when that excess would pass 2.5.  Each answer is checked
    against the time that really passed (measured around the calls), so a slow store or a
    loaded machine moves the expected value, never the tolerance."""
    rate, burst = 1, 2.5
    (delay0, start0, end0) = await timed(counters.leaky(key, rate, burst))
    assert delay0 == 0
    accepted, refused, must_refuse = 1, 0, 0
    for pause in (0, 0, 0, 0.6):
        await asyncio.sleep(pause)
        delay, start, end = await timed(counters.leaky(key, rate, burst))
        low, high = accepted - (end - start0), accepted - (start - end0)  # excess if accepted
        if low > burst:
            must_refuse += 1
            assert delay is None, (accepted, delay)
        if high <= burst:
            assert delay is not None and low - 0.002 <= delay <= high + 0.002, (accepted, delay)
        accepted, refused = (accepted, refused + 1) if delay is None else (accepted + 1, refused)
    # the fourth call found no room (on a quiet machine: must_refuse is 1), the fifth did
    assert refused >= must_refuse and accepted + refused == 5 and accepted >= 4


async def test_concurrent_connections_are_capped(counters: Counters, key: str) -> None:
    counts = await asyncio.gather(*(counters.acquire(key, 3, 60) for _ in range(5)))
    assert sorted(counts) == [1, 2, 3, 4, 4]  # the two over the limit are not kept
    assert await counters.release(key) == 2
    assert await counters.acquire(key, 3, 60) == 3
    for left in (2, 1, 0):
        assert await counters.release(key) == left
    assert await counters.release(key) == 0  # never below zero
    assert await counters.acquire(key, 3, 60) == 1


async def test_a_dead_holders_redis_slots_end_with_its_lease(
    key: str, redis_cleanup: aioredis.Redis
) -> None:
    """Two processes on one Redis.  The slots of one that lives stay counted past its lease
    (it renews them); once it dies without releasing them they stop counting when the lease
    ends: ``min(ttl, LEASE)`` seconds, here limit-conn's ``key_ttl`` of 1."""
    alive, other = RedisCounters(RedisTarget()), RedisCounters(RedisTarget())
    assert alive.holder != other.holder
    try:
        assert [await alive.acquire(key, 2, 1) for _ in range(2)] == [1, 2]
        await asyncio.sleep(1.6)  # past the lease: renewed
        assert await other.acquire(key, 2, 1) == 3
        await alive.close()  # SIGKILL: no release, no more renewals
        started = time.monotonic()
        while await other.acquire(key, 2, 1) > 2:
            assert time.monotonic() - started < 2.5, "a dead holder's slots are still counted"
            await asyncio.sleep(0.1)
        assert time.monotonic() - started > 0.3  # its lease still ran at first
        assert await other.acquire(key, 2, 1) == 2
        assert await other.release(key) == 1
    finally:
        await alive.close()
        await other.close()


async def test_a_workers_slots_are_freed_when_its_connection_ends(socket_path: str) -> None:
    """The counter service: a worker's slots are its connection's; when the worker dies the
    kernel closes the connection and they are free at once."""
    server = CounterServer(socket_path)
    await server.start()
    dying, other = SharedCounters(socket_path), SharedCounters(socket_path)
    try:
        assert [await dying.acquire("k", 2, 60) for _ in range(2)] == [1, 2]
        assert await other.acquire("k", 2, 60) == 3
        assert await other.acquire("k", 2, 60) == 3
        await dying.close()  # its connection ends
        for _ in range(50):
            if await other.acquire("k", 2, 60) == 1:
                break
            await asyncio.sleep(0.01)
        else:
            raise AssertionError("the dead worker's slots were not freed")
        # A release of a slot that was freed with its holder changes nothing.
        assert await dying.release("k") == 1
        assert await other.release("k") == 0
    finally:
        await dying.close()
        await other.close()
        await server.close()


def test_leak_is_nginx_limit_req() -> None:
    state = leak(None, 100.0, rate=2, burst=1)
    assert state == (0.0, 100.0)
    state = leak(state, 100.0, rate=2, burst=1)
    assert state == (1.0, 100.0)
    assert leak(state, 100.0, rate=2, burst=1) is None  # excess 2 > burst 1
    assert leak(state, 100.25, rate=2, burst=1) is None  # 1 - 0.5 + 1 = 1.5: still full
    assert leak(state, 100.5, rate=2, burst=1) == (1.0, 100.5)
    assert leak(state, 101.0, rate=2, burst=1) == (0.0, 101.0)  # drained


def test_local_counters_forget_ended_windows_and_drained_buckets() -> None:
    counters = LocalCounters()
    counters.incr_now("w", 0.01)
    counters.leaky_now("b", 1000, 5)
    counters.acquire_now("c", 1)
    counters.release_now("c")
    time.sleep(0.02)
    counters._sweep(time.monotonic())
    assert counters._windows == {} and counters._buckets == {} and counters._conns == {}


async def test_shared_counters_are_one_state_for_every_client(socket_path: str) -> None:
    server = CounterServer(socket_path)
    await server.start()
    first, second = SharedCounters(socket_path), SharedCounters(socket_path)
    try:
        results = await asyncio.gather(
            *(client.incr("k", 60) for _ in range(50) for client in (first, second))
        )
        assert sorted(count for count, _ in results) == list(range(1, 101))
        assert server.state.peek_now("k", 60)[0] == 100
    finally:
        await first.close()
        await second.close()
        await server.close()


async def test_shared_counters_answer_a_bad_request_and_go_on(socket_path: str) -> None:
    server = CounterServer(socket_path)
    await server.start()
    reader, writer = await asyncio.open_unix_connection(socket_path)
    try:
        for request in ([["nope", "k"]], [["i", "k", 60, 1]]):
            payload = orjson.dumps(request[0])
            writer.write(struct.pack("!I", len(payload)) + payload)
        answers = []
        for _ in range(2):
            (size,) = struct.unpack("!I", await reader.readexactly(4))
            answers.append(orjson.loads(await reader.readexactly(size)))
        assert answers[0][0] == 0 and "KeyError" in answers[0][1]
        assert answers[1][0] == 1 and answers[1][1][0] == 1
    finally:
        writer.close()
        await server.close()


async def test_shared_counters_fail_without_the_service_and_reconnect(socket_path: str) -> None:
    client = SharedCounters(socket_path, timeout=1)
    with pytest.raises(CountersUnavailable, match="counter service"):
        await client.incr("k", 60)
    server = CounterServer(socket_path)
    await server.start()
    assert (await client.incr("k", 60))[0] == 1
    await server.close()  # the parent went away mid-life
    with pytest.raises(CountersUnavailable):
        await client.incr("k", 60)
    server = CounterServer(socket_path, server.state)
    await server.start()
    try:
        assert (await client.incr("k", 60))[0] == 2  # a new connection, the same state
    finally:
        await client.close()
        await server.close()


async def test_redis_down_is_unavailable_quickly() -> None:
    counters = RedisCounters(RedisTarget(port=free_port(), timeout=0.5))
    started = time.monotonic()
    with pytest.raises(CountersUnavailable, match=r"redis 127\.0\.0\.1"):
        await counters.incr("k", 60)
    assert time.monotonic() - started < 1
    await counters.close()


async def test_redis_keys_expire_with_the_window(key: str, redis_cleanup: aioredis.Redis) -> None:
    counters = RedisCounters(RedisTarget())
    try:
        await counters.incr(key, 30)
        await counters.acquire(key, 5, 90)
        await counters.leaky(key, 1, 3)
        assert 29_000 < await redis_cleanup.pttl(f"llmgate:count:{key}") <= 30_000
        for part in ("n", "t"):  # the slots per holder, and the holders' leases
            assert 89 <= await redis_cleanup.ttl(f"llmgate:conn:{{{key}}}:{part}") <= 90
        assert 0 < await redis_cleanup.pttl(f"llmgate:req:{key}") <= 2_000
    finally:
        await counters.close()


async def test_redis_registry_shares_one_client_per_target() -> None:
    registry = RedisRegistry()
    one = registry.get(RedisTarget(port=6379))
    assert registry.get(RedisTarget(port=6379)) is one
    assert registry.get(RedisTarget(port=6379, database=1)) is not one
    await registry.close()


# (now + 60) - now is 60.00000000000023 here: a float sum rounds up.
ROUNDS_UP_AT = 2040.1090003485567


def test_a_new_window_never_has_more_than_its_length_left(monkeypatch: pytest.MonkeyPatch) -> None:
    # The plugins round the seconds left up (X-RateLimit-Reset), so one ulp over the window
    # told clients 61 for a 60 s window.
    import llmgate.runtime.counters as module

    clock = type("Clock", (), {"monotonic": staticmethod(lambda: ROUNDS_UP_AT)})
    monkeypatch.setattr(module, "time", clock)
    counters, window = LocalCounters(), 60.0
    assert counters.incr_now("a", window)[1] <= window
    assert counters.incr_now("a", window)[1] <= window
    assert counters.reserve_now("b", window, 1, 5)[2] <= window
    assert counters.peek_now("b", window)[1] <= window


def test_local_counters_keep_at_most_max_keys_forgetting_the_least_recently_used(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Keys clients choose (a header as the key) cannot grow memory without bound: past
    ``MAX_KEYS`` windows (or buckets) the least recently used one is forgotten, as APISIX's
    shared dicts evict."""
    monkeypatch.setattr(LocalCounters, "MAX_KEYS", 3)
    counters = LocalCounters()
    counters.incr_now("alice", 60)
    counters.leaky_now("alice", 1, 5)
    for i in range(100):
        counters.incr_now(f"flood{i}", 60)
        counters.leaky_now(f"flood{i}", 1, 5)
        counters.incr_now("alice", 60)  # in use: never the one forgotten
        counters.leaky_now("alice", 0.001, 500)
    assert len(counters._windows) == 3 and len(counters._buckets) == 3
    assert len(counters._bucket_rates) == 3
    assert counters.incr_now("alice", 60)[0] == 102
    assert "flood0" not in counters._windows and "flood99" in counters._windows
