"""Repeated request headers at the edge, over raw sockets against a real ``llmgate serve``, with
an upstream that records the bytes it receives (the fake upstream, an aiohttp server, would
refuse some of them itself and joins the others).

nginx refuses a repeated Host, Content-Length, Transfer-Encoding (and Authorization, If-*,
Expect, Content-Range, If-Range) with 400 and passes every other repeated header on, line by
line.  llmgate's parser (aiohttp's) refuses its own list instead: see the "repeated request
headers" row of docs/compatibility.md.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from tests.net import LiveGateway, exchange, request_bytes

HEAD_END = b"\r\n\r\n"


class RecordingUpstream:
    """An HTTP/1.1 upstream on a thread: records each request head as received, answers 200."""

    def __init__(self) -> None:
        self.heads: list[bytes] = []
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._server.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> RecordingUpstream:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.close()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                data = b""
                while HEAD_END not in data:
                    piece = conn.recv(65536)
                    if not piece:
                        break
                    data += piece
                self.heads.append(data.partition(HEAD_END)[0])
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")

    def lines(self, name: bytes) -> list[bytes]:
        """The values of the last request's ``name`` header lines, in order."""
        prefix = name.lower() + b":"
        found = []
        for line in self.heads[-1].split(b"\r\n")[1:]:
            if line.lower().startswith(prefix):
                found.append(line[len(prefix) :].strip())
        return found


@pytest.fixture(scope="module")
def upstream() -> Iterator[RecordingUpstream]:
    with RecordingUpstream() as recording:
        yield recording


@pytest.fixture(scope="module")
def gw(
    tmp_path_factory: pytest.TempPathFactory, upstream: RecordingUpstream
) -> Iterator[LiveGateway]:
    with LiveGateway(tmp_path_factory.mktemp("edge-headers")) as live:
        nodes = {f"127.0.0.1:{upstream.port}": 1}
        live.put(
            "routes/raw", {"uri": "/raw/*", "upstream": {"type": "roundrobin", "nodes": nodes}}
        )
        yield live


def twice(name: str) -> list[tuple[str, str]]:
    return [("Host", "gateway.test"), (name, "first"), (name, "second")]


@pytest.mark.parametrize(
    "name", ["Accept", "X-Foo", "Referer", "Cookie", "Accept-Language", "Cache-Control"]
)
def test_a_repeated_ordinary_header_reaches_the_upstream_line_by_line(
    gw: LiveGateway, upstream: RecordingUpstream, name: str
) -> None:
    answer = exchange(gw.proxy_port, request_bytes("GET", "/raw/x", twice(name), host=None))
    assert answer.status == 200, answer.body
    assert upstream.lines(name.encode()) == [b"first", b"second"]


@pytest.mark.parametrize("name", ["Authorization", "If-None-Match", "If-Match", "If-Range"])
def test_headers_nginx_holds_to_one_line_pass_repeated(
    gw: LiveGateway, upstream: RecordingUpstream, name: str
) -> None:
    """A deliberate difference (docs/compatibility.md, "a request header sent on several
    lines"): nginx answers 400 "client sent duplicate header line"; aiohttp's parser passes
    them, and each line goes on as sent."""
    answer = exchange(gw.proxy_port, request_bytes("GET", "/raw/x", twice(name), host=None))
    assert answer.status == 200, answer.body
    assert upstream.lines(name.encode()) == [b"first", b"second"]


@pytest.mark.parametrize(
    "raw",
    [
        b"GET /raw/x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        b"POST /raw/x HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok",
        b"POST /raw/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
    ],
    ids=["host", "content-length", "transfer-encoding"],
)
def test_a_repeated_framing_or_host_header_is_a_json_400_as_nginx(
    gw: LiveGateway, upstream: RecordingUpstream, raw: bytes
) -> None:
    before = len(upstream.heads)
    answer = exchange(gw.proxy_port, raw)
    assert answer.status == 400
    assert answer.header("Content-Type") == "application/json"
    assert answer.json() == {"error_msg": "bad request"}
    assert len(upstream.heads) == before


@pytest.mark.parametrize(
    "name", ["User-Agent", "Content-Type", "Content-Location", "ETag", "Max-Forwards", "Server"]
)
def test_aiohttps_own_singletons_repeated_are_a_json_400_where_nginx_passes_them(
    gw: LiveGateway, upstream: RecordingUpstream, name: str
) -> None:
    """A deliberate difference (docs/compatibility.md, "repeated request headers"): aiohttp's C
    parser refuses these repeated, with no option to let them through."""
    before = len(upstream.heads)
    answer = exchange(gw.proxy_port, request_bytes("GET", "/raw/x", twice(name), host=None))
    assert answer.status == 400
    assert answer.header("Content-Type") == "application/json"
    assert answer.json() == {"error_msg": "bad request"}
    assert b"first" not in answer.body and b"second" not in answer.body
    assert len(upstream.heads) == before
