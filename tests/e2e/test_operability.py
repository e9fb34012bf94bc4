"""The data plane's access log on standard output, against a real ``llmgate serve``: on by
default, one APISIX-format line per request (refused, routed, proxied, aborted), no secret ever
written, and no line or field a client can forge.  Turned off, and as JSON lines:
tests/observability/test_logs.py (its gateways)."""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.net import LiveGateway, RawClient, exchange, request_bytes
from tests.processes import free_port, llmgate_serve

# APISIX's default access_log_format, field by field; escaped values hold no space-breaking
# quote, so a forged field or line cannot match.
LINE = re.compile(
    r"(?P<remote_addr>\S+) - (?P<remote_user>\S+) \[(?P<time>[^\]]+)\] (?P<host>\S+) "
    r'"(?P<request>[^"]*)" (?P<status>\d{3}) (?P<body_bytes>\d+) (?P<request_time>[\d.]+) '
    r'"(?P<referer>[^"]*)" "(?P<agent>[^"]*)" (?P<upstream_addr>\S+) (?P<upstream_status>\S+) '
    r'(?P<upstream_time>\S+) "(?P<upstream_uri>[^"]*)"'
    r"(?P<llm>( [a-z_]+=\S+)*)"  # after them, a request that called an LLM: its tokens
)
SECRETS = ("pass-w0rd-9", "k3y-auth-secret", "q-secret-77", "admin-pw-55", "ref-secret-31")


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveGateway]:
    with LiveGateway(tmp_path_factory.mktemp("operability")) as live:
        live.put(
            "consumers",
            {
                "username": "alice",
                "plugins": {"basic-auth": {"username": "alice-login", "password": SECRETS[0]}},
            },
        )
        live.put("consumers", {"username": "bob", "plugins": {"key-auth": {"key": SECRETS[1]}}})
        live.put(
            "routes/basic",
            {"uri": "/basic", "plugins": {"basic-auth": {}}, "upstream": live.upstream()},
        )
        live.put(
            "routes/key",
            {
                "uri": "/v1/*",
                "plugins": {"key-auth": {"query": "token"}},
                "upstream": live.upstream(),
            },
        )
        live.put("routes/open", {"uri": "/open", "upstream": live.upstream()})
        yield live


def access_lines(gw: LiveGateway) -> list[str]:
    return [line for line in gw.log().splitlines() if line.startswith("127.0.0.1 - ")]


def wait_lines(gw: LiveGateway, count: int) -> list[str]:
    deadline = time.monotonic() + 5
    while len(lines := access_lines(gw)) < count and time.monotonic() < deadline:
        time.sleep(0.02)
    return lines


def test_one_apisix_line_per_request_with_upstream_fields(gw: LiveGateway) -> None:
    before = len(access_lines(gw))
    answer = exchange(
        gw.proxy_port,
        request_bytes("GET", "/open?x=1", {"User-Agent": "probe/1", "Referer": "http://site/page"}),
    )
    assert answer.status == 200
    assert exchange(gw.proxy_port, request_bytes("GET", "/nowhere")).status == 404
    lines = wait_lines(gw, before + 2)[before:]
    assert len(lines) == 2, lines
    proxied, missing = (LINE.fullmatch(line) for line in lines)
    assert proxied is not None and missing is not None, lines
    assert proxied["request"] == "GET /open?x=1 HTTP/1.1"
    assert (proxied["status"], proxied["host"], proxied["agent"]) == (
        "200",
        "gateway.test",
        "probe/1",
    )
    assert int(proxied["body_bytes"]) == len(answer.body)
    assert proxied["referer"] == "http://site/page"
    assert proxied["upstream_addr"] == gw.fake_address and proxied["upstream_status"] == "200"
    assert proxied["upstream_uri"] == "http://gateway.test/open?x=***"
    assert (missing["status"], missing["upstream_addr"], missing["upstream_uri"]) == (
        "404",
        "-",
        "-",
    )


def test_a_repeated_referer_is_logged_whole(gw: LiveGateway) -> None:
    """nginx >= 1.23 keeps every line of a repeated header: ``$http_referer`` joins them with
    ", ", as any ``$http_<name>``.  Each line is masked on its own (a secret in the second
    line's query stays out of the log).  (A repeated User-Agent is a 400: aiohttp's parser
    holds it to one line.)"""
    lines = [("Referer", "http://a/?k=1"), ("Referer", f"http://b/?api_key={SECRETS[4]}")]
    before = len(access_lines(gw))
    assert exchange(gw.proxy_port, request_bytes("GET", "/open", lines)).status == 200
    [line] = wait_lines(gw, before + 1)[before:]
    fields = LINE.fullmatch(line)
    assert fields is not None, line
    assert fields["referer"] == "http://a/?k=1, http://b/?api_key=***"
    assert SECRETS[4] not in gw.log()


def test_no_secret_is_ever_written(gw: LiveGateway) -> None:
    basic = base64.b64encode(f"alice-login:{SECRETS[0]}".encode()).decode()
    sent = [
        request_bytes("GET", "/basic", {"Authorization": f"Basic {basic}"}),
        request_bytes("GET", f"/v1/models?token={SECRETS[1]}&apikey={SECRETS[2]}"),
        request_bytes("GET", "/v1/models", {"apikey": SECRETS[1], "X-API-KEY": SECRETS[3]}),
        request_bytes("GET", "/open", {"Referer": f"http://x/?api_key={SECRETS[4]}&k=v"}),
        request_bytes(
            "POST",
            "/open",
            {"Content-Type": "application/json"},
            f'{{"password": "{SECRETS[3]}"}}'.encode(),
        ),
        # A user name that is a key (as some clients send one): not written either.
        request_bytes(
            "GET",
            "/basic",
            {"Authorization": "Basic " + base64.b64encode(f"{SECRETS[2]}:".encode()).decode()},
        ),
    ]
    before = len(access_lines(gw))
    statuses = [exchange(gw.proxy_port, raw).status for raw in sent]
    assert statuses == [200, 200, 200, 200, 200, 401]
    lines = wait_lines(gw, before + len(sent))[before:]
    assert len(lines) == len(sent)
    fields = [LINE.fullmatch(line) for line in lines]
    assert all(fields), lines
    assert fields[0]["remote_user"] == "alice"  # the consumer, not the login
    assert fields[1]["request"] == "GET /v1/models?token=***&apikey=*** HTTP/1.1"
    assert fields[1]["remote_user"] == "bob"
    assert fields[3]["referer"] == "http://x/?api_key=***&k=v"
    assert fields[5]["remote_user"] == "-"
    log = gw.log()
    assert not [s for s in SECRETS if s in log], log[-3000:]
    assert basic not in log


def test_clients_cannot_forge_lines_or_fields(gw: LiveGateway) -> None:
    """CR, LF, quotes and other bytes from a client come out as \\xHH; refused requests are
    logged too, and whatever is sent, one request is one line."""
    hostile = [
        b'GET /a"b\\c HTTP/1.1\r\nHost: h" 200 0 "x\r\nUser-Agent: ua" "forged\r\n\r\n',
        b"GET /nowhere HTTP/1.1\r\nHost: h\r\nUser-Agent: sep\xe2\x80\xa8next\r\n\r\n",
        b"GET /nowhere HTTP/1.1\r\nHost: h\r\nUser-Agent: nel\x85end\x1b\r\n\r\n",
        b"GET /open%0D%0A127.0.0.1%20-%20forged HTTP/1.1\r\nHost: h\r\n\r\n",
        b"GET /a\rforged HTTP/1.1\r\nHost: h\r\n\r\n",  # refused by the parser: 400
        b"GET /open HTTP/1.1\r\nHost: h\r\nUser-Agent: a\rforged\r\n\r\n",
        b"GET /open HTTP/1.1\r\nHost: h\nforged: 1\r\n\r\n",
        b"GET /open HTTP/1.1\r\nHost: h\r\nUser-Agent: a\r\n forged\r\n\r\n",
    ]
    before = len(access_lines(gw))
    for raw in hostile:
        with RawClient(gw.proxy_port) as client:
            client.send(raw)
            client.read_response()
    lines = wait_lines(gw, before + len(hostile))[before:]
    assert len(lines) == len(hostile), lines
    assert all(LINE.fullmatch(line) for line in lines), lines
    assert ' h\\x22\\x20200\\x200\\x20\\x22x "GET /a\\x22b\\x5Cc HTTP/1.1" 400 ' in lines[0]
    assert '"ua\\x22 \\x22forged"' in lines[0]
    assert '"sep\\xE2\\x80\\xA8next"' in lines[1]
    assert '"nel\\x85end\\x1B"' in lines[2] or " 400 " in lines[2]
    assert "/open%0D%0A127.0.0.1%20-%20forged" in lines[3]
    assert all(" 400 " in line for line in lines[4:]), lines
    log = gw.log()
    assert not re.search(r"^\s*forged", log, re.MULTILINE)
    assert all(c == "\n" or " " <= c <= "~" for c in "".join(lines)), lines


def test_a_client_that_leaves_is_logged_as_499(gw: LiveGateway) -> None:
    before = len(access_lines(gw))
    with RawClient(gw.proxy_port) as client:
        client.send(request_bytes("GET", "/open", {"X-Fake-Latency-Ms": "2000"}))
        time.sleep(0.3)
        client.abort()
    lines = wait_lines(gw, before + 1)[before:]
    assert len(lines) == 1
    assert '"GET /open HTTP/1.1" 499 0 ' in lines[0]


def test_a_configuration_warning_is_logged_once_while_it_holds(gw: LiveGateway) -> None:
    """A route reading an unset variable: said once however many revisions follow; said again
    only when it comes back after going away."""
    warning = "variable OPS_UNSET_TOKEN"
    headers = {"set": {"X-Token": "$env://OPS_UNSET_TOKEN"}}
    route = {"uri": "/env", "plugins": {"proxy-rewrite": {"headers": headers}}}
    gw.put("routes/env", {**route, "upstream": gw.upstream()})
    for n in range(4):  # other changes: each a new revision, recompiled
        gw.put(f"routes/other{n}", {"uri": f"/other{n}", "upstream": gw.upstream()})
    assert gw.log().count(warning) == 1
    gw.delete("routes/env")
    gw.put("routes/other0", {"uri": "/other0b", "upstream": gw.upstream()})
    gw.put("routes/env", {**route, "upstream": gw.upstream()})
    gw.put("routes/other1", {"uri": "/other1b", "upstream": gw.upstream()})
    assert gw.log().count(warning) == 2


@pytest.mark.parametrize(("busy", "fmt"), [("all", "json"), ("metrics", "text")])
def test_a_second_serve_on_busy_ports_fails_before_announcing_anything(
    gw: LiveGateway, tmp_path: Path, busy: str, fmt: str
) -> None:
    """Every listener is checked before any is announced: a second gateway given the first
    one's ports (its data plane shares the port through SO_REUSEPORT, so only a check finds
    it), or only one busy port, exits 1 with the listener named and no "listening" line."""
    ports = {"proxy": free_port(), "metrics": gw.gw.metrics_port, "admin": free_port()}
    if busy == "all":
        ports = {"proxy": gw.proxy_port, "metrics": gw.gw.metrics_port, "admin": gw.admin_port}
    env = {
        "LLMGATE_PROXY_LISTEN": f"127.0.0.1:{ports['proxy']}",
        "LLMGATE_METRICS_LISTEN": f"127.0.0.1:{ports['metrics']}",
        "LLMGATE_ADMIN_LISTEN": f"127.0.0.1:{ports['admin']}",
        "LLMGATE_LOG_FORMAT": fmt,
    }
    with llmgate_serve(tmp_path, env=env, wait=False) as second:
        assert second.proc.wait(30) == 1
        out = second.output()
    assert "listening" not in out, out
    named = {"all": "data plane", "metrics": "metrics"}[busy]
    if fmt == "json":
        (line,) = [json.loads(x) for x in out.splitlines() if x.startswith("{")]
        assert line["level"] == "error" and line["message"].startswith(f"{named} 127.0.0.1:")
        assert "in use" in line["message"]
    else:
        assert f"llmgate: error: {named} 127.0.0.1:" in out and "in use" in out, out


def test_a_client_that_leaves_mid_stream_is_logged_with_the_bytes_sent(gw: LiveGateway) -> None:
    """nginx's $body_bytes_sent for a 499: what was sent before the client left, not 0."""
    body = b'{"model": "m", "stream": true, "messages": [{"role": "user", "content": "hi"}]}'
    before = len(access_lines(gw))
    with RawClient(gw.proxy_port) as client:
        client.send(
            request_bytes(
                "POST",
                f"/v1/chat/completions?token={SECRETS[1]}",
                {"Content-Type": "application/json", "X-Fake-Stream-Delay-Ms": "400"},
                body,
            )
        )
        status, *_ = client.read_head()
        first = client.read_chunk()
        client.abort()
    assert status == 200 and first
    lines = wait_lines(gw, before + 1)[before:]
    assert len(lines) == 1
    fields = LINE.fullmatch(lines[0])
    assert fields is not None and fields["status"] == "499", lines
    assert int(fields["body_bytes"]) >= len(first), lines
