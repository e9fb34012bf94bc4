"""Token usage: in-memory counts, flushes by increment (SQLite and PostgreSQL), the summary and
``GET /apisix/admin/usage``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import delete

from llmgate.admin.auth import AdminKeys
from llmgate.ai.pricing import PICO
from llmgate.ai.usage import Usage
from llmgate.app import build_admin_app
from llmgate.errors import BadRequest
from llmgate.observability.accounting import LlmAccounting
from llmgate.observability.calls import CallsQuery, list_calls, parse_calls_query
from llmgate.observability.usage import CallRecord, UsageReporter
from llmgate.observability.usage_query import UsageQuery, parse_query, summarize
from llmgate.observability.usage_ship import CALLS_PER_INSERT
from llmgate.store import Store, open_engine
from llmgate.store.tables import llm_calls
from llmgate.store.tables import usage as usage_table
from tests.support import ADMIN_KEY, VIEWER_KEY

T0 = 1_700_000_040  # the start of a minute
CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Who is Pikachu?"}]}
USAGE_FIELDS = ("prompt_tokens", "completion_tokens", "total_tokens")


@pytest.fixture
async def usage_store(store: Store) -> AsyncIterator[Store]:
    """``store`` (SQLite, then PostgreSQL) with an empty usage table (the PostgreSQL database
    lives for the whole session)."""
    async with store.engine.begin() as conn:
        await conn.execute(delete(usage_table))
        await conn.execute(delete(llm_calls))
    yield store


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def totals(summary: dict) -> tuple[int, int, int, int]:
    total = summary["total"]
    return (
        total["requests"],
        total["prompt_tokens"],
        total["completion_tokens"],
        total["total_tokens"],
    )


async def test_flushes_add_to_the_stored_counts(usage_store: Store) -> None:
    clock = Clock()
    reporter = UsageReporter(usage_store, clock=clock)
    revision = await usage_store.revision()
    reporter.add("jack", "1", "gpt-4o", Usage(10, 5, 15))
    reporter.add("jack", "1", "gpt-4o", Usage(1, 2, 3))
    reporter.add("", "1", "gpt-4o", None)  # anonymous, no usage block: a request, no tokens
    assert await reporter.flush() == 2
    assert await reporter.flush() == 0  # nothing pending
    clock.now += 59  # the same minute
    reporter.add("jack", "1", "gpt-4o", Usage(100, 0, 100))
    clock.now += 1  # the next one
    reporter.add("jack", "1", "gpt-4o", Usage(0, 7, 7))
    assert await reporter.flush() == 2

    summary = await summarize(usage_store, UsageQuery())
    day = {"day": "2023-11-14", "cache": "miss", "cached_tokens": 0, "cost": 0.0}
    assert summary["list"] == [
        {"consumer": "", "route": "1", "model": "gpt-4o", "requests": 1, "prompt_tokens": 0,
         "completion_tokens": 0, "total_tokens": 0, **day},
        {"consumer": "jack", "route": "1", "model": "gpt-4o", "requests": 4, "prompt_tokens": 111,
         "completion_tokens": 14, "total_tokens": 125, **day},
    ]  # fmt: skip
    assert totals(summary) == (5, 111, 14, 125)
    assert (summary["from"], summary["to"]) == (None, None)
    # Only the first minute, then only the second.
    first = await summarize(usage_store, UsageQuery(start=T0 + 30, end=T0 + 59))
    assert totals(first) == (4, 111, 7, 118)
    second = await summarize(usage_store, UsageQuery(start=T0 + 60))
    assert totals(second) == (1, 0, 7, 7)
    assert await usage_store.revision() == revision  # usage is not configuration


async def test_two_processes_flushing_at_once_add_up(usage_store: Store) -> None:
    workers = [UsageReporter(usage_store, clock=Clock()) for _ in range(2)]
    for _ in range(3):
        for worker in workers:
            worker.add("jack", "1", "gpt-4o", Usage(2, 3, 5))
            worker.add("jill", "2", "gpt-4o-mini", Usage(1, 1, 2))
        await asyncio.gather(*(worker.flush() for worker in workers))
    summary = await summarize(usage_store, UsageQuery())
    assert totals(summary) == (12, 18, 24, 42)
    assert [(e["consumer"], e["requests"]) for e in summary["list"]] == [("jack", 6), ("jill", 6)]


async def test_filters(usage_store: Store) -> None:
    reporter = UsageReporter(usage_store, clock=Clock())
    reporter.add("jack", "1", "a", Usage(1, 0, 1))
    reporter.add("jack", "2", "b", Usage(2, 0, 2))
    reporter.add("jill", "1", "b", Usage(4, 0, 4))
    await reporter.flush()

    async def prompt(**query: str | int) -> int:
        return (await summarize(usage_store, UsageQuery(**query)))["total"]["prompt_tokens"]  # type: ignore[arg-type]

    assert await prompt(consumer="jack") == 3
    assert await prompt(route="1") == 5
    assert await prompt(model="b", consumer="jill") == 4
    assert await prompt(consumer="nobody") == 0
    assert await prompt(end=T0 - 1) == 0
    assert await prompt(start=T0 + 60) == 0


async def test_a_failed_flush_keeps_its_counts(sqlite_store: Store, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    reporter = UsageReporter(sqlite_store, clock=Clock())
    reporter.add("jack", "1", "m", Usage(1, 1, 2))

    async def unreachable(_batches: object) -> None:
        raise OSError("store unreachable")

    monkeypatch.setattr(reporter, "_ship", unreachable)
    assert await reporter.flush() == 0
    reporter.add("jack", "1", "m", Usage(1, 1, 2))  # meanwhile, more of the same key
    monkeypatch.undo()
    assert await reporter.flush() == 1
    assert totals(await summarize(sqlite_store, UsageQuery())) == (2, 2, 2, 4)


async def test_flushes_in_the_background_and_at_stop(sqlite_store: Store) -> None:
    reporter = UsageReporter(sqlite_store, interval=0.02)
    await reporter.start()
    reporter.add("jack", "1", "m", Usage(1, 1, 2))
    for _ in range(100):
        if (await summarize(sqlite_store, UsageQuery()))["total"]["requests"] == 1:
            break
        await asyncio.sleep(0.01)
    else:
        pytest.fail("not flushed in the background")
    reporter.interval = 60
    reporter.add("jack", "1", "m", Usage(1, 1, 2))
    await reporter.stop()
    assert totals(await summarize(sqlite_store, UsageQuery())) == (2, 2, 2, 4)


@pytest.mark.parametrize(
    ("args", "error"),
    [
        ({"from": "abc"}, "invalid from 'abc': expected Unix seconds"),
        ({"to": "-1"}, "invalid to '-1': expected Unix seconds"),
        ({"from": "1.5"}, "invalid from '1.5'"),
        ({"to": "9" * 12}, "invalid to"),
        ({"from": "20", "to": "10"}, "invalid range: from 20 is after to 10"),
        ({"cache": "HIT"}, "invalid cache 'HIT': expected hit or miss"),
        ({"group_by": "user"}, "invalid group_by 'user'"),
        ({"model": "a\x00b"}, "invalid model: contains a NUL byte"),
    ],
)
def test_bad_query_arguments(args: dict[str, str], error: str) -> None:
    with pytest.raises(BadRequest) as raised:
        parse_query(args)
    assert raised.value.body["error_msg"].startswith(error)


@pytest.mark.parametrize(
    "args",
    [
        {"limit": "\u00b2"},  # a digit to str.isdigit(), not to int(): was a 500
        {"limit": "9" * 5000},  # past int()'s digits: was a 500
        {"limit": "\u0663"},  # ARABIC-INDIC DIGIT THREE: int() reads 3
        {"from": "\u0663"},
        {"to": "1\u0660"},
    ],
)
def test_numbers_in_the_query_are_ascii_digits(args: dict[str, str]) -> None:
    with pytest.raises(BadRequest):
        parse_calls_query(args)
    if "limit" not in args:
        with pytest.raises(BadRequest):
            parse_query(args)


def test_query_arguments() -> None:
    assert parse_query({"consumer": "", "from": "10", "to": "10", "api_key": "x"}) == UsageQuery(
        consumer="", start=10, end=10
    )
    assert parse_query({"from": "", "route": "r"}) == UsageQuery(route="r")
    assert parse_query({"cache": "hit", "group_by": "model, day"}) == UsageQuery(
        cache="hit", group_by=("model", "day")
    )
    assert parse_query({"cache": "miss"}) == UsageQuery(cache="")
    for bad in ({"cache": "yes"}, {"group_by": "consumer,key"}):
        with pytest.raises(BadRequest):
            parse_query(bad)


@pytest.fixture
def admin_client(aiohttp_client, usage_store: Store) -> Callable:  # type: ignore[no-untyped-def]
    async def client(key: str | None):  # type: ignore[no-untyped-def]
        headers = {"X-API-KEY": key} if key else {}
        app = build_admin_app(usage_store, AdminKeys(ADMIN_KEY, VIEWER_KEY))
        return await aiohttp_client(app, headers=headers)

    return client


async def test_admin_usage_endpoint(admin_client, usage_store: Store) -> None:  # type: ignore[no-untyped-def]
    reporter = UsageReporter(usage_store, clock=Clock())
    reporter.add("jack", "1", "gpt-4o", Usage(3, 4, 7))
    await reporter.flush()

    viewer = await admin_client(VIEWER_KEY)
    resp = await viewer.get(f"/apisix/admin/usage?consumer=jack&from={T0}&to={T0 + 10}")
    assert resp.status == 200
    counts = {"requests": 1, "prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7,
              "cached_tokens": 0, "cost": 0.0}  # fmt: skip
    assert await resp.json() == {
        "from": T0,
        "to": T0 + 10,
        "total": counts,
        "list": [
            {"consumer": "jack", "route": "1", "model": "gpt-4o", "day": "2023-11-14",
             "cache": "miss", **counts},
        ],
    }  # fmt: skip
    resp = await viewer.get("/apisix/admin/usage?from=yesterday")
    assert resp.status == 400
    assert await resp.json() == {"error_msg": "invalid from 'yesterday': expected Unix seconds"}
    resp = await (await admin_client(None)).get("/apisix/admin/usage")
    assert resp.status == 401


@pytest.fixture
def reporter(gateway) -> Iterator[UsageReporter]:  # type: ignore[no-untyped-def]
    reporter = UsageReporter(gateway.store)
    gateway.services.observers = (LlmAccounting(None, reporter),)
    return reporter


async def test_every_llm_call_is_accounted(gateway, reporter: UsageReporter) -> None:  # type: ignore[no-untyped-def]
    await gateway.put("consumers/jack", {"username": "jack", "plugins": {"key-auth": {"key": "k"}}})
    ai_proxy = {
        "provider": "openai-compatible",
        "auth": {"header": {"Authorization": "Bearer sk-test"}},
        "override": {"endpoint": f"http://{gateway.fake_address}/v1/chat/completions"},
    }
    await gateway.put(
        "routes/r1", {"uri": "/chat", "plugins": {"key-auth": {}, "ai-proxy": ai_proxy}}
    )
    expected = [0, 0, 0, 0]
    for body in ({**CHAT, "messages": [{"role": "user", "content": "a b c"}]}, CHAT):
        resp = await gateway.proxy.post("/chat", json=body, headers={"apikey": "k"})
        usage = (await resp.json())["usage"]
        expected = [expected[0] + 1] + [
            n + usage[name] for n, name in zip(expected[1:], USAGE_FIELDS, strict=True)
        ]
    # A stream whose client did not ask for its usage: the gateway did, and records it (the
    # fake's stream uses what the same answer unstreamed did).
    resp = await gateway.proxy.post("/chat", json={**CHAT, "stream": True}, headers={"apikey": "k"})
    assert '"usage"' not in await resp.text()
    expected = [expected[0] + 1] + [
        n + usage[name] for n, name in zip(expected[1:], USAGE_FIELDS, strict=True)
    ]
    failed = await gateway.proxy.post(
        "/chat", json=CHAT, headers={"apikey": "k", "X-Fake-Status": "500"}
    )
    assert failed.status == 500
    assert (await gateway.proxy.post("/chat", json=CHAT)).status == 401  # never reached the LLM

    await reporter.flush()
    summary = await summarize(gateway.store, UsageQuery())
    assert list(totals(summary)) == expected
    assert expected[3] > expected[0] == 3
    assert [(e["consumer"], e["route"], e["model"]) for e in summary["list"]] == [
        ("jack", "r1", "gpt-4o")
    ]


def call_record(request_id: str, time_ms: int, **extra: object) -> CallRecord:
    fields = {
        "time": time_ms, "request_id": request_id, "consumer": "jack", "route": "1",
        "model": "gpt-4o", "provider": "openai", "instance": "", "request_type": "ai_chat",
        "cache": "", "status": 200, "prompt_tokens": 3, "completion_tokens": 4,
        "cached_tokens": 0, "cost": 5 * PICO // 1000,
    }  # fmt: skip
    fields.update(extra)
    return CallRecord(**fields)  # type: ignore[arg-type]


async def test_cost_cache_hits_and_days(usage_store: Store) -> None:
    clock = Clock()
    reporter = UsageReporter(usage_store, clock=clock)
    reporter.add("jack", "1", "gpt-4o", Usage(10, 5, 15, cached_tokens=4), cost=3 * PICO // 100)
    reporter.add("jack", "1", "gpt-4o", Usage(10, 5, 15), cost=0, cache="hit")
    clock.now += 86_400  # the next day
    reporter.add("jack", "1", "gpt-4o", Usage(1, 1, 2), cost=PICO // 100)
    await reporter.flush()

    summary = await summarize(usage_store, UsageQuery())
    assert [(e["day"], e["cache"], e["requests"], e["cost"]) for e in summary["list"]] == [
        ("2023-11-14", "miss", 1, 0.03),
        ("2023-11-14", "hit", 1, 0.0),
        ("2023-11-15", "miss", 1, 0.01),
    ]
    assert summary["total"]["cost"] == 0.04
    assert summary["total"]["cached_tokens"] == 4
    by_model = await summarize(usage_store, UsageQuery(group_by=("model",)))
    assert by_model["list"] == [{"model": "gpt-4o", **by_model["total"]}]
    hits = await summarize(usage_store, UsageQuery(cache="hit"))
    assert hits["total"]["total_tokens"] == 15 and hits["total"]["cost"] == 0.0
    nothing = await summarize(usage_store, UsageQuery(consumer="nobody", group_by=()))
    assert nothing["list"] == [] and nothing["total"]["requests"] == 0


async def test_call_records_by_request_id(usage_store: Store) -> None:
    clock = Clock()
    reporter = UsageReporter(usage_store, clock=clock)
    reporter.add("jack", "1", "gpt-4o", Usage(3, 4, 7), call=call_record("rid-1", T0 * 1000))
    reporter.add("jack", "1", "gpt-4o", Usage(3, 4, 7), call=call_record("rid-2", T0 * 1000 + 1))
    reporter.add(
        "jack", "1", "m", None, call=call_record("rid-3", T0 * 1000 + 2, model="m", cost=None)
    )
    await reporter.flush()
    found = await list_calls(usage_store, parse_calls_query({"request_id": "rid-1"}))
    assert found["list"] == [
        {"time": T0 * 1000, "request_id": "rid-1", "consumer": "jack", "route": "1",
         "model": "gpt-4o", "provider": "openai", "instance": "", "request_type": "ai_chat",
         "cache": None, "status": 200, "prompt_tokens": 3, "completion_tokens": 4,
         "cached_tokens": 0, "cost": 0.005},
    ]  # fmt: skip
    newest = await list_calls(usage_store, parse_calls_query({"limit": "2"}))
    assert [c["request_id"] for c in newest["list"]] == ["rid-3", "rid-2"]
    assert newest["list"][0]["cost"] is None  # no price for the model
    window = parse_calls_query({"from": str(T0), "to": str(T0)})
    assert (await list_calls(usage_store, window))["total"] == 3
    for bad in ({"limit": "0"}, {"limit": "1001"}, {"from": "2", "to": "1"}, {"route": "\x00"}):
        with pytest.raises(BadRequest):
            parse_calls_query(bad)


async def test_a_shipment_of_many_calls_writes_every_record_whole(usage_store: Store) -> None:
    """SQLite takes the records ``CALLS_PER_INSERT`` to an INSERT (PostgreSQL by COPY): two
    full statements and a short one land every record, each with its own fields."""
    count = 2 * CALLS_PER_INSERT + 3
    reporter = UsageReporter(usage_store, clock=Clock())
    for i in range(count):
        reporter.add(
            "jack", "1", "gpt-4o", Usage(i, 1, i + 1),
            call=call_record(f"many-{i}", T0 * 1000 + i, prompt_tokens=i, cost=i or None),
        )  # fmt: skip
    await reporter.flush()
    found = await list_calls(usage_store, parse_calls_query({"limit": "1000"}))
    assert found["total"] == count
    got = {c["request_id"]: (c["time"], c["prompt_tokens"], c["cost"]) for c in found["list"]}
    assert got == {
        f"many-{i}": (T0 * 1000 + i, i, None if i == 0 else i / PICO) for i in range(count)
    }


async def test_a_refused_call_record_ships_nothing_of_its_batch(postgres_url: str) -> None:
    """On PostgreSQL the call records go by COPY inside the shipment's transaction: one the
    database refuses (too long a request id) leaves nothing of the shipment, which is kept."""
    store = Store(open_engine(postgres_url))
    try:
        reporter = UsageReporter(store, clock=Clock())
        reporter.add("jack", "1", "m", Usage(1, 1, 2), call=call_record("x" * 200, T0 * 1000))
        assert await reporter.flush() == 0
        assert totals(await summarize(store, UsageQuery())) == (0, 0, 0, 0)
        assert len(reporter._unshipped) == 1
    finally:
        await store.close()


async def test_call_records_are_bounded_and_expire(usage_store: Store, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """As an attacker flooding cheap calls (cache hits): the records waiting for a flush are
    capped, the counts stay exact, and old records go."""
    monkeypatch.setattr("llmgate.observability.usage.MAX_PENDING_CALLS", 5)
    clock = Clock()
    reporter = UsageReporter(usage_store, clock=clock, calls_days=1)
    for i in range(8):
        reporter.add("jack", "1", "m", Usage(1, 1, 2), call=call_record(f"r{i}", T0 * 1000))
    await reporter.flush()
    assert (await list_calls(usage_store, CallsQuery()))["total"] == 5
    assert (await summarize(usage_store, UsageQuery()))["total"]["requests"] == 8
    clock.now += 2 * 86_400  # two days later: the records are past their day
    reporter.add("jack", "1", "m", None, call=call_record("late", int(clock.now * 1000)))
    await reporter.flush()
    assert [c["request_id"] for c in (await list_calls(usage_store, CallsQuery()))["list"]] == [
        "late"
    ]
    off = UsageReporter(usage_store, clock=clock, calls_days=0)
    off.add("jack", "1", "m", None, call=call_record("kept-nowhere", int(clock.now * 1000)))
    await off.flush()
    assert (await list_calls(usage_store, CallsQuery()))["total"] == 1


async def test_admin_usage_calls_endpoint(admin_client, usage_store: Store) -> None:  # type: ignore[no-untyped-def]
    reporter = UsageReporter(usage_store, clock=Clock())
    reporter.add("jack", "1", "m", None, call=call_record("rid-9", T0 * 1000))
    await reporter.flush()
    viewer = await admin_client(VIEWER_KEY)
    resp = await viewer.get("/apisix/admin/usage/calls?request_id=rid-9")
    assert resp.status == 200
    assert [c["request_id"] for c in (await resp.json())["list"]] == ["rid-9"]
    resp = await viewer.get("/apisix/admin/usage/calls?limit=x")
    assert resp.status == 400
    assert (await (await admin_client(None)).get("/apisix/admin/usage/calls")).status == 401


async def test_a_nul_in_a_filter_is_a_400_on_both_stores(admin_client) -> None:  # type: ignore[no-untyped-def]
    # No stored value holds a NUL; PostgreSQL refused to compare one (400 "invalid value")
    # while SQLite answered an empty 200: the parser refuses it before the store is asked.
    viewer = await admin_client(VIEWER_KEY)
    for path, name in (
        ("/apisix/admin/usage?consumer=jack%00" + "x" * 5000, "consumer"),
        ("/apisix/admin/usage?route=%00", "route"),
        ("/apisix/admin/usage?model=gpt%00", "model"),
        ("/apisix/admin/usage/calls?request_id=%00", "request_id"),
        ("/apisix/admin/usage/calls?consumer=%00", "consumer"),
        ("/apisix/admin/usage/calls?route=a%00b", "route"),
        ("/apisix/admin/usage/calls?model=gpt%00", "model"),
    ):
        resp = await viewer.get(path)
        assert resp.status == 400, (path, await resp.text())
        assert resp.content_type == "application/json"
        assert await resp.json() == {"error_msg": f"invalid {name}: contains a NUL byte"}
    for path in ("/apisix/admin/usage?consumer=jack", "/apisix/admin/usage/calls?model=gpt"):
        assert (await viewer.get(path)).status == 200


async def test_each_insert_of_call_records_is_one_hop_to_the_sqlite_thread(
    sqlite_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """aiosqlite runs every statement in its own thread: each call of it is a wake-up of that
    thread and one of the event loop.  A chunk of ``CALLS_PER_INSERT`` records costs one hop
    (SQLAlchemy's ``exec_driver_sql`` took three: cursor, execute, close)."""
    import aiosqlite

    hops = 0
    execute = aiosqlite.Connection._execute

    async def counted(self: aiosqlite.Connection, fn: Any, *args: Any, **kwargs: Any) -> Any:
        nonlocal hops
        hops += 1
        return await execute(self, fn, *args, **kwargs)  # type: ignore[no-untyped-call]

    monkeypatch.setattr(aiosqlite.Connection, "_execute", counted)

    async def ship(count: int, prefix: str) -> int:
        nonlocal hops
        reporter = UsageReporter(sqlite_store, clock=Clock())
        for i in range(count):
            reporter.add(
                "jack", "1", "gpt-4o", Usage(1, 1, 2), call=call_record(f"{prefix}-{i}", T0 * 1000)
            )
        await reporter.flush()  # connects first: a shipment to measure after it
        for i in range(count):
            reporter.add(
                "jack", "1", "gpt-4o", Usage(1, 1, 2), call=call_record(f"{prefix}+{i}", T0 * 1000)
            )
        hops = 0
        await reporter.flush()
        return hops

    one_chunk = await ship(CALLS_PER_INSERT, "one")
    three_chunks = await ship(3 * CALLS_PER_INSERT, "three")
    assert three_chunks - one_chunk == 2
    found = await list_calls(sqlite_store, parse_calls_query({"limit": "1000"}))
    assert found["total"] == 8 * CALLS_PER_INSERT
