"""proxy-cache at run time: lookups, storing, PURGE, TTLs, streams, both strategies."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import glob
import hashlib
import time
from email.utils import formatdate
from pathlib import Path
from typing import Any

import pytest
from aiohttp import encode_basic_auth, web
from multidict import CIMultiDict

from llmgate.plugins.proxy_cache import ProxyCache
from llmgate.plugins.proxy_cache.disk import DiskStore
from llmgate.plugins.proxy_cache.entry import MAGIC, Entry
from llmgate.plugins.proxy_cache.memory import MemoryStore
from llmgate.plugins.proxy_cache.policy import (
    CacheKey,
    StorePolicy,
    any_set,
    build_key,
    compile_parts,
    credentials_identity,
    freshness,
    lookup_status,
    parse_directives,
    render,
)
from llmgate.proxy.handler import make_handler
from llmgate.runtime.loader import SnapshotLoader
from llmgate.runtime.services import Services

SEED = {
    "cache_key": ["$uri", "-cache-id"],
    "cache_method": ["POST"],
    "cache_http_status": [200],
    "hide_cache_headers": True,
}
STRATEGIES = pytest.mark.parametrize("strategy", ["disk", "memory"])
STATUS = "Apisix-Cache-Status"


def chat(prompt: str, **extra: Any) -> dict[str, Any]:
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": prompt}], **extra}


@pytest.fixture(autouse=True)
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "cache"
    monkeypatch.setenv("LLMGATE_CACHE_DIR", str(directory))
    return directory


class Clock:
    """A store clock the test moves forward instead of sleeping."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def store_of(gateway, strategy: str) -> MemoryStore | DiskStore:  # type: ignore[no-untyped-def]
    zone = "memory_cache" if strategy == "memory" else "disk_cache_one"
    (store,) = [
        value for key, value in gateway.services.shared.items() if key == f"proxy-cache:{zone}"
    ]
    assert isinstance(store, MemoryStore | DiskStore)
    return store


async def cached_route(gateway, conf: dict[str, Any], uri: str = "/*", **route: Any) -> None:  # type: ignore[no-untyped-def]
    upstream = route.pop("upstream", None) or gateway.upstream()
    plugins = {"proxy-cache": conf, **route.pop("plugins", {})}
    await gateway.put("routes/1", {"uri": uri, "plugins": plugins, "upstream": upstream, **route})


@STRATEGIES
async def test_seed_config_miss_hit_then_other_prompt_misses(gateway, strategy: str) -> None:  # type: ignore[no-untyped-def]
    await cached_route(gateway, {**SEED, "cache_strategy": strategy}, uri="/v1/chat/completions")
    first = await gateway.proxy.post("/v1/chat/completions", json=chat("Apple 13 pro"))
    assert first.status == 200 and first.headers[STATUS] == "MISS"
    second = await gateway.proxy.post("/v1/chat/completions", json=chat("Apple 13 pro"))
    assert second.status == 200 and second.headers[STATUS] == "HIT"
    assert await second.read() == await first.read()
    assert second.headers["Content-Type"] == first.headers["Content-Type"]
    other = await gateway.proxy.post("/v1/chat/completions", json=chat("Pixel 9"))
    assert other.status == 200 and other.headers[STATUS] == "MISS"
    assert await other.read() != await first.read()
    assert len(await gateway.fake_requests()) == 2


@STRATEGIES
async def test_get_with_defaults(gateway, strategy: str) -> None:  # type: ignore[no-untyped-def]
    await cached_route(gateway, {"cache_strategy": strategy})
    miss = await gateway.proxy.get("/anything/a?x=1")
    assert miss.headers[STATUS] == "MISS"
    hit = await gateway.proxy.get("/anything/a?x=1")
    assert hit.headers[STATUS] == "HIT"
    assert await hit.json() == await miss.json()
    assert ("Age" in hit.headers) == (strategy == "memory")  # test_age_on_a_hit
    assert (await gateway.proxy.get("/anything/a?x=2")).headers[STATUS] == "MISS"
    # POST is not in the default cache_method: fetched, never stored.  APISIX says so with
    # BYPASS on disk (nginx's proxy_cache_bypass, disk.t TEST 18) and MISS in memory
    # (memory_handler's cacheable_request, memory.t TEST 13).
    expected = "BYPASS" if strategy == "disk" else "MISS"
    for _ in range(2):
        assert (await gateway.proxy.post("/anything/a?x=1", data=b"{}")).headers[STATUS] == expected
    assert len(await gateway.fake_requests()) == 4


async def test_entries_survive_a_config_reload(gateway) -> None:  # type: ignore[no-untyped-def]
    await cached_route(gateway, {"cache_strategy": "memory"})
    assert (await gateway.proxy.get("/r")).headers[STATUS] == "MISS"
    await cached_route(gateway, {"cache_strategy": "memory"}, name="renamed")
    assert (await gateway.proxy.get("/r")).headers[STATUS] == "HIT"


@STRATEGIES
async def test_status_outside_cache_http_status_is_not_stored(gateway, strategy: str) -> None:  # type: ignore[no-untyped-def]
    await cached_route(gateway, {"cache_strategy": strategy})
    for _ in range(2):
        resp = await gateway.proxy.get("/fails", headers={"X-Fake-Status": "500"})
        assert resp.status == 500 and resp.headers[STATUS] == "MISS"
    assert len(await gateway.fake_requests()) == 2


@STRATEGIES
async def test_cache_bypass(gateway, strategy: str) -> None:  # type: ignore[no-untyped-def]
    conf = {"cache_strategy": strategy, "cache_key": ["$uri"], "cache_bypass": ["$arg_bypass"]}
    await cached_route(gateway, conf)
    original = await (await gateway.proxy.get("/b")).json()
    bypassed = await gateway.proxy.get("/b?bypass=1")
    assert bypassed.headers[STATUS] == "BYPASS"
    assert (await bypassed.json())["query"] == "bypass=1"  # from the upstream
    zero = await gateway.proxy.get("/b?bypass=0")  # "0" does not bypass
    assert zero.headers[STATUS] == "HIT"
    assert await zero.json() == original  # the bypassed response was not stored
    assert len(await gateway.fake_requests()) == 2


@STRATEGIES
async def test_no_cache(gateway, strategy: str) -> None:  # type: ignore[no-untyped-def]
    conf = {"cache_strategy": strategy, "cache_key": ["$uri"], "no_cache": ["$arg_nocache"]}
    await cached_route(gateway, conf)
    for _ in range(2):
        assert (await gateway.proxy.get("/n?nocache=1")).headers[STATUS] == "MISS"
    assert (await gateway.proxy.get("/n?nocache=0")).headers[STATUS] == "MISS"  # stored
    # no_cache only stops storing: a stored entry is still served.
    assert (await gateway.proxy.get("/n?nocache=1")).headers[STATUS] == "HIT"
    assert len(await gateway.fake_requests()) == 3


@STRATEGIES
async def test_ttl_expiry(gateway, strategy: str) -> None:  # type: ignore[no-untyped-def]
    await cached_route(gateway, {"cache_strategy": strategy, "cache_ttl": 1})
    clock = Clock()
    store_of(gateway, strategy).clock = clock
    assert (await gateway.proxy.get("/t")).headers[STATUS] == "MISS"
    clock.now += 0.5
    assert (await gateway.proxy.get("/t")).headers[STATUS] == "HIT"
    clock.now += 0.6
    assert (await gateway.proxy.get("/t")).headers[STATUS] == "EXPIRED"
    assert (await gateway.proxy.get("/t")).headers[STATUS] == "HIT"  # refreshed
    assert len(await gateway.fake_requests()) == 2


async def test_disk_ttl_defaults_to_ten_seconds(gateway) -> None:  # type: ignore[no-untyped-def]
    await cached_route(gateway, {})  # cache_ttl is a memory setting in APISIX
    clock = Clock()
    store_of(gateway, "disk").clock = clock
    assert (await gateway.proxy.get("/t")).headers[STATUS] == "MISS"
    clock.now += 9
    assert (await gateway.proxy.get("/t")).headers[STATUS] == "HIT"
    clock.now += 1.5
    assert (await gateway.proxy.get("/t")).headers[STATUS] == "EXPIRED"


@STRATEGIES
async def test_purge(gateway, strategy: str) -> None:  # type: ignore[no-untyped-def]
    await cached_route(gateway, {"cache_strategy": strategy})
    await gateway.proxy.get("/p")
    assert (await gateway.proxy.get("/p")).headers[STATUS] == "HIT"
    purged = await gateway.proxy.request("PURGE", "/p")
    assert purged.status == 200 and await purged.read() == b""
    again = await gateway.proxy.request("PURGE", "/p")
    assert again.status == 404
    assert await again.json() == {"error_msg": "404 Not Found"}
    assert (await gateway.proxy.get("/p")).headers[STATUS] == "MISS"


@STRATEGIES
async def test_purge_of_bodies(gateway, strategy: str) -> None:  # type: ignore[no-untyped-def]
    await cached_route(gateway, {**SEED, "cache_strategy": strategy}, uri="/v1/chat/completions")
    path = "/v1/chat/completions"
    for prompt in ("a", "b", "c"):
        await gateway.proxy.post(path, json=chat(prompt))
    # With a body: only that body's entry.
    assert (await gateway.proxy.request("PURGE", path, json=chat("a"))).status == 200
    assert (await gateway.proxy.post(path, json=chat("a"))).headers[STATUS] == "MISS"
    assert (await gateway.proxy.post(path, json=chat("b"))).headers[STATUS] == "HIT"
    # Without a body: every body's entry under the key.
    assert (await gateway.proxy.request("PURGE", path)).status == 200
    for prompt in ("a", "b", "c"):
        assert (await gateway.proxy.post(path, json=chat(prompt))).headers[STATUS] == "MISS"


@pytest.fixture
async def header_upstream(aiohttp_server):  # type: ignore[no-untyped-def]
    """An upstream answering with the headers its query asks for; counts its requests."""
    seen: list[str] = []

    async def answer(request: web.Request) -> web.Response:
        seen.append(request.path_qs)
        headers = {name: value for name, value in request.query.items()}
        return web.Response(text=f"body of {request.path_qs}", headers=headers)

    app = web.Application()
    app.router.add_get("/{tail:.*}", answer)
    server = await aiohttp_server(app)
    return server, seen


@pytest.mark.parametrize("hide", [True, False])
@STRATEGIES
async def test_hide_cache_headers(gateway, header_upstream, strategy: str, hide: bool) -> None:  # type: ignore[no-untyped-def]
    server, _ = header_upstream
    upstream = {"type": "roundrobin", "nodes": {f"127.0.0.1:{server.port}": 1}}
    conf = {"cache_strategy": strategy, "hide_cache_headers": hide}
    await cached_route(gateway, conf, upstream=upstream)
    expires = "Thu, 01 Jan 2099 00:00:00 GMT"
    path = f"/h?Cache-Control=public,max-age%3D60&Expires={expires}&X-Kept=1"
    for expected in ("MISS", "HIT"):
        resp = await gateway.proxy.get(path)
        assert resp.headers[STATUS] == expected
        assert resp.headers["X-Kept"] == "1"
        if hide:
            assert "Cache-Control" not in resp.headers and "Expires" not in resp.headers
        else:
            assert resp.headers["Cache-Control"] == "public,max-age=60"
            assert resp.headers["Expires"] == expires


@STRATEGIES
async def test_age_on_a_hit(gateway, header_upstream, strategy: str) -> None:  # type: ignore[no-untyped-def]
    """APISIX: the memory handler sets ``Age`` (seconds since stored) on a HIT; on disk nginx
    adds none, and replays the upstream's own ``Age`` as it stored it."""
    server, _ = header_upstream
    upstream = {"type": "roundrobin", "nodes": {f"127.0.0.1:{server.port}": 1}}
    await cached_route(gateway, {"cache_strategy": strategy}, upstream=upstream)
    store = store_of(gateway, strategy)
    clock = Clock()
    store.clock = clock
    miss = await gateway.proxy.get("/age?Age=7")
    assert miss.headers[STATUS] == "MISS" and miss.headers["Age"] == "7"
    await gateway.proxy.get("/bare")
    clock.now += 3.9
    hit, bare = await gateway.proxy.get("/age?Age=7"), await gateway.proxy.get("/bare")
    assert hit.headers[STATUS] == bare.headers[STATUS] == "HIT"
    if strategy == "memory":
        assert hit.headers.getall("Age") == bare.headers.getall("Age") == ["3"]
    else:
        assert hit.headers.getall("Age") == ["7"]
        assert "Age" not in bare.headers


@pytest.mark.parametrize(
    ("query", "stored"),
    [
        pytest.param("Cache-Control=no-store", False, id="no-store"),
        pytest.param("Cache-Control=private", False, id="private"),
        pytest.param("Cache-Control=no-cache", False, id="no-cache"),
        pytest.param("Cache-Control=max-age%3D0", False, id="max-age-0-disk"),
        pytest.param("Set-Cookie=a%3D1", False, id="set-cookie"),
        pytest.param("Vary=*", False, id="vary-star"),
        pytest.param("Cache-Control=max-age%3D60", True, id="max-age"),
    ],
)
async def test_upstream_says_what_may_be_stored(
    gateway, header_upstream, query: str, stored: bool
) -> None:  # type: ignore[no-untyped-def]
    server, seen = header_upstream
    upstream = {"type": "roundrobin", "nodes": {f"127.0.0.1:{server.port}": 1}}
    await cached_route(gateway, {}, upstream=upstream)
    await gateway.proxy.get(f"/u?{query}")
    second = await gateway.proxy.get(f"/u?{query}")
    assert second.headers[STATUS] == ("HIT" if stored else "MISS")
    assert len(seen) == (1 if stored else 2)


async def test_disk_honours_upstream_max_age(gateway, header_upstream) -> None:  # type: ignore[no-untyped-def]
    server, _ = header_upstream
    upstream = {"type": "roundrobin", "nodes": {f"127.0.0.1:{server.port}": 1}}
    await cached_route(gateway, {}, upstream=upstream)
    clock = Clock()
    store_of(gateway, "disk").clock = clock
    await gateway.proxy.get("/m?Cache-Control=max-age%3D100")
    clock.now += 50  # past the 10 s default, within max-age
    assert (await gateway.proxy.get("/m?Cache-Control=max-age%3D100")).headers[STATUS] == "HIT"


@pytest.mark.parametrize(
    ("conf", "query"),
    [
        pytest.param({}, "Cache-Control=max-age%3D" + "9" * 20, id="max-age-past-time_t"),
        pytest.param({}, "Cache-Control=max-age%3D" + "9" * 400, id="max-age-past-float"),
        pytest.param({}, "Cache-Control=s-maxage%3D" + "9" * 5000, id="max-age-past-int-digits"),
        pytest.param({"cache_ttl": 2**63 - 1}, "", id="cache_ttl-past-time_t"),
    ],
)
async def test_a_huge_lifetime_is_stored_for_2_to_the_31_seconds(
    gateway, header_upstream, conf: dict[str, Any], query: str
) -> None:  # type: ignore[no-untyped-def]
    """RFC 9111 1.2.2: a delta-seconds past what the cache can hold counts as 2**31."""
    server, seen = header_upstream
    upstream = {"type": "roundrobin", "nodes": {f"127.0.0.1:{server.port}": 1}}
    await cached_route(gateway, conf, upstream=upstream)
    first = await gateway.proxy.get(f"/huge?{query}")
    assert first.status == 200 and first.headers[STATUS] == "MISS"
    await store_of(gateway, "disk").flush()  # the write done, or failed
    second = await gateway.proxy.get(f"/huge?{query}")
    assert second.headers[STATUS] == "HIT" and len(seen) == 1


async def test_vary_selects_the_variant(gateway, header_upstream) -> None:  # type: ignore[no-untyped-def]
    server, seen = header_upstream
    upstream = {"type": "roundrobin", "nodes": {f"127.0.0.1:{server.port}": 1}}
    await cached_route(gateway, {"cache_strategy": "memory"}, upstream=upstream)
    english = {"Accept-Language": "en"}
    await gateway.proxy.get("/v?Vary=Accept-Language", headers=english)
    hit = await gateway.proxy.get("/v?Vary=Accept-Language", headers=english)
    assert hit.headers[STATUS] == "HIT"
    french = await gateway.proxy.get("/v?Vary=Accept-Language", headers={"Accept-Language": "fr"})
    assert french.headers[STATUS] == "MISS"
    assert len(seen) == 2


async def test_request_cache_control_with_cache_control(gateway) -> None:  # type: ignore[no-untyped-def]
    conf = {"cache_strategy": "memory", "cache_control": True}
    await cached_route(gateway, conf)
    only_cached = await gateway.proxy.get("/c", headers={"Cache-Control": "only-if-cached"})
    assert only_cached.status == 504
    await gateway.proxy.get("/c")
    assert (await gateway.proxy.get("/c")).headers[STATUS] == "HIT"
    no_cache = await gateway.proxy.get("/c", headers={"Cache-Control": "no-cache"})
    assert no_cache.headers[STATUS] == "BYPASS"
    clock = Clock()
    store_of(gateway, "memory").clock = clock
    clock.now += 5
    stale = await gateway.proxy.get("/c", headers={"Cache-Control": "max-age=2"})
    assert stale.headers[STATUS] == "STALE"


async def test_consumers_never_share_entries(gateway) -> None:  # type: ignore[no-untyped-def]
    for name in ("alice", "bob"):
        plugins = {"basic-auth": {"username": name, "password": f"{name}-pw"}}
        await gateway.put(f"consumers/{name}", {"username": name, "plugins": plugins})
    conf = {**SEED, "cache_strategy": "memory"}
    await cached_route(gateway, conf, uri="/v1/chat/completions", plugins={"basic-auth": {}})
    alice = {"Authorization": encode_basic_auth("alice", "alice-pw")}
    bob = {"Authorization": encode_basic_auth("bob", "bob-pw")}
    path, body = "/v1/chat/completions", chat("same prompt")
    for who, expected in ((alice, "MISS"), (alice, "HIT"), (bob, "MISS"), (bob, "HIT")):
        resp = await gateway.proxy.post(path, json=body, headers=who)
        assert resp.status == 200 and resp.headers[STATUS] == expected
    assert len(await gateway.fake_requests()) == 2


async def read_chunks(resp) -> list[bytes]:  # type: ignore[no-untyped-def]
    """The HTTP chunks of a response, as the client receives them."""
    chunks, current = [], b""
    async for data, end_of_chunk in resp.content.iter_chunks():
        current += data
        if end_of_chunk:
            chunks.append(current)
            current = b""
    return [*chunks, current] if current else chunks


@STRATEGIES
async def test_streams_are_stored_and_replayed_as_streams(gateway, strategy: str) -> None:  # type: ignore[no-untyped-def]
    await cached_route(gateway, {**SEED, "cache_strategy": strategy}, uri="/v1/chat/completions")
    body = chat("tell me a story", stream=True)
    slow = {"X-Fake-Stream-Delay-Ms": "2"}
    miss = await gateway.proxy.post("/v1/chat/completions", json=body, headers=slow)
    assert miss.headers[STATUS] == "MISS"
    assert miss.headers["Content-Type"].startswith("text/event-stream")
    live = await read_chunks(miss)
    assert len(live) > 1
    hit = await gateway.proxy.post("/v1/chat/completions", json=body)
    assert hit.headers[STATUS] == "HIT"
    assert hit.headers["Content-Type"].startswith("text/event-stream")
    assert "Content-Length" not in hit.headers
    replay = await read_chunks(hit)
    assert b"".join(replay) == b"".join(live)
    assert len(replay) > 1
    assert b"".join(replay).endswith(b"data: [DONE]\n\n")
    assert len(await gateway.fake_requests()) == 1


@STRATEGIES
async def test_a_stream_broken_mid_way_is_not_stored(gateway, strategy: str) -> None:  # type: ignore[no-untyped-def]
    await cached_route(gateway, {**SEED, "cache_strategy": strategy}, uri="/v1/chat/completions")
    body = chat("cut me", stream=True)
    broken = await gateway.proxy.post(
        "/v1/chat/completions", json=body, headers={"X-Fake-Drop": "mid-stream"}
    )
    with contextlib.suppress(Exception):
        await broken.read()
    assert (await gateway.proxy.post("/v1/chat/completions", json=body)).headers[STATUS] == "MISS"
    assert (await gateway.proxy.post("/v1/chat/completions", json=body)).headers[STATUS] == "HIT"


@pytest.mark.parametrize("stream", [True, False])
async def test_responses_over_the_size_bound_are_not_stored(gateway, stream: bool) -> None:  # type: ignore[no-untyped-def]
    conf = {**SEED, "cache_strategy": "memory", "max_resp_body_size": 64}
    await cached_route(gateway, conf, uri="/v1/chat/completions")
    body = chat("long", stream=stream)
    first = await gateway.proxy.post("/v1/chat/completions", json=body)
    assert len(await first.read()) > 64  # the client still gets all of it
    assert (await gateway.proxy.post("/v1/chat/completions", json=body)).headers[STATUS] == "MISS"


async def test_disk_entries_survive_a_restart(
    gateway, aiohttp_client, aiohttp_raw_server, cache_dir: Path
) -> None:  # type: ignore[no-untyped-def]
    await cached_route(gateway, {**SEED, "cache_strategy": "disk"}, uri="/v1/chat/completions")
    first = await gateway.proxy.post("/v1/chat/completions", json=chat("durable"))
    assert first.headers[STATUS] == "MISS"
    await store_of(gateway, "disk").flush()  # type: ignore[union-attr]
    assert glob.glob(f"{cache_dir}/disk_cache_one/*/*/*/POST-*")
    # A new process: new Services and loader, same store and cache directory.
    services = Services()
    loader = SnapshotLoader(gateway.store, services, interval=0.05)
    await loader.start()
    try:
        proxy = await aiohttp_client(await aiohttp_raw_server(make_handler(loader)))
        again = await proxy.post("/v1/chat/completions", json=chat("durable"))
        assert again.headers[STATUS] == "HIT"
        assert await again.read() == await first.read()
    finally:
        await loader.stop()
        await services.close()
    assert len(await gateway.fake_requests()) == 1


@STRATEGIES
async def test_concurrent_requests(gateway, strategy: str) -> None:  # type: ignore[no-untyped-def]
    await cached_route(gateway, {"cache_strategy": strategy})
    answers = await asyncio.gather(*(gateway.proxy.get(f"/k{i % 5}") for i in range(40)))
    assert all(resp.status == 200 for resp in answers)
    assert {resp.headers[STATUS] for resp in answers} <= {"MISS", "HIT"}
    for i in range(5):
        assert (await gateway.proxy.get(f"/k{i}")).headers[STATUS] == "HIT"


def test_the_store_outlives_the_plugin_instance() -> None:
    services = Services()
    config = ProxyCache.Config.model_validate({"cache_strategy": "memory"})
    first = ProxyCache(config, services, "route/1#a")
    second = ProxyCache(config, services, "route/1#b")
    assert first.store is second.store


# --- pure functions -----------------------------------------------------------------------------


def test_keys_hash_bodies_and_isolate_identities() -> None:
    get = build_key("host/uri", None, "GET", None)
    assert get == CacheKey("host/uri", "GET")
    assert build_key("host/uri", None, "HEAD", None).variant == "HEAD"
    one, same = build_key("k", None, "POST", b'{"p":1}'), build_key("k", None, "POST", b'{"p":1}')
    other = build_key("k", None, "POST", b'{"p":2}')
    assert one == same and one != other and one.primary == other.primary
    assert one.variant == "POST-" + hashlib.sha256(b'{"p":1}').hexdigest()
    alice, bob = build_key("k", "alice", "GET", None), build_key("k", "bob", "GET", None)
    assert alice.primary == "alice\x01k" and alice != bob
    assert build_key("k", "", "GET", None) == build_key("k", None, "GET", None)


def test_credentials_identity_is_the_exact_credentials() -> None:
    def headers(**values: str):  # type: ignore[no-untyped-def]
        return CIMultiDict({name.replace("_", "-"): value for name, value in values.items()}).get

    assert credentials_identity(headers()) is None
    right = credentials_identity(headers(authorization="Basic " + _basic("ann:pw")))
    wrong = credentials_identity(headers(authorization="Basic " + _basic("ann:guess")))
    assert right is not None and wrong is not None and right != wrong
    assert right.startswith("credentials:")  # never equal to a consumer name
    assert credentials_identity(headers(apikey="k1")) != credentials_identity(headers(apikey="k2"))
    # The header's name counts too: a key sent as another header is another identity.
    assert credentials_identity(headers(apikey="k1")) != credentials_identity(
        headers(x_api_key="k1")
    )


def _basic(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({}, False),
        ({"a": ""}, False),
        ({"a": "0"}, False),
        ({"a": "0", "b": "0"}, False),  # APISIX would join them into "00" and bypass
        ({"a": "1"}, True),
        ({"a": "", "b": "yes"}, True),
    ],
)
def test_any_set(values: dict[str, str], expected: bool) -> None:
    parts = compile_parts(["$a", "$b"])
    assert any_set(parts, values.get) is expected
    assert any_set(compile_parts(["literal"]), values.get) is True


def test_render() -> None:
    parts = compile_parts(["$uri", "-cache-id", "$missing"])
    assert render(parts, {"uri": "/v1/x"}.get) == "/v1/x-cache-id"


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([], {}),
        (["no-cache"], {"no-cache": True}),
        (["Private, Max-Age=60"], {"private": True, "max-age": "60"}),
        (['max-age="5"', "no-store"], {"max-age": "5", "no-store": True}),
    ],
)
def test_parse_directives(values: list[str], expected: dict[str, Any]) -> None:
    assert parse_directives(values) == expected


NOW = 1_700_000_000.0


@pytest.mark.parametrize(
    ("directives", "expires", "lifetime"),
    [
        ({}, None, None),
        ({"max-age": "60"}, None, 60.0),
        ({"max-age": "60", "s-maxage": "5"}, None, 5.0),
        ({"max-age": "-3"}, None, 0.0),
        ({"max-age": "soon"}, formatdate(NOW + 30, usegmt=True), 30.0),
        ({}, formatdate(NOW - 30, usegmt=True), 0.0),
        ({}, "not a date", 0.0),
        ({"max-age": "99999999999999999999"}, None, 2.0**31),
        ({"max-age": "9" * 400}, None, 2.0**31),  # past a float
        ({"s-maxage": "9" * 5000}, None, 2.0**31),  # past Python's int() digits
        ({"max-age": "\u00b2"}, None, None),  # a digit to str.isdigit, not to int()
    ],
)
def test_freshness(directives: dict[str, Any], expires: str | None, lifetime: float | None) -> None:
    assert freshness(directives, expires, NOW) == lifetime


DISK = StorePolicy(frozenset({200}), False, False, honour_upstream=True, default_ttl=10)
MEMORY = StorePolicy(frozenset({200}), False, False, honour_upstream=False, default_ttl=300)
STRICT = StorePolicy(frozenset({200}), True, False, honour_upstream=True, default_ttl=300)
COOKIES = StorePolicy(frozenset({200}), False, True, honour_upstream=False, default_ttl=300)
HUGE = StorePolicy(frozenset({200}), False, False, honour_upstream=False, default_ttl=2**63)
JSON, SSE = "application/json", "text/event-stream"


@pytest.mark.parametrize(
    ("policy", "status", "cc", "content_type", "cookie", "vary", "ttl"),
    [
        (DISK, 200, [], JSON, False, None, 10),
        (DISK, 500, [], JSON, False, None, None),
        (DISK, 200, ["max-age=60"], JSON, False, None, 60),
        (DISK, 200, ["max-age=0"], JSON, False, None, None),
        (MEMORY, 200, ["max-age=60"], JSON, False, None, 300),  # memory: cache_ttl
        (STRICT, 200, ["max-age=60"], JSON, False, None, 60),
        (STRICT, 200, [], JSON, False, None, 300),
        (MEMORY, 200, ["no-store"], JSON, False, None, None),
        (MEMORY, 200, ["private"], JSON, False, None, None),
        (MEMORY, 200, ["no-cache"], JSON, False, None, None),
        (MEMORY, 200, ["no-cache"], SSE, False, None, 300),  # the SSE convention
        (STRICT, 200, ["no-cache"], SSE, False, None, None),
        (MEMORY, 200, [], JSON, True, None, None),
        (COOKIES, 200, [], JSON, True, None, 300),
        (MEMORY, 200, [], JSON, False, "Accept, *", None),
        (MEMORY, 200, [], JSON, False, "Accept", 300),
        (HUGE, 200, [], JSON, False, None, 2**31),  # cache_ttl past a timestamp
    ],
)
def test_store_policy(
    policy: StorePolicy,
    status: int,
    cc: list[str],
    content_type: str,
    cookie: bool,
    vary: str | None,
    ttl: float | None,
) -> None:
    assert policy.ttl(status, cc, None, content_type, cookie, vary, NOW) == ttl


@pytest.mark.parametrize(
    ("age", "request_cc", "status"),
    [
        (5, {}, "HIT"),
        (10, {}, "EXPIRED"),
        (5, {"max-age": "10"}, "HIT"),
        (5, {"max-age": "2"}, "STALE"),
        (5, {"min-fresh": "3"}, "HIT"),
        (5, {"min-fresh": "6"}, "STALE"),
    ],
)
def test_lookup_status(age: float, request_cc: dict[str, Any], status: str) -> None:
    assert lookup_status(NOW - age, 10, NOW, request_cc) == status


def entry(primary: str = "k", variant: str = "GET", body: bytes = b"hello", **extra: Any) -> Entry:
    fields: dict[str, Any] = {
        "key": CacheKey(primary, variant),
        "status": 200,
        "headers": (("Content-Type", "text/plain"), ("X-A", "1"), ("X-A", "2")),
        "chunks": (body[:2], body[2:]) if body else (),
        "stream": True,
        "created": NOW,
        "ttl": 300.0,
        "vary": (("accept-language", "en"),),
    }
    return Entry(**{**fields, **extra})


def test_entry_round_trip() -> None:
    original = entry(primary="alice\x01/v1/é")
    assert Entry.decode(original.encode()) == original
    assert Entry.decode(entry(body=b"").encode()) == entry(body=b"")


@pytest.mark.parametrize(
    "data",
    [b"", b"junk", MAGIC, MAGIC + b"\x00\x00\x00\x05{}", MAGIC + b"\x00\x00\x00\x02{}"],
)
def test_entry_rejects_foreign_or_torn_files(data: bytes) -> None:
    with pytest.raises(ValueError):
        Entry.decode(data)
    with pytest.raises(ValueError):
        Entry.decode(entry().encode()[:-1])


async def test_memory_store_is_an_lru_bounded_by_bytes() -> None:
    size = entry().size
    store = MemoryStore(capacity=size * 3)
    for name in ("a", "b", "c"):
        await store.put(entry(name))
    assert await store.get(CacheKey("a", "GET")) is not None  # a is now the most recent
    await store.put(entry("d"))
    assert await store.get(CacheKey("b", "GET")) is None  # the least recent went
    assert len(store) == 3 and store.size == size * 3
    await store.put(entry("huge", body=b"x" * size * 4))  # larger than the store: skipped
    assert len(store) == 3


async def test_memory_store_purges_variants() -> None:
    store = MemoryStore()
    for variant in ("GET", "POST-1", "POST-2"):
        await store.put(entry("k", variant))
    await store.put(entry("other"))
    assert await store.purge("k", "POST-1") is True
    assert await store.purge("k", "POST-1") is False
    assert await store.purge("k") is True
    assert await store.purge("k") is False
    assert len(store) == 1 and store.size == entry("other").size


async def test_disk_store_is_shared_and_atomic(tmp_path: Path) -> None:
    writer, reader = DiskStore(tmp_path / "zone"), DiskStore(tmp_path / "zone")
    stored = entry("k", "POST-1")
    await writer.put(stored)
    assert await writer.get(stored.key) == stored  # at once, before the file lands
    await writer.flush()
    assert await reader.get(stored.key) == stored  # another process's entry is a hit
    assert not list((tmp_path / "zone").rglob(".tmp-*"))
    await writer.put(entry("k", "GET"))
    await writer.flush()
    assert await reader.purge("k", "POST-1") is True
    assert await writer.get(stored.key) is None
    assert await reader.purge("k") is True
    assert await writer.get(CacheKey("k", "GET")) is None
    assert await reader.purge("k") is False


async def test_disk_store_drops_unreadable_entries(tmp_path: Path) -> None:
    store = DiskStore(tmp_path)
    key = CacheKey("k", "GET")
    path = store.path(key)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"half an entry")
    assert await store.get(key) is None
    assert not path.exists()
    path.write_bytes(entry("another key").encode())  # a hash collision is never served
    assert await store.get(key) is None


async def test_disk_store_without_a_configured_directory_is_temporary(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("LLMGATE_CACHE_DIR")
    store = DiskStore.open("disk_cache_one")
    root = store.directory.parent
    assert root.name.startswith("llmgate-cache-") and (root.stat().st_mode & 0o077) == 0
    await store.put(entry())
    await store.close()
    assert not root.exists()
