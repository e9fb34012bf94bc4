"""Upstream timeouts, health checks, retries and keep-alive against a real ``llmgate serve``.

One gateway for the module; node A is the gateway's own fake upstream, node B another fake
process that tests stop (a dead node: connections refused), start again, or make slow.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from tests.net import (
    ConnectionClosed,
    FakeUpstream,
    LiveGateway,
    RawClient,
    connections_to,
    exchange,
    fake_requests_at,
    request_bytes,
    reset_fake_knobs,
    set_fake_knobs,
    wait_for,
)

CHAT = b'{"messages": [{"role": "user", "content": "hi"}]}'


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveGateway]:
    with LiveGateway(tmp_path_factory.mktemp("upstream-health")) as gateway:
        yield gateway


@pytest.fixture
def node_b() -> Iterator[FakeUpstream]:
    with FakeUpstream() as fake:
        yield fake


def get(live: LiveGateway, path: str, **headers: str) -> int:
    return exchange(live.proxy_port, request_bytes("GET", path, headers)).status


def post(live: LiveGateway, path: str) -> int:
    raw = request_bytes("POST", path, {"Content-Type": "application/json"}, CHAT)
    return exchange(live.proxy_port, raw).status


def nodes(*addresses: str) -> list[dict[str, Any]]:
    return [
        {"host": host, "port": int(port), "weight": 1}
        for host, port in (a.split(":") for a in addresses)
    ]


def upstream_status(live: LiveGateway, name: str, address: str) -> float | None:
    ip, port = address.split(":")
    pattern = (
        rf'^llmgate_upstream_status\{{name="{re.escape(name)}",ip="{ip}",port="{port}"\}} (\S+)$'
    )
    found = re.search(pattern, live.metrics(), re.MULTILINE)
    return float(found.group(1)) if found else None


def wait_for_status(
    live: LiveGateway, name: str, address: str, wanted: float, within: float
) -> float:
    """Seconds until ``upstream_status`` of the node reads ``wanted`` (fails after
    ``within``)."""
    began = time.monotonic()
    while upstream_status(live, name, address) != wanted:
        elapsed = time.monotonic() - began
        assert elapsed < within, f"{address} not {wanted} after {elapsed:.1f} s"
        time.sleep(0.1)
    return time.monotonic() - began


def deliveries(address: str, path: str) -> int:
    return sum(1 for r in fake_requests_at(address) if r["path"] == path)


def test_a_route_read_timeout_of_1s_gives_504_in_under_2s(live: LiveGateway) -> None:
    upstream = live.upstream(timeout={"connect": 10, "send": 10, "read": 10}, retries=0)
    timeout = {"connect": 1, "send": 1, "read": 1}
    live.put("routes/timeout", {"uri": "/timeout", "upstream": upstream, "timeout": timeout})
    assert get(live, "/timeout") == 200  # warm-up: a connection is kept
    began = time.monotonic()
    status = get(live, "/timeout", **{"X-Fake-Latency-Ms": "3000"})
    elapsed = time.monotonic() - began
    assert status == 504
    assert 0.9 < elapsed < 2.0


def test_passive_checks_take_a_dead_node_out_after_the_configured_failures(
    live: LiveGateway, node_b: FakeUpstream
) -> None:
    checks = {
        # Probes far apart: only traffic decides here.
        "active": {"healthy": {"interval": 300}, "unhealthy": {"interval": 300}},
        "passive": {"unhealthy": {"tcp_failures": 3}},
    }
    upstream = {"nodes": nodes(live.fake_address, node_b.address), "retries": 0, "checks": checks}
    live.put("upstreams/passive", upstream)
    live.put("routes/passive", {"uri": "/passive", "upstream_id": "passive"})
    assert upstream_status(live, "/apisix/upstreams/passive", node_b.address) == 1
    node_b.stop()
    statuses = Counter(get(live, "/passive") for _ in range(26))
    assert statuses == {502: 3, 200: 23}  # three refused, then never again
    tail = [get(live, "/passive") for _ in range(20)]
    assert tail == [200] * 20
    assert upstream_status(live, "/apisix/upstreams/passive", node_b.address) == 0


def test_active_checks_take_a_dead_node_out_within_two_intervals_and_bring_it_back(
    live: LiveGateway, node_b: FakeUpstream
) -> None:
    interval = 1
    checks = {
        "active": {
            "http_path": "/health",
            "healthy": {"interval": interval, "successes": 1},
            "unhealthy": {"interval": interval, "tcp_failures": 1, "http_failures": 1},
        }
    }
    upstream = {"nodes": nodes(live.fake_address, node_b.address), "checks": checks}
    live.put("routes/active", {"uri": "/active", "upstream": upstream})
    name = "/apisix/routes/active"
    wait_for_status(live, name, node_b.address, 1, 10)
    node_b.stop()
    taken_out = wait_for_status(live, name, node_b.address, 0, 10)
    assert taken_out <= 2 * interval + 0.5  # (+ the scrape's own polling)
    statuses = [get(live, "/active") for _ in range(20)]
    assert statuses == [200] * 20  # no request even tried the dead node (no 502, no retry)
    node_b.start()
    wait_for_status(live, name, node_b.address, 1, 2 * interval + 5)
    statuses = [get(live, "/active") for _ in range(20)]
    assert statuses == [200] * 20
    assert deliveries(node_b.address, "/active") >= 5  # it takes its share again


def test_an_unhealthy_status_takes_a_node_out_and_its_recovery_brings_it_back(
    live: LiveGateway, node_b: FakeUpstream
) -> None:
    checks = {
        "active": {
            "http_path": "/health",
            "healthy": {"interval": 1, "successes": 2},
            "unhealthy": {"interval": 1, "http_failures": 2},
        },
        "passive": {"unhealthy": {"http_statuses": [503], "http_failures": 2}},
    }
    upstream = {"nodes": nodes(live.fake_address, node_b.address), "retries": 0, "checks": checks}
    live.put("routes/status", {"uri": "/status", "upstream": upstream})
    name = "/apisix/routes/status"
    wait_for_status(live, name, node_b.address, 1, 10)
    set_fake_knobs(node_b.address, status=503)
    try:
        wait_for_status(live, name, node_b.address, 0, 10)
        assert [get(live, "/status") for _ in range(20)] == [200] * 20
    finally:
        reset_fake_knobs(node_b.address)
    wait_for_status(live, name, node_b.address, 1, 10)
    assert [get(live, "/status") for _ in range(20)] == [200] * 20


def test_all_nodes_unhealthy_means_all_are_used(live: LiveGateway, node_b: FakeUpstream) -> None:
    """The attacker's view: a client who can make every node answer 503 (here with the fake's
    knob, as a prompt that trips a provider's error would) gets every node marked unhealthy,
    and the upstream still serves everyone else (APISIX: all unhealthy, use them all)."""
    checks = {
        "active": {"healthy": {"interval": 300}, "unhealthy": {"interval": 300}},
        "passive": {"unhealthy": {"http_statuses": [503], "http_failures": 1}},
    }
    upstream = {"nodes": nodes(live.fake_address, node_b.address), "retries": 0, "checks": checks}
    live.put("routes/all-down", {"uri": "/all-down", "upstream": upstream})
    for _ in range(4):
        assert get(live, "/all-down", **{"X-Fake-Status": "503"}) == 503
    name = "/apisix/routes/all-down"
    assert upstream_status(live, name, live.fake_address) == 0
    assert upstream_status(live, name, node_b.address) == 0
    assert [get(live, "/all-down") for _ in range(10)] == [200] * 10


def test_a_post_is_not_sent_again_after_a_timeout(live: LiveGateway, node_b: FakeUpstream) -> None:
    set_fake_knobs(node_b.address, latency_ms=3000)
    try:
        upstream = {
            "nodes": nodes(live.fake_address, node_b.address),
            "retries": 1,
            "timeout": {"connect": 1, "send": 1, "read": 1},
        }
        live.put("routes/post", {"uri": "/post/*", "upstream": upstream})
        statuses = Counter(post(live, "/post/v1/chat/completions") for _ in range(4))
        sent = deliveries(live.fake_address, "/post/v1/chat/completions") + deliveries(
            node_b.address, "/post/v1/chat/completions"
        )
        assert sent == 4  # 4 client POSTs, 4 deliveries
        assert statuses == {200: 2, 504: 2}
        # A GET may be sent again: it moves on to the healthy node.
        assert [get(live, "/post/x") for _ in range(4)] == [200] * 4
    finally:
        reset_fake_knobs(node_b.address)


def test_keepalive_pool_requests_size_and_idle_timeout(
    live: LiveGateway, node_b: FakeUpstream
) -> None:
    keepalive = {"size": 1, "idle_timeout": 1, "requests": 3}
    upstream = {"nodes": {node_b.address: 1}, "keepalive_pool": keepalive}
    live.put("routes/keepalive", {"uri": "/keepalive", "upstream": upstream})
    for _ in range(7):
        assert get(live, "/keepalive") == 200
    peers = Counter(r["peer"] for r in fake_requests_at(node_b.address))
    assert sorted(peers.values()) == [1, 3, 3]  # closed after 3 requests each
    assert connections_to(live.gw.proc.pid, node_b.port) == 1
    time.sleep(2.5)
    assert connections_to(live.gw.proc.pid, node_b.port) == 0  # idle_timeout


def test_upstream_status_header_lists_every_try_as_apisix(
    live: LiveGateway, node_b: FakeUpstream
) -> None:
    """APISIX's X-APISIX-Upstream-Status is nginx's $upstream_status, one entry per try
    ("502, 503"), set when the last try is a 5xx."""
    node_b.stop()  # a dead node, tried first (higher priority)
    dead = {"host": "127.0.0.1", "port": node_b.port, "weight": 1, "priority": 1}
    alive = {"host": "127.0.0.1", "port": live.fake_port, "weight": 1}
    live.put("routes/tries", {"uri": "/tries", "upstream": {"nodes": [dead, alive], "retries": 1}})
    live.put("routes/dead2", {"uri": "/dead2", "upstream": {"nodes": [dead], "retries": 1}})

    def header(path: str, **headers: str) -> tuple[int, str | None]:
        answer = exchange(live.proxy_port, request_bytes("GET", path, headers))
        return answer.status, answer.header("X-APISIX-Upstream-Status")

    assert header("/tries") == (200, None)
    assert header("/tries", **{"X-Fake-Status": "503"}) == (503, "502, 503")
    assert header("/dead2") == (502, "502, 502")  # an only node is tried again


def test_an_only_node_that_refuses_is_tried_retries_times_then_502(
    live: LiveGateway, node_b: FakeUpstream
) -> None:
    """``retries`` on a one-node upstream: the node is tried again that many times (APISIX),
    then 502 -- it used to be tried again for ever, the client never answered."""
    node_b.stop()
    upstream = {"nodes": {node_b.address: 1}, "retries": 2}
    live.put("routes/only-dead", {"uri": "/only-dead", "upstream": upstream})
    began = time.monotonic()
    with RawClient(live.proxy_port, timeout=5) as client:
        client.send(request_bytes("GET", "/only-dead"))
        assert client.read_response().status == 502
        client.send(request_bytes("GET", "/only-dead"))  # the same connection goes on
        assert client.read_response().status == 502
    assert time.monotonic() - began < 2


def test_a_stream_the_upstream_breaks_logs_the_bytes_it_relayed(live: LiveGateway) -> None:
    """nginx's $body_bytes_sent of a response cut off by its upstream: what the client got
    (it was logged as 0)."""
    live.put("routes/broken-stream", {"uri": "/v1/chat/completions", "upstream": live.upstream()})
    body = b'{"stream": true, "messages": [{"role": "user", "content": "tell me a long story"}]}'
    knobs = {"X-Fake-Drop": "mid-stream", "X-Fake-Stream-Delay-Ms": "20", "X-Request-Tag": "cut"}
    received = 0
    with RawClient(live.proxy_port) as client:
        client.send(request_bytes("POST", "/v1/chat/completions", knobs, body))
        assert client.read_head()[0] == 200
        with contextlib.suppress(ConnectionClosed):
            while (chunk := client.read_chunk()) is not None:
                received += len(chunk)
    assert received > 0

    def logged() -> list[int]:
        return [
            int(line.split('" ', 1)[1].split()[1])
            for line in live.log().splitlines()
            if '"POST /v1/chat/completions HTTP/1.1" 200 ' in line
        ]

    sizes = wait_for(logged, "the access log line")
    assert sizes[-1] >= received


def test_a_node_that_stops_reading_a_streamed_upload_leaves_no_connection(
    live: LiveGateway,
) -> None:
    """A node that accepts and never reads: a body too large to replay (streamed) runs into
    the send timeout (504), and its connection is gone at once, unsent bytes and all (it used
    to stay open for ever, one socket per request, waiting to flush to a node that reads
    nothing)."""
    with socket.socket() as node:
        node.bind(("127.0.0.1", 0))
        node.listen(16)  # the kernel accepts; nobody reads
        port = node.getsockname()[1]
        upstream = {
            "nodes": {f"127.0.0.1:{port}": 1},
            "retries": 0,
            "timeout": {"connect": 1, "send": 1, "read": 1},
        }
        live.put("routes/deaf", {"uri": "/deaf", "upstream": upstream})
        upload = request_bytes(
            "POST", "/deaf", {"Content-Type": "application/octet-stream"}, b"x" * 8_000_000
        )
        for _ in range(3):
            with RawClient(live.proxy_port) as client:
                client.send(upload)
                assert client.read_response("POST").status == 504
        pid = live.gw.proc.pid
        assert wait_for(lambda: connections_to(pid, port) == 0, "the connections closed", 3)


# What a node that is not quite HTTP sends, by path (the connection is closed after it).
ODD_ANSWERS = {
    "/odd/status-999": b"HTTP/1.1 999 Odd\r\nContent-Length: 2\r\n\r\nok",
    "/odd/switching": b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: Upgrade\r\n\r\n",
    "/odd/big-head": b"HTTP/1.1 200 OK\r\nX-Big: "
    + b"a" * 200_000
    + b"\r\nContent-Length: 2\r\n\r\nok",
    "/odd/fair-head": b"HTTP/1.1 200 OK\r\nX-Big: "
    + b"a" * 16_000
    + b"\r\nContent-Length: 2\r\n\r\nok",
}


@pytest.fixture
def odd_node() -> Iterator[int]:
    """A node answering ``ODD_ANSWERS``; yields its port."""
    listener = socket.create_server(("127.0.0.1", 0))

    def answer(conn: socket.socket) -> None:
        with conn:
            head = b""
            while b"\r\n\r\n" not in head and (data := conn.recv(65536)):
                head += data
            path = head.split(b" ", 2)[1].decode() if head else ""
            answer = ODD_ANSWERS.get(path, b"HTTP/1.1 404 No\r\nContent-Length: 0\r\n\r\n")
            with contextlib.suppress(OSError):  # a gateway that stops reading resets
                conn.sendall(answer)

    def serve() -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = listener.accept()
                threading.Thread(target=answer, args=(conn,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()


def test_odd_upstream_statuses_are_relayed_without_breaking_anything(
    live: LiveGateway, odd_node: int
) -> None:
    """An unrequested 101 ends the response (it logged a "Fatal error on transport" traceback);
    a status past 599 is relayed without X-APISIX-Upstream-Status (APISIX sets it for 5xx)."""
    upstream = {
        "nodes": {f"127.0.0.1:{odd_node}": 1},
        "timeout": {"connect": 2, "send": 2, "read": 2},
    }
    live.put("routes/odd", {"uri": "/odd/*", "upstream": upstream})
    with RawClient(live.proxy_port) as client:
        client.send(request_bytes("GET", "/odd/status-999"))
        answer = client.read_response()
        assert (answer.status, answer.header("X-APISIX-Upstream-Status")) == (999, None)
    with RawClient(live.proxy_port) as client:
        client.send(request_bytes("GET", "/odd/switching"))
        assert client.read_head()[0] == 101
    time.sleep(0.3)
    assert "Traceback" not in live.log()


def test_a_too_big_upstream_head_is_a_502_as_nginx(live: LiveGateway, odd_node: int) -> None:
    """A 200 KB response head is not relayed: 502 ("upstream sent too big header" in the
    log), with no other try; a 16 KB head passes."""
    upstream = {"nodes": {f"127.0.0.1:{odd_node}": 1}, "retries": 2}
    live.put("routes/odd", {"uri": "/odd/*", "upstream": upstream})
    answer = exchange(live.proxy_port, request_bytes("GET", "/odd/big-head"))
    assert (answer.status, answer.json()) == (502, {"error_msg": "502 Bad Gateway"})
    assert answer.header("X-APISIX-Upstream-Status") == "502"  # one try
    assert "X-Big" not in {name for name, _ in answer.headers}
    wait_for(lambda: "upstream sent too big header" in live.log(), "the error logged")
    fair = exchange(live.proxy_port, request_bytes("GET", "/odd/fair-head"))
    assert (fair.status, fair.body, len(fair.header("X-Big") or "")) == (200, b"ok", 16_000)
    # On an LLM route the 502 is OpenAI's shape, as the gateway's other errors there.
    ai_proxy = {
        "provider": "openai-compatible",
        "auth": {"header": {"Authorization": "Bearer upstream-secret"}},
        "options": {"model": "gpt-4o-mini"},
        "override": {"endpoint": f"http://127.0.0.1:{odd_node}/odd/big-head"},
    }
    live.put("routes/odd-llm", {"uri": "/odd-llm", "plugins": {"ai-proxy": ai_proxy}})
    raw = request_bytes("POST", "/odd-llm", {"Content-Type": "application/json"}, CHAT)
    llm = exchange(live.proxy_port, raw)
    assert (llm.status, llm.json()["error"]["code"]) == (502, "bad_gateway")


def test_the_access_log_lists_every_try_as_nginx(live: LiveGateway, node_b: FakeUpstream) -> None:
    """$upstream_addr, $upstream_status and $upstream_response_time have one entry per try
    ("127.0.0.1:1, 127.0.0.1:2 502, 200"), as nginx's."""
    node_b.stop()
    dead = {"host": "127.0.0.1", "port": node_b.port, "weight": 1, "priority": 1}
    alive = {"host": "127.0.0.1", "port": live.fake_port, "weight": 1}
    upstream = {"nodes": [dead, alive], "retries": 1}
    live.put("routes/logged-tries", {"uri": "/logged-tries", "upstream": upstream})
    live.put("routes/logged-dead", {"uri": "/logged-dead", "upstream": {"nodes": [dead]}})
    assert get(live, "/logged-tries") == 200
    assert get(live, "/logged-dead") == 502

    def line(path: str) -> str:
        return wait_for(
            lambda: [x for x in live.log().splitlines() if f'"GET {path} HTTP/1.1"' in x],
            f"the line of {path}",
        )[-1]

    def upstream_fields(path: str) -> str:
        """$upstream_addr $upstream_status $upstream_response_time of the line."""
        return line(path).rsplit(' "', 1)[0].rsplit('" ', 1)[1]

    tries = upstream_fields("/logged-tries")
    assert re.fullmatch(
        rf"{node_b.address}, {live.fake_address} 502, 200 \d+\.\d{{3}}, \d+\.\d{{3}}", tries
    ), tries
    dead_only = upstream_fields("/logged-dead")
    assert re.fullmatch(rf"{node_b.address} 502 \d+\.\d{{3}}", dead_only), dead_only


def test_the_loggers_upstream_lists_every_try_as_apisix(
    live: LiveGateway, node_b: FakeUpstream
) -> None:
    """APISIX's log entry ``upstream`` is ``ctx.var.upstream_addr``: every try, as nginx's
    $upstream_addr ("127.0.0.1:1, 127.0.0.1:2"), in http-logger and file-logger entries and
    in a ``log_format``'s ``$upstream_addr``."""
    node_b.stop()
    path = live.workdir / f"tries-{time.monotonic_ns()}.log"
    logger = {"path": str(path), "log_format": {"addr": "$upstream_addr"}}
    default = {"path": str(path)}
    dead = {"host": "127.0.0.1", "port": node_b.port, "weight": 1, "priority": 1}
    alive = {"host": "127.0.0.1", "port": live.fake_port, "weight": 1}
    upstream = {"nodes": [dead, alive], "retries": 1}
    for name, conf in (("entry", default), ("format", logger)):
        plugins = {"file-logger": conf}
        live.put(
            f"routes/tries-{name}",
            {"uri": f"/tries-{name}", "plugins": plugins, "upstream": upstream},
        )
        assert get(live, f"/tries-{name}") == 200
    entries = wait_for(
        lambda: (
            (lines := path.read_text().splitlines() if path.exists() else [])
            and len(lines) == 2
            and [json.loads(x) for x in lines]
        ),
        "the two entries",
    )
    every = f"{node_b.address}, {live.fake_address}"
    assert entries[0]["upstream"] == every, entries[0]
    assert entries[1]["addr"] == every, entries[1]


def test_the_upstream_response_time_variable_lists_every_try_as_nginx(
    live: LiveGateway, node_b: FakeUpstream
) -> None:
    """nginx's $upstream_response_time has one entry per try ("0.002, 0.010"), as
    $upstream_status and $upstream_addr: a ``log_format`` that names it gets both tries when
    the first node fails and the second answers, as the access log does."""
    node_b.stop()
    path = live.workdir / f"times-{time.monotonic_ns()}.log"
    log_format = {"time": "$upstream_response_time", "status": "$upstream_status"}
    dead = {"host": "127.0.0.1", "port": node_b.port, "weight": 1, "priority": 1}
    alive = {"host": "127.0.0.1", "port": live.fake_port, "weight": 1}
    live.put(
        "routes/times",
        {
            "uri": "/times",
            "plugins": {"file-logger": {"path": str(path), "log_format": log_format}},
            "upstream": {"nodes": [dead, alive], "retries": 1},
        },
    )
    assert get(live, "/times") == 200
    entry = wait_for(
        lambda: path.exists() and path.read_text() and json.loads(path.read_text()),
        "the entry",
    )
    assert entry["status"] == "502, 200", entry
    assert re.fullmatch(r"\d+\.\d{3}, \d+\.\d{3}", entry["time"]), entry
