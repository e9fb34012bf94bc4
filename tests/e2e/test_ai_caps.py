"""ai-proxy's ``max_stream_duration_ms`` and ``max_response_bytes`` and ai-proxy-multi's
per-instance ``timeout``, over real sockets: a client reading a long stream byte by byte from a
real ``llmgate serve``, the fake upstream streaming slowly or at length."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.net import ConnectionClosed, LiveGateway, RawClient, request_bytes, wait_for

CHAT = {"model": "m", "messages": [{"role": "user", "content": "Tell me about Pikachu"}]}


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveGateway]:
    workdir = tmp_path_factory.mktemp("ai-caps")
    with LiveGateway(workdir) as gw:
        log = {"file-logger": {"path": str(workdir / "access.log")}}

        def ai_proxy(**caps: Any) -> dict[str, Any]:
            return {
                "provider": "openai-compatible",
                "auth": {"header": {"Authorization": "Bearer upstream-secret"}},
                "override": {"endpoint": f"http://{gw.fake_address}/v1/chat/completions"},
                **caps,
            }

        gw.put(
            "routes/timed",
            {
                "uri": "/timed/*",
                "plugins": {**log, "ai-proxy": ai_proxy(max_stream_duration_ms=700)},
            },
        )
        gw.put(
            "routes/sized",
            {"uri": "/sized/*", "plugins": {**log, "ai-proxy": ai_proxy(max_response_bytes=250)}},
        )
        gw.put(
            "routes/roomy",
            {
                "uri": "/roomy/*",
                "plugins": {**log, "ai-proxy": ai_proxy(max_response_bytes=100_000)},
            },
        )
        instance = ai_proxy()
        gw.put(
            "routes/multi",
            {
                "uri": "/multi/*",
                "plugins": {
                    **log,
                    "ai-proxy-multi": {
                        "timeout": 10_000,
                        "instances": [{**instance, "name": "quick", "weight": 1, "timeout": 300}],
                    },
                },
            },
        )
        yield gw


def entries(live: LiveGateway, route: str, count: int) -> list[dict[str, Any]]:
    path = live.workdir / "access.log"

    def found() -> list[dict[str, Any]] | None:
        lines = path.read_text().splitlines() if path.exists() else []
        mine = [e for e in map(json.loads, lines) if e["route_id"] == route]
        return mine if len(mine) >= count else None

    return wait_for(found, f"{count} log lines of {route}")  # type: ignore[no-any-return]


def read_stream(client: RawClient) -> tuple[bytes, bool]:
    """The body of a chunked stream read chunk by chunk, and whether it ended properly (the
    last chunk) rather than being cut."""
    body = b""
    while True:
        try:
            chunk = client.read_chunk()
        except ConnectionClosed:
            return body, False
        if chunk is None:
            return body, True
        body += chunk


def stream_request(path: str, **headers: str) -> bytes:
    body = json.dumps({**CHAT, "stream": True}).encode()
    return request_bytes("POST", path, {"Content-Type": "application/json", **headers}, body=body)


def test_a_stream_past_max_stream_duration_ms_is_cut(live: LiveGateway) -> None:
    # ~20 events 150 ms apart: the whole stream would take ~3 s.
    with RawClient(live.proxy_port) as client:
        began = time.monotonic()
        client.send(
            stream_request("/timed/v1/chat/completions", **{"X-Fake-Stream-Delay-Ms": "150"})
        )
        status, _, _, _ = client.read_head()
        assert status == 200
        body, ended = read_stream(client)
        elapsed = time.monotonic() - began
    assert not ended  # cut: no last chunk, the connection closed
    assert b"data: " in body and b"[DONE]" not in body  # what came before the cap was relayed
    assert 0.6 < elapsed < 2.5
    (entry,) = entries(live, "timed", 1)
    assert entry["llm"]["aborted"] == "max_stream_duration_ms"


def test_a_stalled_stream_is_cut_at_the_deadline_too(live: LiveGateway) -> None:
    """APISIX checks the deadline when a chunk arrives; llmgate's also bounds a stall."""
    with RawClient(live.proxy_port, timeout=20) as client:
        began = time.monotonic()
        client.send(
            stream_request("/timed/v1/chat/completions", **{"X-Fake-Stream-Delay-Ms": "8000"})
        )
        assert client.read_head()[0] == 200
        _, ended = read_stream(client)
        elapsed = time.monotonic() - began
    assert not ended
    assert elapsed < 5  # the next event would have come after 8 s


def test_a_stream_within_the_deadline_is_whole(live: LiveGateway) -> None:
    with RawClient(live.proxy_port) as client:
        client.send(stream_request("/timed/v1/chat/completions"))
        assert client.read_head()[0] == 200
        body, ended = read_stream(client)
    assert ended and body.rstrip().endswith(b"data: [DONE]")


def test_max_response_bytes_cuts_a_stream(live: LiveGateway) -> None:
    with RawClient(live.proxy_port) as client:
        client.send(stream_request("/sized/v1/chat/completions"))
        assert client.read_head()[0] == 200
        body, ended = read_stream(client)
    assert not ended
    assert 0 < len(body) <= 250  # never more than the cap reaches the client
    aborted = [e["llm"].get("aborted") for e in entries(live, "sized", 1)]
    assert "max_response_bytes" in aborted


def test_max_response_bytes_refuses_a_larger_answer_with_502(live: LiveGateway) -> None:
    body = json.dumps(CHAT).encode()
    with RawClient(live.proxy_port) as client:
        client.send(
            request_bytes(
                "POST",
                "/sized/v1/chat/completions",
                {"Content-Type": "application/json"},
                body=body,
            )
        )
        answer = client.read_response("POST")
    assert answer.status == 502
    assert answer.json()["error"]["message"] == "max_response_bytes exceeded"
    with RawClient(live.proxy_port) as client:
        client.send(
            request_bytes(
                "POST",
                "/roomy/v1/chat/completions",
                {"Content-Type": "application/json"},
                body=body,
            )
        )
        answer = client.read_response("POST")
    assert answer.status == 200
    assert answer.json()["usage"]["total_tokens"] > 0


def test_instance_timeout_is_its_own(live: LiveGateway) -> None:
    """The instance's 300 ms, not the plugin's 10 s, bounds a slow provider."""
    body = json.dumps(CHAT).encode()
    with RawClient(live.proxy_port, timeout=20) as client:
        began = time.monotonic()
        client.send(
            request_bytes(
                "POST",
                "/multi/v1/chat/completions",
                {"Content-Type": "application/json", "X-Fake-Latency-Ms": "3000"},
                body=body,
            )
        )
        answer = client.read_response("POST")
        elapsed = time.monotonic() - began
    assert answer.status == 504
    assert elapsed < 2.5
