"""Client limits of a real ``llmgate serve`` over raw sockets: head, body and idle timeouts,
requests per connection, and a flood of idle connections that must not take the admin API (or
normal clients) down.  Settings come from the environment (``LLMGATE_*``)."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import statistics
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.net import (
    ConnectionClosed,
    LiveGateway,
    RawClient,
    exchange,
    http_json,
    request_bytes,
    sha256,
    wait_for,
)
from tests.processes import connections_held
from tests.support import ADMIN_KEY


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveGateway]:
    env = {
        "LLMGATE_KEEPALIVE_TIMEOUT": "1",
        "LLMGATE_CLIENT_HEADER_TIMEOUT": "2",
        "LLMGATE_KEEPALIVE_REQUESTS": "3",
        "LLMGATE_SEND_TIMEOUT": "1",
        "LLMGATE_BUFFERED_BODIES_MAX_BYTES": "1M",
    }
    with LiveGateway(tmp_path_factory.mktemp("limits"), env=env) as live:
        live.put("routes/plain", {"uri": "/*", "upstream": live.upstream()})
        log = str(live.workdir / "access.log")
        live.put(
            "routes/logged",
            {
                "uri": "/logged/*",
                "plugins": {"file-logger": {"path": log}},
                "upstream": live.upstream(),
            },
        )
        # proxy-cache reads a POST body whole (to key on it): a buffered body
        cache = {"cache_strategy": "memory", "cache_method": ["POST"]}
        live.put(
            "routes/buffered",
            {"uri": "/buffered/*", "plugins": {"proxy-cache": cache}, "upstream": live.upstream()},
        )
        yield live


def closed_after(client: RawClient, limit: float) -> float | None:
    """Seconds until the server closed ``client`` (None if it did not within ``limit``)."""
    started = time.monotonic()
    return time.monotonic() - started if client.is_closed_by_peer(limit) else None


def test_idle_connection_closed_after_keepalive_timeout(gw: LiveGateway) -> None:
    with RawClient(gw.proxy_port) as client:
        client.send_request("GET", "/idle")
        assert client.read_response().status == 200
        assert not client.is_closed_by_peer(0.5)  # kept alive for a while...
        assert client.is_closed_by_peer(10)  # ...then closed (keepalive_timeout is 1 s)


def test_silent_connection_closed_after_client_header_timeout(gw: LiveGateway) -> None:
    with RawClient(gw.proxy_port) as client:
        assert not client.is_closed_by_peer(1.2)  # the head has 2 s, not keepalive's 1 s
        assert client.is_closed_by_peer(10)


def test_half_open_head_closed_after_client_header_timeout(gw: LiveGateway) -> None:
    """A head trickled byte by byte gets no more time: the timeout is for the whole head."""
    head = b"GET /slowloris HTTP/1.1\r\nHost: a\r\n" + b"X-A: b\r\n" * 100
    started = time.monotonic()
    closed = None
    with RawClient(gw.proxy_port) as client:
        for byte in head:
            try:
                client.send(bytes([byte]))
            except OSError:
                closed = time.monotonic() - started
                break
            if client.is_closed_by_peer(0.2):
                closed = time.monotonic() - started
                break
    assert closed is not None, "a trickled head kept its connection open"
    assert 1.5 < closed < 10


def test_next_head_gets_client_header_timeout_from_its_first_byte(gw: LiveGateway) -> None:
    with RawClient(gw.proxy_port) as client:
        client.send_request("GET", "/first")
        assert client.read_response().status == 200
        time.sleep(0.5)
        client.send(b"GET /second HTTP/1.1\r\n")  # begun within keepalive_timeout (1 s)
        assert not client.is_closed_by_peer(1.2)  # past keepalive_timeout: the head's 2 s rule
        client.send(b"Host: a\r\n\r\n")
        assert client.read_response().status == 200


def head_of(size: int, target: str = "/head") -> bytes:
    """A GET head of about ``size`` bytes, in header lines of 4 KB (each under nginx's 8 KB)."""
    start = f"GET {target} HTTP/1.1\r\nHost: a\r\n".encode()
    lines = b"".join(b"X-Pad-%d: %s\r\n" % (i, b"p" * 4000) for i in range(size // 4020))
    return start + lines + b"\r\n"


def test_a_head_is_held_to_nginx_buffers_however_it_arrives(gw: LiveGateway) -> None:
    """nginx reads a request head into at most 4 buffers of 8 KB (large_client_header_buffers):
    a larger head is refused, where aiohttp alone took 128 fields of 8 KB, a megabyte a head,
    about 2 MB of memory per connection while the head timeout ran (300 such connections
    raised the gateway's RSS by 575 MB)."""
    assert exchange(gw.proxy_port, head_of(28_000)).status == 200
    for pieces in (1, 10):
        answer = exchange(gw.proxy_port, head_of(40_000), pieces=pieces, pause=0.01)
        assert answer.status == 431, pieces
        assert answer.json() == {"error_msg": "request header fields too large"}
        assert answer.header("Connection") == "close"
    # One sent whole, more than a single read takes: still one head.
    assert exchange(gw.proxy_port, head_of(300_000)).status == 431


def test_a_head_never_finished_is_refused_once_past_the_buffers(gw: LiveGateway) -> None:
    """An incomplete head stops being read once it passes the buffers, not at the timeout."""
    unfinished = head_of(60_000)[:-2]
    with RawClient(gw.proxy_port) as client:
        started = time.monotonic()
        with contextlib.suppress(OSError):  # the gateway may close while we still send
            client.send_pieces(unfinished, pieces=15, pause=0.01)
        answer = client.read_response()
        assert answer.status == 431
        assert time.monotonic() - started < 1.5  # the head timeout is 2 s
        assert client.is_closed_by_peer(2)


def test_pipelined_heads_are_each_held_to_the_buffers(gw: LiveGateway) -> None:
    with RawClient(gw.proxy_port) as client:
        client.send(head_of(20_000, "/p/1") + head_of(20_000, "/p/2") + head_of(40_000, "/p/3"))
        assert [client.read_response().status for _ in range(3)] == [200, 200, 431]


def test_a_head_pipelined_behind_a_slow_request_is_held_to_the_buffers(gw: LiveGateway) -> None:
    """While a request is under way, the next one's head arriving behind it counts too: a
    slow answer must not let an unfinished head grow past the buffers meanwhile."""
    slow = request_bytes("GET", "/slow-answer?fake_latency_ms=1500")
    with RawClient(gw.proxy_port) as client:
        client.send(slow)
        time.sleep(0.2)  # the slow request is under way
        with contextlib.suppress(OSError):
            client.send_pieces(head_of(60_000)[:-2], pieces=15, pause=0.01)
        assert client.read_response().status == 200
        assert client.read_response().status == 431
        assert client.is_closed_by_peer(2)


def test_slow_body_is_not_cut_by_the_head_timeout(gw: LiveGateway) -> None:
    body = b"b" * 3000
    answer = exchange(gw.proxy_port, request_bytes("POST", "/slow", body=body), pieces=8, pause=0.4)
    assert answer.status == 200  # 2.8 s of body, more than client_header_timeout


def test_keepalive_requests_closes_after_the_last(gw: LiveGateway) -> None:
    with RawClient(gw.proxy_port) as client:
        for i in range(3):
            client.send_request("GET", f"/n/{i}")
            answer = client.read_response()
            assert answer.status == 200
        assert answer.header("Connection", "").lower() == "close"
        assert client.is_closed_by_peer(5)


def test_every_answer_says_whether_the_connection_stays_as_nginx(gw: LiveGateway) -> None:
    """nginx names the connection's fate in every answer (the seed blog's sample answer shows
    ``Connection: keep-alive``): kept for the next request, or closed after the last one."""
    chat = json.dumps({"messages": [{"role": "user", "content": "hi"}], "stream": True}).encode()
    seen = []
    with RawClient(gw.proxy_port) as client:
        client.send_request("GET", "/n/1")  # relayed with its length
        seen.append(client.read_response())
        client.send_request(
            "POST", "/v1/chat/completions", headers={"Content-Type": "application/json"}, body=chat
        )  # a stream, chunked
        seen.append(client.read_response("POST"))
        client.send_request("GET", "/n/3")  # keepalive_requests (3): the last one
        seen.append(client.read_response())
    assert seen[1].header("Content-Type", "").startswith("text/event-stream")
    assert [a.header("Connection", "").lower() for a in seen] == [
        "keep-alive",
        "keep-alive",
        "close",
    ]
    # HTTP/1.0: kept only when the client asks.
    kept = exchange(
        gw.proxy_port,
        request_bytes("GET", "/n/4", {"Connection": "keep-alive"}, version="HTTP/1.0"),
    )
    closed = exchange(gw.proxy_port, request_bytes("GET", "/n/5", version="HTTP/1.0"))
    assert kept.header("Connection", "").lower() == "keep-alive"
    assert closed.header("Connection", "").lower() == "close"
    # The admin API too.
    admin = exchange(
        gw.admin_port, request_bytes("GET", "/apisix/admin/routes", {"X-API-KEY": ADMIN_KEY})
    )
    assert admin.status == 200 and admin.header("Connection", "").lower() == "keep-alive"


# --- a flood of idle connections --------------------------------------------------------------

CAP = 2100


@pytest.fixture(scope="module")
def flooded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveGateway]:
    env = {"LLMGATE_MAX_CONNECTIONS": str(CAP)}  # default (nginx) timeouts: idle ones stay
    with LiveGateway(tmp_path_factory.mktemp("flood"), env=env) as live:
        live.put("routes/plain", {"uri": "/*", "upstream": live.upstream()})
        yield live


def open_idle(port: int, count: int, partial_head: bool) -> list[socket.socket]:
    sockets = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        if partial_head:
            sock.sendall(b"GET /held HTTP/1.1\r\nHost: a\r\n")
        sockets.append(sock)
    return sockets


def proxy_answer(gw: LiveGateway) -> int:
    return exchange(gw.proxy_port, request_bytes("GET", "/normal")).status


def admin_answer(gw: LiveGateway) -> int:
    url = f"{gw.gw.admin_url}/apisix/admin/routes"
    return int(http_json("GET", url, headers={"X-API-KEY": ADMIN_KEY})[0])


def test_two_thousand_idle_connections_leave_everyone_served(flooded: LiveGateway) -> None:
    idle: list[socket.socket] = []
    try:
        idle += open_idle(flooded.proxy_port, 1000, partial_head=False)
        idle += open_idle(flooded.proxy_port, 1000, partial_head=True)
        assert proxy_answer(flooded) == 200
        assert admin_answer(flooded) == 200
        # Past the cap, new data-plane connections are reset at once; the admin API, with a
        # budget of its own, still answers.
        idle += open_idle(flooded.proxy_port, CAP - 2000, partial_head=False)
        with RawClient(flooded.proxy_port) as extra:
            started = time.monotonic()
            assert extra.is_closed_by_peer(5)
            assert time.monotonic() - started < 5
        with pytest.raises((ConnectionClosed, OSError)):
            exchange(flooded.proxy_port, request_bytes("GET", "/refused"))
        assert admin_answer(flooded) == 200
    finally:
        for sock in idle:
            sock.close()
    deadline = time.monotonic() + 10
    while True:
        try:
            if proxy_answer(flooded) == 200:
                break
        except (ConnectionClosed, OSError):
            pass  # the closes of the flood are still being noticed
        assert time.monotonic() < deadline, "the data plane did not recover from the flood"
        time.sleep(0.1)


# --- send_timeout and the buffered-body budget ---------------------------------------------------


def log_lines(gw: LiveGateway) -> list[dict[str, Any]]:
    path = gw.workdir / "access.log"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_a_client_that_stops_reading_is_cut_off_after_send_timeout(gw: LiveGateway) -> None:
    """As the attacker: ask for a 16 MB answer and read nothing, with a tiny receive window.
    After send_timeout (1 s) without progress the gateway resets the connection, lets the
    upstream connection go, and logs 499, instead of holding both (and the buffers) forever."""
    pid = gw.gw.proc.pid
    size = 16_000_000  # past what the kernel's socket buffers hold
    client = RawClient(gw.proxy_port, rcvbuf=4096)
    client.send_request("GET", "/logged/echo", headers={"X-Fake-Body-Bytes": str(size)})
    time.sleep(0.3)  # the answer is on its way (on a new or a pooled upstream connection)
    held = connections_held(pid, gw.fake_port, remote=True)
    assert held >= 1
    started = time.monotonic()
    while time.monotonic() - started < 5:
        if connections_held(pid, gw.fake_port, remote=True) < held:
            break
        time.sleep(0.05)
    released = time.monotonic() - started
    assert released < 4, "the gateway held the upstream for a client that reads nothing"
    received, reset = client.drain(10)
    client.close()
    assert reset and received < size, (reset, received)  # cut off, not the whole answer
    line = wait_for(
        lambda: next((x for x in log_lines(gw) if x["request"]["uri"] == "/logged/echo"), None),
        "the access log line",
    )
    assert line["response"]["status"] == 499


def test_a_slow_reader_that_keeps_reading_is_not_cut_off(gw: LiveGateway) -> None:
    """send_timeout is between two writes, not for the whole answer: a client reading 64 KB
    every 30 ms (longer than send_timeout in all) gets every byte."""
    size = 4_000_000  # past the socket buffers: the gateway's writes wait for the reader
    started = time.monotonic()
    with RawClient(gw.proxy_port, rcvbuf=262144) as client:
        headers = {"Connection": "close", "X-Fake-Body-Bytes": str(size)}
        client.send_request("GET", "/slow-reader", headers=headers)
        received, reset = client.drain(30, pace=(65536, 0.03))
    assert not reset and received > size
    assert time.monotonic() - started > 1.5  # longer than send_timeout in all


def test_concurrent_large_bodies_past_the_budget_are_503(gw: LiveGateway) -> None:
    """As the attacker: three uploads of 450 KB held open on a route that reads bodies whole,
    against a 1 MiB budget for the whole process: the third is refused at once with 503 and
    Retry-After (its length is declared), a small request still passes, and once the first
    two are gone their bytes are free again."""
    size = 450_000
    held = []
    for _ in range(2):
        client = RawClient(gw.proxy_port)
        raw = request_bytes("POST", "/buffered/upload", body=b"z" * size)
        client.send(raw[: len(raw) // 2])  # half the body: the request holds its share
        held.append(client)
    time.sleep(0.3)
    third = exchange(gw.proxy_port, request_bytes("POST", "/buffered/3", body=b"z" * size))
    assert third.status == 503, third.body
    assert third.json() == {"error_msg": "too many request bodies in flight"}
    assert third.header("Retry-After") == "1"
    small = exchange(gw.proxy_port, request_bytes("POST", "/buffered/4", body=b"small"))
    assert small.status == 200
    for client in held:
        client.abort()
    time.sleep(0.3)
    again = exchange(gw.proxy_port, request_bytes("POST", "/buffered/5", body=b"z" * size))
    assert again.status == 200, again.body  # the aborted uploads gave their bytes back


def test_chunked_bodies_are_counted_as_they_arrive(gw: LiveGateway) -> None:
    """Without a declared length the budget is charged as bytes arrive: a chunked 1.5 MB body
    alone passes the 1 MiB budget and is refused part-way."""
    raw = request_bytes("POST", "/buffered/chunked", body=b"c" * 1_500_000, chunked=True)
    answer = exchange(gw.proxy_port, raw)
    assert answer.status == 503


def test_multi_megabyte_uploads_never_stall(gw: LiveGateway) -> None:
    """A 6 MB body streamed to the upstream used to stall now and then (under uvloop the
    upstream connection's resume_writing came only when something else woke the loop: seconds
    later, or never on an idle gateway).  Each of four uploads on fresh connections is
    answered at once, every byte echoed back."""
    body = b"u" * 6_000_000
    for _ in range(4):
        with RawClient(gw.proxy_port, timeout=5) as client:
            started = time.monotonic()
            client.send_request("POST", "/upload/echo", body=body)
            answer = client.read_response("POST")
            took = time.monotonic() - started
        assert answer.status == 200
        assert json.loads(answer.body)["body_length"] == len(body)
        assert took < 1.5, f"an upload of 6 MB took {took:.2f} s"


def test_a_body_of_tiny_chunks_is_refused_and_slows_nobody(gw: LiveGateway) -> None:
    """As the attacker: 2M chunks of one byte (12 MB on the wire) in one upload.  Each chunk
    costs aiohttp's parser and the body reader about a microsecond of Python, so the whole
    upload held the process for seconds and another client's requests waited ~350 ms each.
    Past ``CHUNKS_FREE`` chunks a body whose chunks average under ``MIN_CHUNK_AVERAGE`` bytes is
    refused with a 400 that ends the connection; a client asking at the same time is served as
    usual (median far under 100 ms: ~2 ms when idle)."""
    latencies: list[float] = []
    stop = threading.Event()

    def bystander() -> None:  # a connection a request (keepalive_requests is 3 here)
        while not stop.is_set():
            started = time.monotonic()
            assert exchange(gw.proxy_port, request_bytes("GET", "/bystander")).status == 200
            latencies.append(time.monotonic() - started)
            time.sleep(0.005)

    thread = threading.Thread(target=bystander, daemon=True)
    thread.start()
    head = b"POST /flood HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
    body = b"1\r\nx\r\n" * 2_000_000 + b"0\r\n\r\n"
    try:
        time.sleep(0.2)
        latencies.clear()
        with RawClient(gw.proxy_port, timeout=30) as client:
            sender = threading.Thread(target=_send_quietly, args=(client, head + body))
            started = time.monotonic()
            sender.start()
            answer = client.read_response("POST")
            took = time.monotonic() - started
            sender.join(30)
        time.sleep(max(0.0, started + 0.5 - time.monotonic()))  # a few bystander requests
    finally:
        stop.set()
        thread.join(10)
    assert answer.status == 400, answer.body
    assert answer.json() == {"error_msg": "request body chunks too small"}
    assert answer.header("Connection") == "close"
    assert took < 5, f"the flood was answered after {took:.2f} s"
    assert latencies, "the bystander was never answered"
    median = statistics.median(latencies)
    assert median < 0.1, f"the bystander's median latency was {median * 1000:.0f} ms"


def _send_quietly(client: RawClient, data: bytes) -> None:
    """Send ``data``, ignoring the server closing or resetting the connection part-way."""
    with contextlib.suppress(OSError):
        client.send(data)


@pytest.mark.parametrize(
    ("size", "chunk_size"),
    [(1_000_000, 4096), (300_000, 1024), (400_000, 200), (1_000, 1), (900, 300)],
    ids=["1MB-4KiB", "300KB-1KiB", "400KB-200B", "1KB-1B", "sdk-3-chunks"],
)
def test_chunked_uploads_of_ordinary_chunks_pass_byte_for_byte(
    gw: LiveGateway, size: int, chunk_size: int
) -> None:
    """Chunks as clients send them (4 KiB or 1 KiB writes, an SDK's body in a few chunks, even
    a short body of 1-byte chunks: the first ``CHUNKS_FREE`` chunks are free) reach the
    upstream byte for byte."""
    body = os.urandom(size)
    raw = request_bytes("POST", "/upload/chunks", body=body, chunked=True, chunk_size=chunk_size)
    answer = exchange(gw.proxy_port, raw, pieces=4, pause=0.05)
    assert answer.status == 200, answer.body
    seen = gw.fake_requests()[-1]
    assert (seen["body_length"], seen["body_sha256"]) == (size, sha256(body))
