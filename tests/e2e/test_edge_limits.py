"""Client limits of a real ``llmgate serve`` over raw sockets: head, body and idle timeouts,
requests per connection, and a flood of idle connections that must not take the admin API (or
normal clients) down.  Settings come from the environment (``LLMGATE_*``)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from tests.net import ConnectionClosed, LiveGateway, RawClient, exchange, http_json, request_bytes
from tests.support import ADMIN_KEY


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveGateway]:
    env = {
        "LLMGATE_KEEPALIVE_TIMEOUT": "1",
        "LLMGATE_CLIENT_HEADER_TIMEOUT": "2",
        "LLMGATE_KEEPALIVE_REQUESTS": "3",
    }
    with LiveGateway(tmp_path_factory.mktemp("limits"), env=env) as live:
        live.put("routes/plain", {"uri": "/*", "upstream": live.upstream()})
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
