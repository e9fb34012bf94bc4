"""file-logger at run time: one JSON line per request, LLM usage, bodies, and no secrets."""

from __future__ import annotations

import asyncio
import base64
import socket
import time
from pathlib import Path
from typing import Any

import orjson

from llmgate.observability.batch import BatchProcessor

CHAT = {"messages": [{"role": "user", "content": "Who is Pikachu?"}]}


def written(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines() if path.exists() else []


async def until(predicate: Any, seconds: float = 2.0) -> None:
    async with asyncio.timeout(seconds):
        while not predicate():  # noqa: ASYNC110 (polls what another task changes)
            await asyncio.sleep(0.01)


async def read_lines(path: Path, count: int) -> list[dict[str, Any]]:
    """The lines of ``path`` once ``count`` are written (the writer is async), decoded."""
    await until(lambda: len(written(path)) >= count)
    return [orjson.loads(line) for line in written(path)]


def _absent() -> BatchProcessor:
    raise AssertionError("no writer for this path")


def writer(gateway, path: Path) -> BatchProcessor:  # type: ignore[no-untyped-def]
    return gateway.services.shared.get_or_make(f"file-logger:{path}", BatchProcessor, _absent)


async def route(gateway, path: Path, uri: str = "/*", **conf: Any) -> None:  # type: ignore[no-untyped-def]
    await gateway.put(
        "routes/1",
        {
            "uri": uri,
            "plugins": {"file-logger": {"path": str(path), **conf}},
            "upstream": gateway.upstream(),
        },
    )


async def test_one_line_per_request_with_the_default_fields(gateway, tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "access.log"
    await route(gateway, path)
    for i in range(3):
        resp = await gateway.proxy.get(f"/echo/{i}?x={i}", headers={"X-Trace": "t"})
        assert resp.status == 200
        await resp.read()

    lines = await read_lines(path, 3)
    await asyncio.sleep(0.05)
    assert len(written(path)) == 3  # and no more
    assert [line["request"]["uri"] for line in lines] == [
        "/echo/0?x=0",
        "/echo/1?x=1",
        "/echo/2?x=2",
    ]
    line = lines[0]
    assert line["client_ip"] == "127.0.0.1"
    assert line["route_id"] == "1"
    assert line["service_id"] == ""
    assert line["upstream"] == gateway.fake_address
    assert "consumer" not in line and "llm" not in line
    assert abs(line["start_time"] - time.time() * 1000) < 10_000
    assert line["latency"] >= line["upstream_latency"] > 0
    assert line["apisix_latency"] == round(line["latency"] - line["upstream_latency"], 3)
    request = line["request"]
    assert request["method"] == "GET"
    assert request["querystring"] == {"x": "0"}
    assert request["headers"]["x-trace"] == "t"
    assert request["url"].startswith("http://127.0.0.1:") and request["url"].endswith("/echo/0?x=0")
    assert request["size"] > 0 and "body" not in request
    response = line["response"]
    assert response["status"] == 200
    assert response["headers"]["content-type"].startswith("application/json")
    assert response["size"] > 0 and "body" not in response
    assert set(line["server"]) == {"hostname", "version"}


async def test_llm_call_is_logged_with_usage(gateway, tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "llm.log"
    ai_proxy = {
        "provider": "openai-compatible",
        "auth": {"header": {"Authorization": "Bearer sk-upstream-secret"}},
        "options": {"model": "gpt-4o-mini"},
        "override": {"endpoint": f"http://{gateway.fake_address}/v1/chat/completions"},
    }
    await gateway.put(
        "routes/1",
        {"uri": "/chat", "plugins": {"ai-proxy": ai_proxy, "file-logger": {"path": str(path)}}},
    )
    resp = await gateway.proxy.post("/chat", json=CHAT)
    assert resp.status == 200
    usage = (await resp.json())["usage"]
    resp = await gateway.proxy.post("/chat", json={**CHAT, "stream": True})
    assert resp.status == 200
    await resp.read()

    plain, streamed = await read_lines(path, 2)
    llm = plain["llm"]
    assert llm["provider"] == "openai-compatible"
    assert llm["model"] == "gpt-4o-mini"
    assert llm["stream"] is False
    assert (llm["prompt_tokens"], llm["completion_tokens"], llm["total_tokens"]) == (
        usage["prompt_tokens"],
        usage["completion_tokens"],
        usage["total_tokens"],
    )
    assert 0 < llm["ttft_ms"] <= llm["duration_ms"]
    assert plain["upstream_latency"] > 0
    assert streamed["llm"]["stream"] is True
    assert streamed["llm"]["total_tokens"] > 0
    assert b"sk-upstream-secret" not in path.read_bytes()


async def test_no_secret_is_ever_written(gateway, tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "secrets.log"
    logger = {"path": str(path)}
    formatted = {
        "path": str(path),
        "log_format": {
            "auth": "$http_authorization",
            "proxy": "$http_proxy_authorization",
            "cookie": "$http_cookie",
            "sid": "$cookie_sid",
            "key": "$arg_key",
            "uri": "$request_uri",
            "args": "$args",
            "apikey": "$http_apikey",
            "x_token": "$http_x_token",
        },
    }
    await gateway.put(
        "consumers",
        {
            "username": "jack",
            "plugins": {
                "key-auth": {"key": "SECRET-key-auth-value"},
                "basic-auth": {"username": "jack", "password": "SECRET-basic-password"},
            },
        },
    )
    await gateway.put(
        "consumers",
        {"username": "jill", "plugins": {"key-auth": {"key": "SECRET-custom-key"}}},
    )
    outbound_auth = {"headers": {"set": {"Authorization": "Bearer SECRET-upstream-token"}}}
    set_cookie = {"headers": {"set": {"Set-Cookie": "session=SECRET-response-cookie"}}}
    routes = {
        "1": ("/key/*", {"key-auth": {}}),
        "2": ("/basic/*", {"basic-auth": {}}),
        "3": ("/custom/*", {"key-auth": {"header": "X-Token", "query": "tk"}}),
    }
    for route_id, (uri, auth) in routes.items():
        for i, conf in enumerate((logger, formatted)):
            await gateway.put(
                f"routes/{route_id}{i}",
                {
                    "uri": uri.replace("/*", f"/{i}/*"),
                    "plugins": {
                        **auth,
                        "file-logger": conf,
                        "proxy-rewrite": outbound_auth,
                        "response-rewrite": set_cookie,
                    },
                    "upstream": gateway.upstream(),
                },
            )

    basic = base64.b64encode(b"jack:SECRET-basic-password").decode()
    everywhere = {
        "Proxy-Authorization": "Basic SECRET-proxy-authorization",
        "api-key": "SECRET-api-key-header",
        "X-API-KEY": "SECRET-x-api-key-upper",
        "Cookie": "sid=SECRET-cookie-value; other=SECRET-cookie-other",
    }
    query = (
        "api_key=SECRET-q-api_key&apikey=SECRET-q-apikey&key=SECRET-q-key"
        "&token=SECRET-q-token&access_token=SECRET-q-access_token&keep=visible"
    )
    requests = [
        ("/key/{i}/x", {"apikey": "SECRET-key-auth-value", "Authorization": "Bearer SECRET-b"}),
        ("/basic/{i}/x", {"Authorization": f"Basic {basic}", "apikey": "SECRET-apikey-hdr"}),
        ("/custom/{i}/x", {"X-Token": "SECRET-custom-key", "x-api-key": "SECRET-lower"}),
        ("/custom/{i}/x?tk=SECRET-custom-key&", {"Authorization": "SECRET-raw-authz"}),
    ]
    sent = 0
    for i in (0, 1):
        for target, headers in requests:
            url = target.format(i=i)
            url += ("&" if "?" in url else "?") + query
            resp = await gateway.proxy.get(url, headers={**everywhere, **headers})
            assert resp.status == 200, await resp.text()
            echoed = await resp.json()
            assert echoed["headers"]["authorization"] == "Bearer SECRET-upstream-token"
            assert resp.headers["Set-Cookie"] == "session=SECRET-response-cookie"
            sent += 1

    lines = await read_lines(path, sent)
    raw = path.read_bytes()
    assert b"SECRET" not in raw, raw.decode()
    assert basic.encode() not in raw
    assert b"keep=visible" in raw
    assert {line.get("consumer", {}).get("username") for line in lines if "consumer" in line} == {
        "jack",
        "jill",
    }
    formatted_lines = [line for line in lines if "auth" in line]
    assert len(formatted_lines) == len(requests)
    assert {line["cookie"] for line in formatted_lines} == {"***"}
    assert {line["key"] for line in formatted_lines} == {"***"}


async def test_request_and_response_bodies(gateway, tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "bodies.log"
    await route(
        gateway, path, include_req_body=True, include_resp_body=True, max_resp_body_bytes=20
    )
    resp = await gateway.proxy.post("/echo", data=b'{"prompt":"hi"}')
    assert resp.status == 200
    full = await resp.read()
    assert "Content-Length" not in resp.headers or int(resp.headers["Content-Length"]) == len(full)

    (line,) = await read_lines(path, 1)
    assert line["request"]["body"] == '{"prompt":"hi"}'
    assert line["response"]["body"] == full[:20].decode()


async def test_no_response_body_keeps_content_length(gateway, tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "plain.log"
    await route(gateway, path)
    resp = await gateway.proxy.get("/echo")
    assert int(resp.headers["Content-Length"]) == len(await resp.read())


async def test_log_format_and_match(gateway, tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "format.log"
    await route(
        gateway,
        path,
        log_format={"host": "$host", "client": "$remote_addr", "req": {"m": "$request_method"}},
        match=[[["arg_name", "==", "jack"]]],
    )
    for name in ("rose", "jack"):
        assert (await gateway.proxy.get(f"/echo?name={name}")).status == 200

    (line,) = await read_lines(path, 1)
    assert line == {
        "host": "127.0.0.1",
        "client": "127.0.0.1",
        "req": {"m": "GET"},
        "route_id": "1",
    }
    await asyncio.sleep(0.05)
    assert len(written(path)) == 1


async def test_log_format_takes_nginx_common_variables(gateway, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The variables of nginx's (and APISIX's) default access-log format, and the request's
    Content-Type, Content-Length and ``$is_args``, are what APISIX logs, not null."""
    path = tmp_path / "nginx.log"
    names = (
        "time_local", "request", "body_bytes_sent", "upstream_scheme", "upstream_host",
        "upstream_uri", "content_type", "content_length", "is_args", "document_uri",
        "sent_http_content_type", "upstream_http_content_length", "sent_http_set_cookie",
        "remote_user", "hostname", "server_name",
    )  # fmt: skip
    await route(gateway, path, log_format={name: f"${name}" for name in names})
    resp = await gateway.proxy.post(
        "/echo/a?x=1&api_key=sk-1",
        data=b"hello",
        headers={"Content-Type": "text/plain", "Authorization": "Basic amFjazpzZWNyZXQ="},
    )
    body = await resp.read()
    resp_type = resp.headers["Content-Type"]
    resp = await gateway.proxy.get("/echo/b")
    await resp.read()

    first, second = await read_lines(path, 2)
    assert time.strptime(first["time_local"], "%d/%b/%Y:%H:%M:%S %z")
    assert first["request"] == "POST /echo/a?x=1&api_key=*** HTTP/1.1"  # the key masked
    assert first["body_bytes_sent"] == len(body) > 0
    assert first["upstream_scheme"] == "http"
    assert first["upstream_host"] == orjson.loads(body)["headers"]["host"]  # pass_host: pass
    assert first["upstream_uri"] == "/echo/a?x=***&api_key=***"  # every value sent upstream
    assert first["content_type"] == "text/plain"
    assert first["content_length"] == "5"
    assert first["is_args"] == "?"
    assert first["document_uri"] == "/echo/a"
    assert first["sent_http_content_type"] == resp_type
    assert first["upstream_http_content_length"] == str(len(body))
    assert first["sent_http_set_cookie"] is None
    assert second["is_args"] == "" and second["upstream_uri"] == "/echo/b"
    assert second["content_type"] is None and second["request"] == "GET /echo/b HTTP/1.1"
    # $remote_user: the Basic user name (jack:secret), never the password; none without one.
    assert first["remote_user"] == "jack" and second["remote_user"] is None
    assert "secret" not in path.read_text()
    assert first["hostname"] == socket.gethostname() and first["server_name"] == "_"


async def test_routes_share_one_writer_per_path_across_reloads(gateway, tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "shared.log"
    await route(gateway, path)
    first = writer(gateway, path)
    await gateway.put(
        "routes/2",
        {
            "uri": "/two",
            "plugins": {"file-logger": {"path": str(path), "include_req_body": True}},
            "upstream": gateway.upstream(),
        },
    )
    assert writer(gateway, path) is first
    assert (await gateway.proxy.get("/one")).status == 200
    assert (await gateway.proxy.get("/two")).status == 200
    lines = await read_lines(path, 2)
    assert sorted(line["route_id"] for line in lines) == ["1", "2"]
    await until(lambda: first.sent == 2)  # ``sent`` counts once the write returned


async def test_log_file_moved_away_is_reopened(gateway, tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "rotate.log"
    await route(gateway, path)
    assert (await gateway.proxy.get("/a")).status == 200
    await read_lines(path, 1)
    path.rename(tmp_path / "rotate.log.1")
    assert (await gateway.proxy.get("/b")).status == 200
    (line,) = await read_lines(path, 1)
    assert line["request"]["uri"] == "/b"


async def test_unwritable_path_never_fails_the_request(gateway, tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "missing-dir" / "x.log"
    await route(gateway, path)
    started = time.perf_counter()
    resp = await gateway.proxy.get("/echo")
    assert resp.status == 200
    assert time.perf_counter() - started < 0.5
    processor = writer(gateway, path)
    await processor.close()  # cuts the retry wait short
    assert (processor.sent, processor.dropped) == (0, 1)
