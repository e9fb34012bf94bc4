"""openai-compatible at run time: a plain route to an OpenAI-style upstream as an LLM route."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from aiohttp import web

from tests.plugins.sse_providers import FIRST_EVENT, gzip_stream

CHAT = {"model": "gpt-3.5-turbo", "messages": [{"role": "user", "content": "Who is Pikachu?"}]}


async def plain_route(gateway, conf: dict[str, Any], **plugins: Any) -> None:  # type: ignore[no-untyped-def]
    await gateway.put(
        "routes/1",
        {
            "uri": "/v1/*",
            "plugins": {"openai-compatible": conf, **plugins},
            "upstream": gateway.upstream(),
        },
    )


def events(text: str) -> list[Any]:
    return [orjson.loads(line[6:]) for line in text.splitlines() if line.startswith("data: {")]


async def test_models_and_owned_by_answer_from_configuration(gateway) -> None:  # type: ignore[no-untyped-def]
    await plain_route(gateway, {"models": ["gpt-3.5-turbo", "gpt-4o"], "owned_by": "acme"})
    resp = await gateway.proxy.get("/v1/models")
    assert resp.status == 200
    assert await resp.json() == {
        "object": "list",
        "data": [
            {"id": "gpt-3.5-turbo", "object": "model", "created": 0, "owned_by": "acme"},
            {"id": "gpt-4o", "object": "model", "created": 0, "owned_by": "acme"},
        ],
    }
    resp = await gateway.proxy.get("/v1/models/nope")
    assert resp.status == 404
    assert (await resp.json())["error"]["code"] == "model_not_found"
    assert await gateway.fake_requests() == []  # answered by the gateway
    assert resp.headers["X-Request-Id"]


async def test_without_models_the_upstream_answers(gateway) -> None:  # type: ignore[no-untyped-def]
    await plain_route(gateway, {})
    resp = await gateway.proxy.get("/v1/models")
    assert resp.status == 200
    assert [m["id"] for m in (await resp.json())["data"]] == ["gpt-3.5-turbo"]  # the fake's
    assert [r["path"] for r in await gateway.fake_requests()] == ["/v1/models"]


@pytest.mark.parametrize(
    ("conf", "plugins", "asked"),
    [
        pytest.param({"include_usage": True}, {}, True, id="on"),
        pytest.param({"include_usage": False}, {"ai-rate-limiting": "x"}, False, id="off"),
        pytest.param({}, {}, False, id="default-without-readers"),
        pytest.param({}, {"file-logger": "x"}, True, id="default-with-file-logger"),
        pytest.param({}, {"http-logger": "x"}, True, id="default-with-http-logger"),
        pytest.param({}, {"ai-rate-limiting": "x"}, True, id="default-with-ai-rate-limiting"),
    ],
)
async def test_include_usage(gateway, tmp_path, conf, plugins, asked) -> None:  # type: ignore[no-untyped-def]
    readers = {
        "file-logger": {"path": str(tmp_path / "log")},
        "http-logger": {"uri": "http://127.0.0.1:9/log"},
        "ai-rate-limiting": {"limit": 1000, "time_window": 60},
    }
    await plain_route(gateway, conf, **{name: readers[name] for name in plugins})
    resp = await gateway.proxy.post(
        "/v1/chat/completions", json={**CHAT, "stream": True}, headers={"Accept-Encoding": "gzip"}
    )
    assert resp.status == 200
    received = events(await resp.text())
    (seen,) = await gateway.fake_requests()
    assert ("stream_options" in seen["body"]) is asked
    # Asked for usage, the stream must come readable.
    assert ("accept-encoding" in seen["headers"]) is not asked
    # The client did not ask: it never sees a usage chunk, either way.
    assert received and all(e.get("usage") is None for e in received)


async def test_a_client_that_asks_keeps_its_usage_chunk(gateway) -> None:  # type: ignore[no-untyped-def]
    await plain_route(gateway, {"include_usage": True})
    body = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    resp = await gateway.proxy.post("/v1/chat/completions", json=body)
    assert [e["usage"]["total_tokens"] for e in events(await resp.text()) if e.get("usage")]


async def test_non_streams_embeddings_and_bad_bodies_pass_as_they_are(gateway) -> None:  # type: ignore[no-untyped-def]
    await plain_route(gateway, {"include_usage": True})
    resp = await gateway.proxy.post("/v1/chat/completions", json=CHAT)
    assert (await resp.json())["usage"]["total_tokens"] > 0
    resp = await gateway.proxy.post("/v1/embeddings", json={"input": "a", "stream": True})
    assert resp.status == 200
    resp = await gateway.proxy.post(
        "/v1/chat/completions", data=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert resp.status == 400  # the fake's answer, relayed
    bodies = [r["body"] for r in await gateway.fake_requests()]
    assert all("stream_options" not in b for b in bodies if isinstance(b, dict))


async def test_gateway_errors_are_openai_shaped(gateway) -> None:  # type: ignore[no-untyped-def]
    await plain_route(gateway, {}, **{"key-auth": {}})
    resp = await gateway.proxy.post("/v1/chat/completions", json=CHAT)
    assert resp.status == 401
    assert await resp.json() == {
        "error": {
            "message": "Missing API key in request",
            "type": "authentication_error",
            "param": None,
            "code": "invalid_api_key",
        }
    }
    assert resp.headers["X-Request-Id"]


async def test_an_encoded_stream_is_relayed_as_it_comes(gateway, aiohttp_server) -> None:  # type: ignore[no-untyped-def]
    """An upstream that gzips its stream (the client's Accept-Encoding reaches it on a plain
    route): its bytes cannot be read as events, so they are never held back for one's end."""
    release = asyncio.Event()
    app = web.Application()
    app.router.add_post("/v1/chat/completions", gzip_stream(release))
    server = await aiohttp_server(app)
    await gateway.put(
        "routes/1",
        {
            "uri": "/v1/*",
            "plugins": {"openai-compatible": {"include_usage": True}},
            "upstream": {"nodes": {f"127.0.0.1:{server.port}": 1}},
        },
    )
    resp = await gateway.proxy.post("/v1/chat/completions", json={**CHAT, "stream": True})
    assert resp.status == 200
    assert await asyncio.wait_for(resp.content.readuntil(b"\n\n"), 5) == FIRST_EVENT
    release.set()
    assert await resp.content.read() == b"data: [DONE]\n\n"


@pytest.mark.parametrize("strategy", ["memory", "disk"])
async def test_a_cached_stream_is_replayed_as_the_client_asked(gateway, strategy: str) -> None:  # type: ignore[no-untyped-def]
    """On disk the HIT comes after openai-compatible's access (which asked for the usage):
    the replay still hides it from a client that did not ask."""
    cache = {"cache_strategy": strategy, "cache_method": ["POST"], "cache_key": ["$uri"]}
    await plain_route(gateway, {"include_usage": True}, **{"proxy-cache": cache})
    for options in (None, {"include_usage": True}):
        body: dict[str, Any] = {**CHAT, "stream": True}
        if options is not None:
            body["stream_options"] = options
        replies = []
        for status in ("MISS", "HIT"):
            resp = await gateway.proxy.post("/v1/chat/completions", json=body)
            assert resp.headers["Apisix-Cache-Status"] == status
            replies.append(await resp.text())
        assert replies[0] == replies[1]
        usage = [e for e in events(replies[1]) if "usage" in e]
        if options is None:
            assert usage == []
        else:
            assert usage and usage[-1]["choices"] == [] and usage[-1]["usage"]["total_tokens"]


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_ai_rate_limiting_is_enforced(gateway, stream: bool) -> None:  # type: ignore[no-untyped-def]
    """openai-compatible makes the route an LLM route: a token budget on it is charged each
    answer's usage and refuses the call after it is spent, before the upstream is asked."""
    budget = {"limit": 20, "time_window": 60, "rejected_code": 429}
    await plain_route(gateway, {}, **{"ai-rate-limiting": budget})
    body = {**CHAT, "stream": stream}
    first = await gateway.proxy.post("/v1/chat/completions", json=body)
    assert first.status == 200
    assert first.headers["X-AI-RateLimit-Limit-openai-compatible"] == "20"
    assert first.headers["X-AI-RateLimit-Remaining-openai-compatible"] == "20"
    await first.read()
    (seen,) = await gateway.fake_requests()
    used = 0
    for _ in range(10):  # the fake's answers are ~18 tokens: the budget is spent in 2
        resp = await gateway.proxy.post("/v1/chat/completions", json=body)
        if resp.status != 200:
            break
        remaining = int(resp.headers["X-AI-RateLimit-Remaining-openai-compatible"])
        assert remaining < 20
        used += 1
        await resp.read()
    assert resp.status == 429, await resp.text()
    assert (await resp.json())["error"]["code"] == "rate_limit_exceeded"
    assert int(resp.headers["Retry-After"]) >= 1
    assert used <= 1
    assert len(await gateway.fake_requests()) == used + 1  # the refusal never reached it
    assert seen["path"] == "/v1/chat/completions"
