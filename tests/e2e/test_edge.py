"""The edge under real traffic: a real ``llmgate serve`` and fake upstream, talked to over raw
sockets (tests/net.py) the way slow networks, odd clients and attackers do.

Bodies that arrive in pieces, dot-segments and their encodings, hosts, parser errors, CR/LF in
rewritten targets, aborts mid-upload and mid-stream.  Client timeouts and floods:
tests/e2e/test_edge_limits.py.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from llmgate.http.answers import DISCARD_LIMIT
from tests.net import LiveGateway, RawClient, Response, exchange, request_bytes, sha256
from tests.processes import connections_held
from tests.support import ADMIN_KEY

SIZES = [70_000, 300_000, 1_000_000]
KEY = "edge-test-key"


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveGateway]:
    workdir = tmp_path_factory.mktemp("edge")
    with LiveGateway(workdir, env={"LLMGATE_CLIENT_BODY_TIMEOUT": "2"}) as live:
        upstream = live.upstream()
        live.put("consumers/edge", {"username": "edge", "plugins": {"key-auth": {"key": KEY}}})
        live.put("routes/plain", {"uri": "/plain/*", "upstream": upstream})
        live.put("routes/public", {"uri": "/public/*", "upstream": upstream})
        live.put("routes/v1", {"uri": "/v1/*", "plugins": {"key-auth": {}}, "upstream": upstream})
        live.put(
            "routes/ai",
            {
                "uri": "/ai/*",
                "plugins": {
                    "ai-proxy": {
                        "provider": "openai-compatible",
                        "auth": {"header": {"Authorization": "Bearer provider-key"}},
                        "override": {"endpoint": f"http://{live.fake_address}/v1/chat/completions"},
                    }
                },
            },
        )
        live.put(
            "routes/cached",
            {
                "uri": "/cached/*",
                "plugins": {"proxy-cache": {"cache_strategy": "memory", "cache_method": ["POST"]}},
                "upstream": upstream,
            },
        )
        live.put(
            "routes/private-host",
            {
                "uri": "/host/*",
                "host": "private.example",
                "plugins": {"key-auth": {}},
                "upstream": upstream,
            },
        )
        live.put(
            "routes/public-host", {"uri": "/host/*", "host": "public.example", "upstream": upstream}
        )
        live.put("routes/any-host", {"uri": "/nohost/*", "upstream": upstream})
        yield live


def chat_body(size: int) -> bytes:
    """A chat request of about ``size`` bytes (one long prompt)."""
    filler = "x" * max(size - 80, 1)
    return json.dumps({"messages": [{"role": "user", "content": filler}]}).encode()


def last_request(gw: LiveGateway) -> dict[str, Any]:
    return gw.fake_requests()[-1]


# --- bodies: every byte reaches the upstream, however it arrives ----------------------------------


@pytest.mark.parametrize("chunked", [False, True], ids=["length", "chunked"])
@pytest.mark.parametrize("size", SIZES)
def test_plain_route_forwards_every_byte(gw: LiveGateway, size: int, chunked: bool) -> None:
    body = os.urandom(size)
    raw = request_bytes("POST", "/plain/upload", body=body, chunked=chunked)
    answer = exchange(gw.proxy_port, raw, pieces=6, pause=0.1)
    assert answer.status == 200
    seen = last_request(gw)
    assert (seen["body_length"], seen["body_sha256"]) == (size, sha256(body))


@pytest.mark.parametrize("size", SIZES)
def test_ai_proxy_route_reads_the_whole_prompt(gw: LiveGateway, size: int) -> None:
    body = chat_body(size)
    raw = request_bytes("POST", "/ai/chat", {"Content-Type": "application/json"}, body)
    answer = exchange(gw.proxy_port, raw, pieces=6, pause=0.1)
    assert answer.status == 200, answer.body[:300]
    seen = last_request(gw)
    assert seen["raw_path"] == "/v1/chat/completions"
    sent = json.loads(body)["messages"][0]["content"]
    assert seen["body"]["messages"][0]["content"] == sent  # the provider got the whole prompt


@pytest.mark.parametrize("size", SIZES)
def test_proxy_cache_route_hashes_and_forwards_the_whole_body(gw: LiveGateway, size: int) -> None:
    body = os.urandom(size)
    path = f"/cached/{size}"
    first = exchange(gw.proxy_port, request_bytes("POST", path, body=body), pieces=6, pause=0.1)
    assert first.status == 200 and first.header("Apisix-Cache-Status") == "MISS"
    seen = last_request(gw)
    assert (seen["body_length"], seen["body_sha256"]) == (size, sha256(body))
    # The same body, in other pieces, is the same entry; a body differing in its last byte is not.
    again = exchange(gw.proxy_port, request_bytes("POST", path, body=body), pieces=3, pause=0.1)
    assert again.header("Apisix-Cache-Status") == "HIT"
    other = body[:-1] + bytes([body[-1] ^ 1])
    third = exchange(gw.proxy_port, request_bytes("POST", path, body=other), pieces=4, pause=0.1)
    assert third.header("Apisix-Cache-Status") == "MISS"


@pytest.mark.parametrize("size", [*SIZES, 1_400_000])
def test_admin_put_reads_the_whole_body(gw: LiveGateway, size: int) -> None:
    content = "p" * (size - 300)
    route = {
        "uri": f"/big/{size}",
        "plugins": {"ai-prompt-decorator": {"prepend": [{"role": "system", "content": content}]}},
        "upstream": gw.upstream(),
    }
    body = json.dumps(route).encode()
    raw = request_bytes("PUT", f"/apisix/admin/routes/big-{size}", {"X-API-KEY": ADMIN_KEY}, body)
    answer = exchange(gw.admin_port, raw, pieces=6, pause=0.1)
    assert answer.status in (200, 201), answer.body[:300]
    status, stored = gw.admin("GET", f"routes/big-{size}")
    assert status == 200
    stored_content = stored["value"]["plugins"]["ai-prompt-decorator"]["prepend"][0]["content"]
    assert sha256(stored_content.encode()) == sha256(content.encode())


def test_admin_body_over_the_limit_keeps_apisix_message(gw: LiveGateway) -> None:
    body = b'{"desc": "' + b"x" * (1024 * 1024 * 3 // 2) + b'"}'
    for chunked in (False, True):
        raw = request_bytes(
            "PUT", "/apisix/admin/routes/huge", {"X-API-KEY": ADMIN_KEY}, body, chunked=chunked
        )
        answer = exchange(gw.admin_port, raw, pieces=4, pause=0.05)
        assert answer.status == 400
        assert "is greater than the maximum size 1572864 allowed" in answer.json()["error_msg"]


# --- bodies over a limit: refused at once, then the connection ends (nginx's 413) -------------

HUGE = 10_000_000_000  # declared, never sent
# A body's rest that an early answer still reads and drops, keeping the connection.
DISCARDED = DISCARD_LIMIT - 4 * 1024
PIECE = 64 * 1024


class Flood(threading.Thread):
    """Sends the body of a request without end (``chunked``: as 64 KiB chunks), as an attacker
    or an upload the server refused, until the server ends the connection; ``ended`` is when
    (None if it never did within ``limit`` seconds)."""

    def __init__(self, sock: socket.socket, chunked: bool, limit: float = 20.0) -> None:
        super().__init__(daemon=True)
        data = b"x" * PIECE
        self.piece = b"%x\r\n%s\r\n" % (PIECE, data) if chunked else data
        self.sock, self.limit = sock, limit
        self.ended: float | None = None

    def run(self) -> None:
        deadline = time.monotonic() + self.limit
        try:
            while time.monotonic() < deadline:
                self.sock.sendall(self.piece)
        except TimeoutError:
            return  # the server stopped reading and kept the connection
        except OSError:
            self.ended = time.monotonic()  # reset or closed by the server


def refused_upload(port: int, head: bytes, chunked: bool) -> tuple[Response, float, float, Flood]:
    """Send ``head``, then its body without end: the answer, how long it took, when it came,
    and the flood (which says when the server ended the connection)."""
    client = RawClient(port, timeout=30)
    client.send(head)
    began = time.monotonic()
    flood = Flood(client.sock, chunked)
    flood.start()
    try:
        answer = client.read_response("POST")
        answered = time.monotonic()
        flood.join(flood.limit + 5)
    finally:
        client.close()
    return answer, answered - began, answered, flood


OVER_THE_LIMIT = {
    # The data plane: an LLM route holds at most 16 MiB of a body (413, OpenAI's shape there).
    "proxy": ("/ai/v1/chat/completions", {"Content-Type": "application/json"}, 413),
    # The admin API: 1.5 MiB, refused with APISIX's 400 "... greater than the maximum size".
    "admin": ("/apisix/admin/routes/huge", {"X-API-KEY": ADMIN_KEY}, 400),
}


@pytest.mark.parametrize("chunked", [False, True], ids=["declared", "chunked"])
@pytest.mark.parametrize("port_of", list(OVER_THE_LIMIT))
def test_a_body_over_the_limit_is_refused_at_once_and_its_connection_closed(
    gw: LiveGateway, port_of: str, chunked: bool
) -> None:
    """nginx answers a body over client_max_body_size with 413 and ``Connection: close``, then
    closes (after a short lingering close), whatever the client goes on sending: a client that
    declares 10 GB, or streams chunks without end, holds no connection for long.  A declared
    length is refused before its body is read; a chunked body once it passes the limit."""
    path, headers, status = OVER_THE_LIMIT[port_of]
    port = gw.proxy_port if port_of == "proxy" else gw.admin_port
    framing = {"Transfer-Encoding": "chunked"} if chunked else {"Content-Length": str(HUGE)}
    head = request_bytes("POST" if port_of == "proxy" else "PUT", path, {**headers, **framing})
    answer, took, answered, flood = refused_upload(port, head, chunked)
    assert answer.status == status, answer.body[:200]
    assert answer.header("Connection") == "close"
    if not chunked:
        assert took < 2  # the declared length is enough: nothing is read first
    assert flood.ended is not None, "the connection was kept while the client sent on"
    # A short lingering close (nginx's is bounded too); aiohttp drained the body for 10 s.
    assert flood.ended - answered < 5
    # Nothing else was held up.
    after = request_bytes("GET", "/plain/after")
    if port_of == "admin":
        after = request_bytes("GET", "/apisix/admin/routes/plain", {"X-API-KEY": ADMIN_KEY})
    gw_answers = exchange(port, after)
    assert gw_answers.status == 200


def test_a_client_that_reads_the_413_sees_the_end_at_once(gw: LiveGateway) -> None:
    """After the 413 the gateway half-closes: a client that waits for the rest of the answer
    sees its end at once, not after the lingering close."""
    head = request_bytes(
        "POST", "/ai/v1/chat/completions", {"Content-Length": str(HUGE)}, host="gateway.test"
    )
    with RawClient(gw.proxy_port, timeout=10) as client:
        client.send(head + b"{")
        assert client.read_response("POST").status == 413
        started = time.monotonic()
        assert client.is_closed_by_peer(5)
        assert time.monotonic() - started < 0.5


# --- answers given before the body is read: a big rest ends the connection, a small one is dropped


REFUSED_FIRST = {
    # key-auth's 401, before a byte of the body is read.
    "proxy-401": ("proxy", "POST", "/v1/chat/completions", {}, 401),
    # No route: 404.
    "proxy-404": ("proxy", "POST", "/nowhere/x", {}, 404),
    # The admin API without its key: 401.
    "admin-401": ("admin", "PUT", "/apisix/admin/routes/x", {}, 401),
}


@pytest.mark.parametrize("chunked", [False, True], ids=["declared", "chunked"])
@pytest.mark.parametrize("case", list(REFUSED_FIRST))
def test_an_answer_before_a_big_body_ends_the_connection(
    gw: LiveGateway, case: str, chunked: bool
) -> None:
    """An answer given before the body is read, with more than a little of the body still to
    come (a declared 10 GB, or chunks not ended), says ``Connection: close`` and the connection
    ends after the same short lingering close as the 413's, however long the client sends on.
    aiohttp drained such a body for 10 s per connection, keeping it alive."""
    port_of, method, path, headers, status = REFUSED_FIRST[case]
    port = gw.proxy_port if port_of == "proxy" else gw.admin_port
    framing = {"Transfer-Encoding": "chunked"} if chunked else {"Content-Length": str(HUGE)}
    head = request_bytes(method, path, {**headers, **framing})
    answer, took, answered, flood = refused_upload(port, head, chunked)
    assert answer.status == status, answer.body[:200]
    assert took < 2
    assert answer.header("Connection") == "close"
    assert flood.ended is not None, "the connection was kept while the client sent on"
    assert flood.ended - answered < 3


@pytest.mark.parametrize("chunked", [False, True], ids=["declared", "chunked"])
def test_a_small_body_left_unread_is_dropped_and_the_connection_kept(
    gw: LiveGateway, chunked: bool
) -> None:
    """A body the answer left unread, small enough, is read and dropped as nginx discards it:
    the connection is kept and the next request on it answered, and no byte of the body (here
    it looks like requests) is taken for a request.  A declared length may still be on its
    way when the answer goes; a chunked body, whose size is not known, must have ended."""
    smuggled = request_bytes("GET", "/plain/smuggled")
    body = smuggled * (DISCARDED // len(smuggled))
    raw = request_bytes("POST", "/v1/chat/completions", body=body, chunked=chunked)
    split_at = len(raw) if chunked else len(raw) - len(body) + 1000
    gw.clear_fake()
    with RawClient(gw.proxy_port) as client:
        client.send(raw[:split_at])
        refused = client.read_response("POST")
        assert refused.status == 401
        assert refused.header("Connection") == "keep-alive"
        client.send(raw[split_at:] + request_bytes("GET", "/plain/after"))
        after = client.read_response()
        assert after.status == 200, after.body[:200]
        assert after.header("Connection") == "keep-alive"
    assert [seen["raw_path"] for seen in gw.fake_requests()] == ["/plain/after"]


@pytest.mark.parametrize("path", ["/plain/stall", "/ai/v1/chat/completions"])
def test_a_stalled_body_is_408_after_client_body_timeout(gw: LiveGateway, path: str) -> None:
    """As nginx: 408, and the connection is closed (what is left of the body is unknown, and
    its late bytes must never be read as a request), on a plain route and on an LLM route
    (whose body is read whole) alike."""
    raw = request_bytes("POST", path, body=b"s" * 1000)
    with RawClient(gw.proxy_port) as client:
        client.send(raw[:-500])  # head and half the body, then nothing
        started = time.monotonic()
        answer = client.read_response("POST")
        assert answer.status == 408
        assert "request body timed out" in answer.body.decode()
        assert 1.5 < time.monotonic() - started < 30  # client_body_timeout is 2 s here
        assert answer.header("Connection") == "close"
        # The rest of the body, late: read and dropped (so the client gets the answer rather
        # than a reset), and the connection is not kept for another request.
        client.send(raw[-500:])
        assert client.is_closed_by_peer(wait=2.0)


def test_leftover_body_bytes_never_become_a_request(gw: LiveGateway) -> None:
    """A request refused before its body is read (401) leaves the body unread: it must be
    discarded as body, even when it looks like a request."""
    smuggled = request_bytes("GET", "/plain/smuggled")
    body = smuggled * (DISCARDED // len(smuggled))  # in pieces: several socket reads
    gw.clear_fake()
    with RawClient(gw.proxy_port) as client:
        client.send_pieces(request_bytes("POST", "/v1/x", body=body), pieces=4, pause=0.05)
        assert client.read_response("POST").status == 401
        client.send(request_bytes("GET", "/plain/after"))
        assert client.read_response().status == 200
    paths = [seen["raw_path"] for seen in gw.fake_requests()]
    assert paths == ["/plain/after"]


# --- paths: routed and forwarded as nginx's $uri ----------------------------------------------


@pytest.mark.parametrize(
    "target",
    [
        "/public/../v1/chat/completions",
        "/public/%2e%2e/v1/chat/completions",
        "/public/.%2e/v1/chat/completions",
        "/public/%2E./v1/chat/completions",
        "/public/..%2fv1/chat/completions",
        "/public%2f..%2fv1/chat/completions",
        "/public/..%5cv1/chat/completions",
        "/public/x/../../v1/chat/completions",
        "/public//..//v1/chat/completions",
        "http://gateway.test/public/../v1/chat/completions",
    ],
)
def test_dot_segments_do_not_escape_their_route(gw: LiveGateway, target: str) -> None:
    """Each is /v1/chat/completions: routed to /v1/* (key-auth), never to /public/*."""
    gw.clear_fake()
    body = chat_body(100)
    answer = exchange(gw.proxy_port, request_bytes("POST", target, body=body))
    assert answer.status == 401
    assert gw.fake_requests() == []
    with_key = request_bytes("POST", target, {"apikey": KEY}, body)
    answer = exchange(gw.proxy_port, with_key)
    assert answer.status == 200
    assert last_request(gw)["raw_path"] == "/v1/chat/completions"


def test_double_encoding_is_decoded_once(gw: LiveGateway) -> None:
    """%252e%252e is the text "%2e%2e": it stays on /public/*, and is forwarded so that an
    upstream decoding once sees "%2e%2e", never ".."."""
    answer = exchange(gw.proxy_port, request_bytes("GET", "/public/%252e%252e/v1/x"))
    assert answer.status == 200
    assert last_request(gw)["raw_path"] == "/public/%252e%252e/v1/x"


@pytest.mark.parametrize("target", ["/../v1/x", "/public/../../v1", "/public/%2e%2e/%2e%2e/x"])
def test_climbing_above_the_root_is_400(gw: LiveGateway, target: str) -> None:
    answer = exchange(gw.proxy_port, request_bytes("GET", target))
    assert answer.status == 400 and answer.header("Content-Type") == "application/json"
    assert "error_msg" in answer.json()


def test_bad_escapes_are_400_json(gw: LiveGateway) -> None:
    for target in ("/plain/%zz", "/plain/%", "/plain/a%00b"):
        answer = exchange(gw.proxy_port, request_bytes("GET", target))
        assert answer.status == 400 and "error_msg" in answer.json()


def test_merged_slashes_and_query_kept(gw: LiveGateway) -> None:
    answer = exchange(gw.proxy_port, request_bytes("GET", "//plain///a/./b?x=%2F..&y"))
    assert answer.status == 200
    seen = last_request(gw)
    assert seen["raw_path"] == "/plain/a/b?x=%2F..&y"


# --- hosts ------------------------------------------------------------------------------------


def test_trailing_dot_and_case_reach_the_host_route(gw: LiveGateway) -> None:
    for host in ("private.example.", "PRIVATE.example.:9080", "private.example"):
        answer = exchange(gw.proxy_port, request_bytes("GET", "/host/x", host=host))
        assert answer.status == 401, host  # the protected route, not a fall-through


def test_absolute_form_host_must_match_host_header(gw: LiveGateway) -> None:
    gw.clear_fake()
    raw = request_bytes("GET", "http://public.example/host/x", host="private.example")
    answer = exchange(gw.proxy_port, raw)
    assert answer.status == 400 and "error_msg" in answer.json()
    assert gw.fake_requests() == []
    same = request_bytes("GET", "http://public.example/host/x", host="Public.Example.")
    answer = exchange(gw.proxy_port, same)
    assert answer.status == 200
    assert last_request(gw)["headers"]["host"] == "Public.Example."


def test_http10_without_host_uses_the_upstream_host(gw: LiveGateway) -> None:
    raw = request_bytes("GET", "/nohost/x", host=None, version="HTTP/1.0")
    answer = exchange(gw.proxy_port, raw)
    assert answer.status == 200
    assert last_request(gw)["headers"]["host"] == gw.fake_address
    # A host-only route never matches a request without a host.
    answer = exchange(gw.proxy_port, request_bytes("GET", "/host/x", host=None, version="HTTP/1.0"))
    assert answer.status == 404


def test_invalid_host_header_is_400(gw: LiveGateway) -> None:
    # "@", quotes and the like would reach the upstream in X-Forwarded-Host (and $host):
    # an upstream building links from it would point them at user@evil (nginx 1.29.4 refuses).
    for host in ("a..b", "a/b", "", "gateway.test@evil.example", 'a"b', "a:80x"):
        answer = exchange(gw.proxy_port, request_bytes("GET", "/plain/x", host=host))
        assert answer.status == 400, host


# --- framing ----------------------------------------------------------------------------------


def assert_json_error(answer: Response, status: int, client_bytes: bytes) -> None:
    assert answer.status == status
    assert answer.header("Content-Type") == "application/json"
    assert "error_msg" in answer.json()
    assert client_bytes not in answer.body


@pytest.mark.parametrize("port_of", ["proxy_port", "admin_port"])
def test_parser_errors_are_json_without_echo(gw: LiveGateway, port_of: str) -> None:
    port = getattr(gw, port_of)
    marker = b"SECRETMARKER"
    assert_json_error(
        exchange(port, b"GET /" + marker + b"\x01 HTTP/1.1\r\nHost: a\r\n\r\n"), 400, marker
    )
    assert_json_error(
        exchange(port, b"GET /" + marker * 800 + b" HTTP/1.1\r\nHost: a\r\n\r\n"), 414, marker
    )
    long_header = b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + marker * 800 + b"\r\n\r\n"
    assert_json_error(exchange(port, long_header), 431, marker)
    many = b"".join(b"X-%d: %s\r\n" % (i, marker) for i in range(200))
    assert_json_error(
        exchange(port, b"GET / HTTP/1.1\r\nHost: a\r\n" + many + b"\r\n"), 431, marker
    )
    # Versions the parser knows are 505; others it refuses itself (400).
    for version, status in ((b"HTTP/2.0", 505), (b"HTTP/0.9", 505), (b"HTTP/1.2", 400)):
        raw = b"GET /plain/x " + version + b"\r\nHost: a\r\n\r\n"
        assert_json_error(exchange(port, raw), status, marker)


CHUNKS = b"5\r\nhello\r\n0\r\n\r\n"


@pytest.mark.parametrize(
    "head",
    [
        # HTTP/1.0 has no chunks: a proxy in front may frame it by its length or its close
        # (nginx: 400 "client sent HTTP/1.0 request with Transfer-Encoding header").
        b"POST /plain/te HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n",
        # Only "chunked" itself (nginx: 501 "client sent unknown Transfer-Encoding"; llmgate
        # answers no client anything in 5xx).
        b"POST /plain/te HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity, chunked\r\n",
        b"POST /plain/te HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n",
        b"POST /plain/te HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked,\r\n",
    ],
    ids=["http10", "identity-chunked", "gzip-chunked", "trailing-comma"],
)
def test_transfer_encodings_nginx_refuses_never_reach_the_upstream(
    gw: LiveGateway, head: bytes
) -> None:
    gw.clear_fake()
    assert_json_error(exchange(gw.proxy_port, head + b"\r\n" + CHUNKS), 400, b"hello")
    assert gw.fake_requests() == []


def test_chunked_in_any_case_and_spacing_is_read_as_chunks(gw: LiveGateway) -> None:
    for value in (b"chunked", b"Chunked", b"CHUNKED", b"\tchunked "):
        head = b"POST /plain/te HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: " + value + b"\r\n"
        assert exchange(gw.proxy_port, head + b"\r\n" + CHUNKS).status == 200, value
        assert last_request(gw)["body_length"] == 5


def test_crlf_in_a_rewritten_target_is_refused(gw: LiveGateway) -> None:
    gw.put(
        "routes/rewrite-unsafe",
        {
            "uri": "/unsafe/*",
            "plugins": {
                "proxy-rewrite": {"uri": "/echo/$arg_next", "use_real_request_uri_unsafe": True}
            },
            "upstream": gw.upstream(),
        },
    )
    gw.put(
        "routes/rewrite-safe",
        {
            "uri": "/safe/*",
            "plugins": {"proxy-rewrite": {"uri": "/echo/$arg_next"}},
            "upstream": gw.upstream(),
        },
    )
    gw.clear_fake()
    for bad in ("a%0d%0aX-Injected:%201", "a%0aGET%20/x", "a%20b", "a%00"):
        answer = exchange(gw.proxy_port, request_bytes("GET", f"/unsafe/x?next={bad}"))
        assert answer.status == 400 and "error_msg" in answer.json(), bad
    assert gw.fake_requests() == []
    # Without the unsafe flag the new path is escaped: it goes upstream as data.
    answer = exchange(gw.proxy_port, request_bytes("GET", "/safe/x?next=a%20b%09c%0d%0aX:%201"))
    assert answer.status in (200, 404)  # the fake's own router refuses a path with CR/LF
    assert exchange(gw.proxy_port, request_bytes("GET", "/safe/x?next=a%20b%09c")).status == 200
    assert last_request(gw)["raw_path"].startswith("/echo/a%20b%09c?")


def test_unsafe_flag_forwards_the_path_as_sent(gw: LiveGateway) -> None:
    gw.put(
        "routes/raw",
        {
            "uri": "/raw/*",
            "plugins": {"proxy-rewrite": {"use_real_request_uri_unsafe": True}},
            "upstream": gw.upstream(),
        },
    )
    assert exchange(gw.proxy_port, request_bytes("GET", "/raw/a/%2e/b%2Fc?q=1")).status == 200
    assert last_request(gw)["raw_path"] == "/raw/a/%2e/b%2Fc?q=1"
    assert exchange(gw.proxy_port, request_bytes("GET", "/plain/a/%2e/b%2Fc?q=1")).status == 200
    assert last_request(gw)["raw_path"] == "/plain/a/b/c?q=1"


def test_admin_refuses_deep_json_and_sub_paths(gw: LiveGateway) -> None:
    deep = b'{"desc": ' + b"[" * 600 + b"]" * 600 + b', "uri": "/d"}'
    for depth_body in (deep, b"[" * 1000 + b"]" * 1000, b'{"a":' * 300 + b"1" + b"}" * 300):
        raw = request_bytes(
            "PUT", "/apisix/admin/routes/deep", {"X-API-KEY": ADMIN_KEY}, depth_body
        )
        answer = exchange(gw.admin_port, raw)
        assert answer.status == 400 and "error_msg" in answer.json()
    gw.put("routes/sub", {"uri": "/sub", "upstream": gw.upstream()})
    for method in ("PUT", "DELETE", "GET", "POST"):
        raw = request_bytes(
            method, "/apisix/admin/routes/sub/anything", {"X-API-KEY": ADMIN_KEY}, b"{}"
        )
        answer = exchange(gw.admin_port, raw)
        assert answer.status == 400 and "error_msg" in answer.json(), method
    assert gw.admin("GET", "routes/sub")[0] == 200  # still there, unchanged


# --- aborts: the log phase runs, limit-conn releases, the upstream call is cancelled ---------


def log_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def wait_for(predicate: Any, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


@pytest.fixture(scope="module")
def slot(gw: LiveGateway) -> Path:
    """A route with one connection slot (limit-conn), logged to a file."""
    log = gw.workdir / "slot-access.log"
    gw.put(
        "routes/slot",
        {
            "uri": "/slot/*",
            "plugins": {
                "limit-conn": {
                    "conn": 1,
                    "burst": 0,
                    "default_conn_delay": 0.1,
                    "key_type": "var",
                    "key": "remote_addr",
                },
                "file-logger": {"path": str(log)},
            },
            "upstream": gw.upstream(),
        },
    )
    return log


def slot_is_free(gw: LiveGateway) -> bool:
    return exchange(gw.proxy_port, request_bytes("GET", "/slot/probe")).status == 200


def test_abort_mid_upload_releases_the_slot_and_logs_499(gw: LiveGateway, slot: Path) -> None:
    assert slot_is_free(gw)
    head = request_bytes("POST", "/slot/upload", body=b"u" * 500_000)
    client = RawClient(gw.proxy_port)
    client.send(head[:200_000])  # the head and part of the body: the request holds the slot
    time.sleep(0.3)
    assert exchange(gw.proxy_port, request_bytes("GET", "/slot/busy")).status == 503
    client.abort()
    assert wait_for(lambda: slot_is_free(gw), 5), "the aborted upload kept its slot"
    assert wait_for(
        lambda: any(
            line["request"]["uri"] == "/slot/upload" and line["response"]["status"] == 499
            for line in log_lines(slot)
        ),
        5,
    ), log_lines(slot)


def test_abort_mid_stream_closes_the_upstream_connection(gw: LiveGateway, slot: Path) -> None:
    assert slot_is_free(gw)
    pid = gw.gw.proc.pid
    body = json.dumps(
        {"messages": [{"role": "user", "content": "long story"}], "stream": True}
    ).encode()
    raw = request_bytes(
        "POST", "/slot/v1/chat/completions", {"X-Fake-Stream-Delay-Ms": "3000"}, body
    )
    client = RawClient(gw.proxy_port)
    client.send(raw)
    status, *_ = client.read_head()
    assert status == 200
    assert client.read_chunk()  # the stream has begun
    held = connections_held(pid, gw.fake_port, remote=True)
    assert held >= 1
    client.abort()
    started = time.monotonic()
    assert wait_for(lambda: connections_held(pid, gw.fake_port, remote=True) < held, 1.0), (
        "the upstream connection outlived the client"
    )
    assert time.monotonic() - started <= 1.0
    assert wait_for(lambda: slot_is_free(gw), 5)
    assert wait_for(
        lambda: any(
            line["request"]["uri"] == "/slot/v1/chat/completions"
            and line["response"]["status"] == 499
            for line in log_lines(slot)
        ),
        5,
    ), log_lines(slot)


def test_regex_uri_vars_and_cache_keys_see_the_normalised_path(gw: LiveGateway) -> None:
    gw.put(
        "routes/regex",
        {
            "uri": "/re/*",
            "plugins": {"proxy-rewrite": {"regex_uri": ["^/re/(.*)$", "/echo/$1"]}},
            "upstream": gw.upstream(),
        },
    )
    gw.put(
        "routes/vars",
        {"uri": "/vars/*", "vars": [["uri", "==", "/vars/b"]], "upstream": gw.upstream()},
    )
    gw.put(
        "routes/cached-get",
        {
            "uri": "/cget/*",
            "plugins": {"proxy-cache": {"cache_strategy": "memory"}},
            "upstream": gw.upstream(),
        },
    )
    assert exchange(gw.proxy_port, request_bytes("GET", "/re/a/../%62?q=1")).status == 200
    assert last_request(gw)["raw_path"] == "/echo/b?q=1"
    assert exchange(gw.proxy_port, request_bytes("GET", "/vars/a/%2e%2e/b")).status == 200
    assert exchange(gw.proxy_port, request_bytes("GET", "/vars/a")).status == 404
    # The default cache key ($host$request_uri) holds the normalised path, as APISIX's.
    first = exchange(gw.proxy_port, request_bytes("GET", "/cget/x/../y"))
    again = exchange(gw.proxy_port, request_bytes("GET", "/cget/%79"))
    assert first.header("Apisix-Cache-Status") == "MISS"
    assert again.header("Apisix-Cache-Status") == "HIT"


def test_every_answer_names_llmgate_as_its_server_and_no_stack(gw: LiveGateway) -> None:
    """aiohttp's default ``Server: Python/3.x aiohttp/3.x`` told every client the stack and its
    versions; the upstream's own Server header is not passed on either (nginx hides it)."""
    from llmgate import __version__

    upstream_server = exchange(gw.fake_port, request_bytes("GET", "/x")).header("Server")
    assert upstream_server is not None and "aiohttp" in upstream_server  # what it would leak
    answers = [
        exchange(gw.proxy_port, request_bytes("GET", "/plain/x")),  # proxied
        exchange(gw.proxy_port, request_bytes("GET", "/no-such-route")),  # the gateway's 404
        exchange(gw.proxy_port, b"GET /x HTTP/1.1\r\nHost: a\r\nBad header\r\n\r\n"),  # parser
        exchange(gw.admin_port, request_bytes("GET", "/apisix/admin/routes")),  # admin 401
        exchange(
            gw.admin_port,
            request_bytes("GET", "/apisix/admin/routes", headers={"X-API-KEY": ADMIN_KEY}),
        ),
    ]
    assert [a.status for a in answers] == [200, 404, 400, 401, 200]
    for answer in answers:
        assert answer.header("Server") == f"llmgate/{__version__}", answer.headers


def test_an_http10_stream_without_a_length_ends_with_its_connection(gw: LiveGateway) -> None:
    """HTTP/1.0 has no chunks: a streamed answer with no Content-Length can only end with the
    connection (nginx closes it), even when the client asked to keep it.  aiohttp kept it open
    (its Response.keep_alive stays True), so the client waited for an end that never came, and
    the gateway's ``Connection: keep-alive`` said there would be none."""
    body = json.dumps({"messages": [{"role": "user", "content": "hi"}], "stream": True}).encode()
    headers = {"Connection": "keep-alive", "X-Fake-Stream-Delay-Ms": "20"}  # streamed, surely
    raw = request_bytes("POST", "/ai/v1/chat/completions", headers, body, version="HTTP/1.0")
    with RawClient(gw.proxy_port) as client:
        client.send(raw)
        status, _, version, head = client.read_head()
        named = {name.lower(): value for name, value in head}
        assert (status, version) == (200, "HTTP/1.0")
        assert "content-length" not in named and "transfer-encoding" not in named, head
        assert named.get("connection") == "close", head
        started = time.monotonic()
        received, _ = client.drain(10)  # until the gateway closes (10 s at most)
        assert received and time.monotonic() - started < 5, "the connection outlived the stream"
