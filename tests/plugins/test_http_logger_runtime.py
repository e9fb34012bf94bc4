"""http-logger at run time, against a local collector: batches, latency isolation, retries."""

from __future__ import annotations

import asyncio
import socket
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from llmgate.observability.batch import BatchProcessor
from tests.net import http_json
from tests.processes import fake_upstream_process


@dataclass
class Collector:
    """A log collector: records each POST; ``delay`` / ``status`` shape its answers."""

    posts: list[dict[str, Any]] = field(default_factory=list)
    delay: float = 0.0
    status: int = 200
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.posts.append({"headers": dict(request.headers), "body": body, "path": request.path_qs})
        if self.delay:
            await asyncio.sleep(self.delay)
        return web.Response(status=self.status, text="ok" if self.status < 400 else "broken")

    def entries(self) -> list[Any]:
        out: list[Any] = []
        for post in self.posts:
            decoded = orjson.loads(post["body"])
            out.extend(decoded if isinstance(decoded, list) else [decoded])
        return out


async def start_collector(aiohttp_server, **knobs: Any) -> Collector:  # type: ignore[no-untyped-def]
    collector = Collector(**knobs)
    app = web.Application()
    app.router.add_post("/{tail:.*}", collector.handle)
    server = await aiohttp_server(app)
    collector.url = f"http://127.0.0.1:{server.port}/logs?src=llmgate"
    return collector


async def route(gateway, **conf: Any) -> BatchProcessor:  # type: ignore[no-untyped-def]
    await gateway.put(
        "routes/1",
        {"uri": "/*", "plugins": {"http-logger": conf}, "upstream": gateway.upstream()},
    )
    (processor,) = [
        value
        for key, value in gateway.services.shared.items()
        if key.startswith("http-logger:") and isinstance(value, BatchProcessor)
    ]
    return processor


async def until(predicate: Any, seconds: float = 3.0) -> None:
    async with asyncio.timeout(seconds):
        while not predicate():  # noqa: ASYNC110 (polls what another task changes)
            await asyncio.sleep(0.01)


async def test_batch_is_posted_as_a_json_array(gateway, aiohttp_server) -> None:  # type: ignore[no-untyped-def]
    collector = await start_collector(aiohttp_server)
    processor = await route(
        gateway, uri=collector.url, batch_max_size=3, auth_header="Bearer collector-token"
    )
    for i in range(3):
        assert (await gateway.proxy.get(f"/echo/{i}", headers={"apikey": "k"})).status == 200

    await until(lambda: processor.sent == 3)
    (post,) = collector.posts
    assert post["path"] == "/logs?src=llmgate"
    assert post["headers"]["Content-Type"] == "application/json"
    assert post["headers"]["Authorization"] == "Bearer collector-token"
    entries = orjson.loads(post["body"])
    assert isinstance(entries, list)
    assert [entry["request"]["uri"] for entry in entries] == ["/echo/0", "/echo/1", "/echo/2"]
    entry = entries[0]
    assert entry["route_id"] == "1"
    assert entry["response"]["status"] == 200
    assert entry["upstream"] == gateway.fake_address
    assert entry["request"]["headers"]["apikey"] == "***"
    assert {"latency", "upstream_latency", "apisix_latency", "start_time", "server"} <= set(entry)


async def test_batch_of_one_is_a_single_object(gateway, aiohttp_server) -> None:  # type: ignore[no-untyped-def]
    collector = await start_collector(aiohttp_server)
    processor = await route(gateway, uri=collector.url, batch_max_size=1)
    assert (await gateway.proxy.get("/one")).status == 200
    await until(lambda: processor.sent == 1)
    body = orjson.loads(collector.posts[0]["body"])
    assert isinstance(body, dict)
    assert body["request"]["uri"] == "/one"


async def test_new_line_concat(gateway, aiohttp_server) -> None:  # type: ignore[no-untyped-def]
    collector = await start_collector(aiohttp_server)
    processor = await route(gateway, uri=collector.url, batch_max_size=2, concat_method="new_line")
    for path in ("/a", "/b"):
        assert (await gateway.proxy.get(path)).status == 200
    await until(lambda: processor.sent == 2)
    (post,) = collector.posts
    assert post["headers"]["Content-Type"] == "text/plain"
    lines = [orjson.loads(line) for line in post["body"].split(b"\n")]
    assert [line["request"]["uri"] for line in lines] == ["/a", "/b"]


async def test_inactive_timeout_sends_a_partial_batch(gateway, aiohttp_server) -> None:  # type: ignore[no-untyped-def]
    collector = await start_collector(aiohttp_server)
    processor = await route(gateway, uri=collector.url, batch_max_size=100, inactive_timeout=1)
    started = time.monotonic()
    for path in ("/a", "/b"):
        assert (await gateway.proxy.get(path)).status == 200
    await asyncio.sleep(0.3)
    assert collector.posts == []
    await until(lambda: processor.sent == 2)
    assert 1.0 <= time.monotonic() - started < 2.0
    assert len(collector.posts) == 1


async def test_slow_collector_never_slows_requests(gateway, aiohttp_server) -> None:  # type: ignore[no-untyped-def]
    collector = await start_collector(aiohttp_server, delay=2.0)
    processor = await route(gateway, uri=collector.url, batch_max_size=1, timeout=5)
    assert (await gateway.proxy.get("/warm")).status == 200
    await until(lambda: len(collector.posts) == 1)  # the collector is now busy for 2 s

    slowest = 0.0
    for i in range(20):
        started = time.perf_counter()
        resp = await gateway.proxy.get(f"/r/{i}")
        assert resp.status == 200
        await resp.read()
        slowest = max(slowest, time.perf_counter() - started)
    # a request that waited for the busy collector would take its 2 s; the bound is far above a
    # normal request (a few ms) so that a loaded machine does not fail it
    assert slowest < 1.5
    assert processor.sent == 0  # nothing delivered yet: the collector is still sleeping

    processor.close_timeout = 0.05
    started = time.monotonic()
    await processor.close()
    assert time.monotonic() - started < 0.5
    assert processor.dropped == 21


async def test_down_collector_is_retried_then_dropped(gateway) -> None:  # type: ignore[no-untyped-def]
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens there once closed
    processor = await route(
        gateway,
        uri=f"http://127.0.0.1:{port}/logs",
        batch_max_size=1,
        max_retry_count=2,
        retry_delay=0,
    )
    started = time.perf_counter()
    assert (await gateway.proxy.get("/x")).status == 200
    assert time.perf_counter() - started < 0.3
    await until(lambda: processor.dropped == 1)
    assert (processor.sent, processor.retried) == (0, 2)


async def test_error_status_is_a_failure(gateway, aiohttp_server) -> None:  # type: ignore[no-untyped-def]
    collector = await start_collector(aiohttp_server, status=500)
    processor = await route(
        gateway, uri=collector.url, batch_max_size=1, max_retry_count=1, retry_delay=0
    )
    assert (await gateway.proxy.get("/x")).status == 200
    await until(lambda: processor.dropped == 1)
    assert processor.retried == 1
    assert len(collector.posts) == 2


async def test_log_format(gateway, aiohttp_server) -> None:  # type: ignore[no-untyped-def]
    collector = await start_collector(aiohttp_server)
    processor = await route(
        gateway,
        uri=collector.url,
        batch_max_size=1,
        log_format={
            "host": "$host",
            "client_ip": "$remote_addr",
            "auth": "$http_authorization",
            "http": {"method": "$request_method", "status": "$status"},
            "team": "llm",
        },
    )
    resp = await gateway.proxy.post("/x", data=b"{}", headers={"Authorization": "Bearer s3cr3t"})
    assert resp.status == 200
    await until(lambda: processor.sent == 1)
    assert collector.entries() == [
        {
            "host": "127.0.0.1",
            "client_ip": "127.0.0.1",
            "auth": "***",
            "http": {"method": "POST", "status": "200"},
            "team": "llm",
            "route_id": "1",
        }
    ]


async def test_include_req_body(gateway, aiohttp_server) -> None:  # type: ignore[no-untyped-def]
    collector = await start_collector(aiohttp_server)
    processor = await route(
        gateway,
        uri=collector.url,
        batch_max_size=2,
        include_req_body=True,
        max_req_body_bytes=10,
    )
    for body in (b'{"prompt":"hello"}', b"short"):
        assert (await gateway.proxy.post("/x", data=body)).status == 200
    await until(lambda: processor.sent == 2)
    assert [entry["request"]["body"] for entry in collector.entries()] == [
        '{"prompt":',
        "short",
    ]


async def test_processor_survives_unrelated_reloads_and_closes_with_services(
    gateway, aiohttp_server
) -> None:  # type: ignore[no-untyped-def]
    collector = await start_collector(aiohttp_server)
    processor = await route(gateway, uri=collector.url, batch_max_size=100, inactive_timeout=60)
    assert (await gateway.proxy.get("/a")).status == 200
    await gateway.put("routes/2", {"uri": "/other", "upstream": gateway.upstream()})
    assert (await gateway.proxy.get("/b")).status == 200
    kept = [
        value for key, value in gateway.services.shared.items() if key.startswith("http-logger:")
    ]
    assert kept == [processor]
    assert collector.posts == []

    await gateway.services.close()  # flushes what is queued
    assert processor.sent == 2
    assert [entry["request"]["uri"] for entry in collector.entries()] == ["/a", "/b"]


async def test_ssl_verify_checks_the_collectors_certificate(gateway) -> None:  # type: ignore[no-untyped-def]
    # A fake-upstream process answers TLS with a certificate no public CA signed; its record
    # shows what reached it.
    with fake_upstream_process() as port:
        logs = f"https://127.0.0.1:{port}/logs"
        processor = await route(gateway, uri=logs, batch_max_size=1, ssl_verify=True)
        assert (await gateway.proxy.get("/echo/verified")).status == 200
        await until(lambda: processor.dropped + processor.retried >= 1 or processor.sent >= 1)
        assert processor.sent == 0
        await gateway.put(
            "routes/1",
            {
                "uri": "/*",
                "plugins": {"http-logger": {"uri": logs + "?unverified", "batch_max_size": 1}},
                "upstream": gateway.upstream(),
            },
        )
        (processor,) = [v for k, v in gateway.services.shared.items() if "unverified" in k]
        assert (await gateway.proxy.get("/echo/unverified")).status == 200
        await until(lambda: processor.sent == 1)
        _, recorded = http_json("GET", f"http://127.0.0.1:{port}/__fake/requests")
        assert [r["path"] for r in recorded["requests"]] == ["/logs"]


async def logged(gateway, **conf: Any) -> None:  # type: ignore[no-untyped-def]
    """Route 1 with this http-logger config (a new config: a new batch processor)."""
    plugins = {"http-logger": conf}
    await gateway.put("routes/1", {"uri": "/*", "plugins": plugins, "upstream": gateway.upstream()})


async def test_log_format_from_plugin_metadata(gateway, aiohttp_server) -> None:  # type: ignore[no-untyped-def]
    """Without a log_format of its own, http-logger takes its plugin metadata's (and its
    log_format_extra), as APISIX's log-util does; the route's own log_format wins."""
    collector = await start_collector(aiohttp_server)
    await gateway.put(
        "plugin_metadata/http-logger",
        {"log_format": {"m": "$request_method", "team": "llm"}},
    )
    await logged(gateway, uri=collector.url, batch_max_size=1)
    assert (await gateway.proxy.post("/x", data=b"{}")).status == 200
    await until(lambda: len(collector.entries()) == 1)
    assert collector.entries() == [{"m": "POST", "team": "llm", "route_id": "1"}]

    await logged(gateway, uri=collector.url, batch_max_size=1, log_format={"o": "1"})
    assert (await gateway.proxy.get("/x")).status == 200
    await until(lambda: len(collector.entries()) == 2)
    assert collector.entries()[-1] == {"o": "1", "route_id": "1"}

    # A metadata change reaches the route without touching it.
    await gateway.put("plugin_metadata/http-logger", {"log_format_extra": {"extra": "$uri"}})
    await logged(gateway, uri=collector.url, batch_max_size=1)
    assert (await gateway.proxy.get("/y")).status == 200
    await until(lambda: len(collector.entries()) == 3)
    entry = collector.entries()[-1]
    assert entry["extra"] == "/y" and "request" in entry  # the full entry, plus extra

    # Plugins without metadata, unknown plugins and unknown fields are refused.
    answer = await gateway.put("plugin_metadata/key-auth", {}, 400)
    assert answer["error_msg"] == "plugin key-auth has no plugin metadata in llmgate"
    answer = await gateway.put("plugin_metadata/nope", {}, 400)
    assert answer["error_msg"] == "invalid plugin name"
    await gateway.put("plugin_metadata/http-logger", {"max_pending_entries": 10}, 400)
