"""ai-proxy at run time: seed 000's /chat service as configuration, against the fake upstream.

A test-only plugin (``llm-probe``) records each request's ``LlmCall`` in its log phase, so the
token accounting is checked end to end.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
import pytest
from aiohttp import web

from llmgate.ai.call import LlmCall
from llmgate.plugin_api.config import PluginConfig
from llmgate.plugin_api.plugin import Plugin
from llmgate.plugins import REGISTRY
from tests.plugins.sse_providers import FIRST_EVENT, gzip_stream

CHAT = {"messages": [{"role": "user", "content": "Who is Pikachu?"}]}


class LlmProbe(Plugin):
    name = "llm-probe"
    priority = 0
    Config = PluginConfig

    async def log(self, ctx) -> None:  # type: ignore[no-untyped-def]
        self.services.shared.get_or_make("llm-probe", list, list).append(LlmCall.find(ctx))


@pytest.fixture(autouse=True)
def calls(gateway, monkeypatch) -> list[LlmCall | None]:  # type: ignore[no-untyped-def]
    """The ``LlmCall`` of each request to a route of ``ai_route``, oldest first."""
    monkeypatch.setitem(REGISTRY, "llm-probe", LlmProbe)
    return gateway.services.shared.get_or_make("llm-probe", list, list)


async def ai_route(gateway, uri: str = "/chat", **conf: Any) -> None:  # type: ignore[no-untyped-def]
    plugin = {
        "provider": "openai-compatible",
        "auth": {"header": {"Authorization": "Bearer sk-test"}},
        "override": {"endpoint": f"http://{gateway.fake_address}/v1/chat/completions"},
        **conf,
    }
    await gateway.put("routes/1", {"uri": uri, "plugins": {"ai-proxy": plugin, "llm-probe": {}}})


async def test_seed_000_chat_service_as_configuration(gateway, calls, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    await ai_route(
        gateway,
        provider="openai",
        auth={"header": {"Authorization": "Bearer $env://OPENAI_API_KEY"}},
        options={"model": "gpt-3.5-turbo", "temperature": 0, "max_tokens": 100},
    )
    resp = await gateway.proxy.post(
        "/chat?api_key=client-secret",
        json=CHAT,
        headers={"Authorization": "Bearer client-token", "apikey": "k", "Cookie": "s=1"},
    )
    assert resp.status == 200
    answer = await resp.json()
    assert answer["choices"][0]["message"]["role"] == "assistant"

    (seen,) = await gateway.fake_requests()
    assert seen["path"] == "/v1/chat/completions"
    assert seen["query"] == ""
    assert seen["body"] == {**CHAT, "model": "gpt-3.5-turbo", "temperature": 0, "max_tokens": 100}
    headers = seen["headers"]
    assert headers["authorization"] == "Bearer sk-from-env"
    assert headers["content-type"] == "application/json"
    for leaked in ("apikey", "cookie", "x-forwarded-for", "x-real-ip", "accept-encoding"):
        assert leaked not in headers

    (call,) = calls
    assert call is not None
    assert (call.provider, call.instance, call.protocol, call.stream) == (
        "openai",
        "ai-proxy-openai",
        "chat",
        False,
    )
    assert call.model == "gpt-3.5-turbo"
    usage = answer["usage"]
    assert call.usage is not None
    assert (call.usage.prompt_tokens, call.usage.completion_tokens, call.usage.total_tokens) == (
        usage["prompt_tokens"],
        usage["completion_tokens"],
        usage["total_tokens"],
    )
    assert call.started is not None and call.first_token is not None
    assert call.finished is not None
    assert call.started <= call.first_token <= call.finished


async def test_seed_000_with_its_prompt_as_a_template(gateway, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The whole /chat service: the client sends only ``{"prompt": ...}`` (as ``curl -d``)."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    system = "Eres un experto en Pokémons"
    template = {
        "name": "pokemon",
        "template": {
            "model": "gpt-3.5-turbo",
            "messages": [
                {"role": "system", "content": system},
                {"role": "user", "content": "{{prompt}}"},
            ],
        },
    }
    ai_proxy = {
        "provider": "openai",
        "auth": {"header": {"Authorization": "Bearer $env://OPENAI_API_KEY"}},
        "options": {"model": "gpt-3.5-turbo", "temperature": 0, "max_tokens": 100},
        "override": {"endpoint": f"http://{gateway.fake_address}/v1/chat/completions"},
    }
    plugins = {"ai-prompt-template": {"templates": [template]}, "ai-proxy": ai_proxy}
    await gateway.put("routes/1", {"uri": "/chat", "methods": ["POST"], "plugins": plugins})
    resp = await gateway.proxy.post(
        "/chat",
        data='{"prompt": "¿Quién es Pikachu?"}'.encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["choices"][0]["message"]["content"]
    (seen,) = await gateway.fake_requests()
    assert seen["headers"]["authorization"] == "Bearer sk-from-env"
    assert seen["body"]["messages"] == [
        {"role": "system", "content": system},
        {"role": "user", "content": "¿Quién es Pikachu?"},
    ]
    assert (seen["body"]["temperature"], seen["body"]["max_tokens"]) == (0, 100)


async def test_stream_is_relayed_event_by_event_with_usage(gateway, calls) -> None:  # type: ignore[no-untyped-def]
    await ai_route(gateway)
    delay_ms = 20
    started = time.perf_counter()
    resp = await gateway.proxy.post(
        "/chat",
        json={**CHAT, "stream": True, "stream_options": {"keep": 1}},
        headers={"X-Fake-Stream-Delay-Ms": str(delay_ms)},
    )
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/event-stream")
    first = await resp.content.readuntil(b"\n\n")
    first_at = time.perf_counter() - started
    rest = await resp.content.read()
    total = time.perf_counter() - started
    events = [e for e in (first + rest).split(b"\n\n") if e]
    assert len(events) > 5
    # The first event reached the client long before the stream ended: nothing was buffered.
    assert first_at < total - 3 * delay_ms / 1000

    (seen,) = await gateway.fake_requests()
    assert seen["body"]["stream_options"] == {"keep": 1, "include_usage": True}
    assert events[-1] == b"data: [DONE]"
    # The client did not ask for usage: it gets none, as from OpenAI; the gateway keeps it.
    chunks = [orjson.loads(e.removeprefix(b"data: ")) for e in events[:-1]]
    assert all(chunk["choices"] and "usage" not in chunk for chunk in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    (call,) = calls
    assert call is not None and call.stream and call.usage is not None
    assert call.usage.total_tokens > 0
    assert call.first_token is not None and call.finished is not None
    assert call.first_token < call.finished


@pytest.mark.parametrize(
    ("stream_options", "asked"),
    [
        (None, False),
        ({"include_usage": False}, False),
        ({"include_usage": True}, True),
    ],
)
async def test_the_usage_chunk_reaches_only_a_client_that_asked(  # type: ignore[no-untyped-def]
    gateway, calls, stream_options, asked
) -> None:
    await ai_route(gateway)
    extra: dict[str, Any] = {"stream": True}
    if stream_options is not None:
        extra["stream_options"] = stream_options
    for body in (CHAT, {"prompt": "Say hi"}):  # chat, legacy completions
        await gateway.clear_fake()
        resp = await gateway.proxy.post("/chat", json={**body, **extra})
        assert resp.status == 200
        events = [e for e in (await resp.read()).split(b"\n\n") if e]
        assert events[-1] == b"data: [DONE]"
        chunks = [orjson.loads(e.removeprefix(b"data: ")) for e in events[:-1]]
        (seen,) = await gateway.fake_requests()
        assert seen["body"]["stream_options"]["include_usage"] is True
        usage_chunks = [c for c in chunks if not c["choices"]]
        if asked:
            # As OpenAI: every chunk has "usage": null, the last one the usage and no choices.
            assert usage_chunks == chunks[-1:]
            assert all("usage" in c and c["usage"] is None for c in chunks[:-1])
        else:
            assert usage_chunks == []
            assert all("usage" not in c for c in chunks)
    assert len(calls) == 2
    for call in calls:
        assert call is not None and call.usage is not None and call.usage.total_tokens > 0


@pytest.mark.parametrize(
    ("endpoint_path", "body", "fake_path", "protocol"),
    [
        ("", {"model": "m", "prompt": "Say hi"}, "/v1/completions", "completions"),
        ("", {"model": "m", "input": ["a", "b"]}, "/v1/embeddings", "embeddings"),
        # A configured chat endpoint serves the other protocols at their sibling paths.
        ("/v1/chat/completions", {"input": "x"}, "/v1/embeddings", "embeddings"),
        ("/v1/chat/completions", {"prompt": "x"}, "/v1/completions", "completions"),
    ],
)
async def test_completions_and_embeddings(  # type: ignore[no-untyped-def]
    gateway, calls, endpoint_path, body, fake_path, protocol
) -> None:
    await ai_route(
        gateway, uri="/v1/*", override={"endpoint": f"http://{gateway.fake_address}{endpoint_path}"}
    )
    resp = await gateway.proxy.post("/v1/anything", json=body)
    assert resp.status == 200, await resp.text()
    answer = await resp.json()
    (seen,) = await gateway.fake_requests()
    assert seen["path"] == fake_path
    (call,) = calls
    assert call is not None and call.protocol == protocol
    assert call.usage is not None
    assert call.usage.prompt_tokens == answer["usage"]["prompt_tokens"] > 0


async def test_upstream_429_is_relayed_as_sent(gateway) -> None:  # type: ignore[no-untyped-def]
    await ai_route(gateway)
    resp = await gateway.proxy.post("/chat", json=CHAT, headers={"X-Fake-Status": "429"})
    assert resp.status == 429
    error = (await resp.json())["error"]
    assert error["type"] == "rate_limit_error"
    assert error["code"] == "rate_limit_exceeded"


@pytest.mark.parametrize(
    ("data", "content_type", "status", "message"),
    [
        (b"", "application/json", 400, "could not get body: request body is empty"),
        (b'{"messages": [', "application/json", 400, "could not parse JSON request body: "),
        (b"[1, 2]", "application/json", 400, "could not parse JSON request body: "),
        (
            b"prompt=what+is+1%2B1",
            "application/x-www-form-urlencoded",
            400,
            "unsupported content-type: application/x-www-form-urlencoded, "
            "only application/json is supported",
        ),
        (b'{"model": "m"}', "application/json", 400, "no matching AI protocol for the request"),
        (b'{"input": "' + b"x" * 200 + b'"}', "application/json", 413, "request size 213 is "),
    ],
)
async def test_bad_bodies_get_4xx_json(gateway, data, content_type, status, message) -> None:  # type: ignore[no-untyped-def]
    await ai_route(gateway, max_req_body_size=100)
    resp = await gateway.proxy.post("/chat", data=data, headers={"Content-Type": content_type})
    assert resp.status == status
    # An LLM route answers the gateway's errors in OpenAI's shape, APISIX's message kept.
    error = (await resp.json())["error"]
    assert error["message"].startswith(message)
    assert error["type"] == "invalid_request_error"
    assert error["code"] == ("request_too_large" if status == 413 else "invalid_request")
    assert await gateway.fake_requests() == []


async def test_curl_d_json_body_is_accepted(gateway) -> None:  # type: ignore[no-untyped-def]
    """``curl -d '{...}'`` sends JSON as application/x-www-form-urlencoded."""
    await ai_route(gateway)
    resp = await gateway.proxy.post(
        "/chat",
        data=orjson.dumps(CHAT),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert resp.status == 200
    (seen,) = await gateway.fake_requests()
    assert seen["headers"]["content-type"] == "application/json"


async def test_unreachable_provider_is_502(gateway, unused_tcp_port) -> None:  # type: ignore[no-untyped-def]
    await ai_route(gateway, override={"endpoint": f"http://127.0.0.1:{unused_tcp_port}/v1"})
    resp = await gateway.proxy.post("/chat", json=CHAT)
    assert resp.status == 502
    assert (await resp.json())["error"]["type"] == "api_error"


async def test_slow_provider_is_504_after_timeout(gateway) -> None:  # type: ignore[no-untyped-def]
    await ai_route(gateway, timeout=100)
    resp = await gateway.proxy.post("/chat", json=CHAT, headers={"X-Fake-Latency-Ms": "1000"})
    assert resp.status == 504
    assert (await resp.json())["error"]["code"] == "gateway_timeout"


async def test_azure_endpoint_query_and_api_key(gateway) -> None:  # type: ignore[no-untyped-def]
    endpoint = f"http://{gateway.fake_address}/openai/deployments/gpt4/chat/completions"
    await ai_route(
        gateway,
        provider="azure-openai",
        auth={"header": {"api-key": "azure-key"}, "query": {"extra": "a b"}},
        override={"endpoint": endpoint + "?api-version=2024-02-01"},
    )
    resp = await gateway.proxy.post(
        "/chat?client=1", json={**CHAT, "model": "gpt-4"}, headers={"api-key": "client-key"}
    )
    assert resp.status == 200
    (seen,) = await gateway.fake_requests()
    assert seen["path"] == "/openai/deployments/gpt4/chat/completions"
    assert seen["query"] == "api-version=2024-02-01&extra=a b"  # as the fake decodes it
    assert seen["headers"]["api-key"] == "azure-key"
    assert "model" not in seen["body"]  # the deployment names the model


async def test_provider_without_the_protocol_is_400(gateway) -> None:  # type: ignore[no-untyped-def]
    await ai_route(gateway, provider="deepseek")
    resp = await gateway.proxy.post("/chat", json={"input": "x"})
    assert resp.status == 400
    assert (await resp.json())["error"]["message"] == (
        "provider deepseek does not support openai-embeddings protocol (supported: openai-chat)"
    )


async def test_client_knob_headers_still_reach_the_provider(gateway) -> None:  # type: ignore[no-untyped-def]
    """Only credentials (and the choice of the account they bill) are dropped: other client
    headers (OpenAI-Beta, ...) pass."""
    await ai_route(gateway)
    headers = {"OpenAI-Beta": "assistants=v2", "OpenAI-Organization": "org"}
    resp = await gateway.proxy.post("/chat", json=CHAT, headers=headers)
    assert resp.status == 200
    (seen,) = await gateway.fake_requests()
    assert seen["headers"]["openai-beta"] == "assistants=v2"
    assert "openai-organization" not in seen["headers"]


async def test_keepalive_false_closes_each_connection(gateway) -> None:  # type: ignore[no-untyped-def]
    await ai_route(gateway, keepalive=False)
    for _ in range(2):
        assert (await gateway.proxy.post("/chat", json=CHAT)).status == 200
    assert [r["headers"]["connection"] for r in await gateway.fake_requests()] == ["close"] * 2


async def test_a_target_whose_options_ask_for_usage_relays_it(gateway) -> None:  # type: ignore[no-untyped-def]
    """The operator's ``options`` speak for the client: the body sent asks, so the stream
    is relayed as the provider answers that body."""
    await ai_route(gateway, options={"stream_options": {"include_usage": True}})
    resp = await gateway.proxy.post("/chat", json={**CHAT, "stream": True})
    events = [e for e in (await resp.read()).split(b"\n\n") if e and e != b"data: [DONE]"]
    last = orjson.loads(events[-1].removeprefix(b"data: "))
    assert last["choices"] == [] and last["usage"]["total_tokens"] > 0


@pytest.mark.parametrize("strategy", ["memory", "disk"])
async def test_a_cached_stream_is_replayed_as_the_client_asked(gateway, calls, strategy) -> None:  # type: ignore[no-untyped-def]
    """proxy-cache stores the stream as the provider sent it (usage included, for the hit's
    accounting); a replay to a client that did not ask hides the usage as the live call did.
    On disk the HIT is answered after ai-proxy's access phase (which already shaped the call):
    the same."""
    plugin = {
        "provider": "openai-compatible",
        "auth": {"header": {"Authorization": "Bearer sk-test"}},
        "override": {"endpoint": f"http://{gateway.fake_address}/v1/chat/completions"},
    }
    cache = {"cache_strategy": strategy, "cache_method": ["POST"], "cache_key": ["$uri"]}
    await gateway.put(
        "routes/1",
        {"uri": "/chat", "plugins": {"proxy-cache": cache, "ai-proxy": plugin, "llm-probe": {}}},
    )
    for stream_options in (None, {"include_usage": True}):
        body: dict[str, Any] = {**CHAT, "stream": True}
        if stream_options is not None:
            body["stream_options"] = stream_options
        replies = []
        for expected in ("MISS", "HIT"):
            resp = await gateway.proxy.post("/chat", json=body)
            assert resp.headers["Apisix-Cache-Status"] == expected
            replies.append(await resp.read())
        assert replies[0] == replies[1]
        events = [e for e in replies[0].split(b"\n\n") if e and e != b"data: [DONE]"]
        chunks = [orjson.loads(e.removeprefix(b"data: ")) for e in events]
        assert [c for c in chunks if not c["choices"]] == (
            [] if stream_options is None else chunks[-1:]
        )
    assert [call.cache for call in calls if call is not None] == [None, "hit"] * 2
    assert all(call is not None and call.usage is not None for call in calls)


async def test_an_encoded_stream_is_relayed_as_it_comes(gateway, aiohttp_server) -> None:  # type: ignore[no-untyped-def]
    """A provider that compresses its stream anyway: its bytes cannot be read as events, so
    they go on as they come, never held back waiting for an event's end."""
    release = asyncio.Event()
    app = web.Application()
    app.router.add_post("/v1/chat/completions", gzip_stream(release))
    server = await aiohttp_server(app)
    await ai_route(
        gateway, override={"endpoint": f"http://127.0.0.1:{server.port}/v1/chat/completions"}
    )
    resp = await gateway.proxy.post("/chat", json={**CHAT, "stream": True})
    assert resp.status == 200
    first = await asyncio.wait_for(resp.content.readuntil(b"\n\n"), 5)
    assert first == FIRST_EVENT
    release.set()
    assert await resp.content.read() == b"data: [DONE]\n\n"


async def test_events_split_across_reads_are_filtered_whole(gateway, calls, aiohttp_server) -> None:  # type: ignore[no-untyped-def]
    """A provider whose events arrive in pieces (the usage chunk cut inside its JSON and
    between its two newlines): the client gets every text event whole, and neither the usage
    chunk nor a byte of it; the call still has its usage."""
    text = (
        b'data: {"id":"c","choices":[{"index":0,"delta":{"content":"Hi"}}],"usage":null,'
        b'"obfuscation":"ab"}\n\n'
    )
    usage = b'data: {"id":"c","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}\n\n'
    stream = text * 2 + usage + b"data: [DONE]\n\n"
    cuts = [10, len(text) + 3, 2 * len(text) + 30, 2 * len(text) + len(usage) - 1]

    async def pieces(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
            await response.write(stream[start:end])
            await asyncio.sleep(0.02)
        return response

    app = web.Application()
    app.router.add_post("/v1/chat/completions", pieces)
    server = await aiohttp_server(app)
    await ai_route(
        gateway, override={"endpoint": f"http://127.0.0.1:{server.port}/v1/chat/completions"}
    )
    resp = await gateway.proxy.post("/chat", json={**CHAT, "stream": True})
    bare = text.replace(b',"usage":null', b"")
    assert await resp.read() == bare * 2 + b"data: [DONE]\n\n"
    (call,) = calls
    assert call is not None and call.usage is not None and call.usage.total_tokens == 5


@pytest.mark.parametrize("method", ["GET", "DELETE", "PUT", "PATCH"])
@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions", "/v1/embeddings"])
async def test_a_method_the_endpoint_does_not_take_is_openais_405(gateway, method, path) -> None:  # type: ignore[no-untyped-def]
    """OpenAI answers 405 ``Invalid method for URL (GET /v1/chat/completions)``; before, the
    gateway read the missing body and said 400 "could not get body"."""
    await ai_route(gateway, uri="/v1/*")
    resp = await gateway.proxy.request(method, path)
    assert resp.status == 405
    assert resp.headers["Allow"] == "POST"
    assert resp.headers["X-Request-Id"]
    assert await resp.json() == {
        "error": {
            "message": f"Invalid method for URL ({method} {path})",
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        }
    }
    assert await gateway.fake_requests() == []


async def test_head_and_options_without_cors_are_405_and_cors_still_answers_preflights(
    gateway,
) -> None:  # type: ignore[no-untyped-def]
    await ai_route(gateway, uri="/v1/*")
    resp = await gateway.proxy.head("/v1/chat/completions")
    assert (resp.status, resp.headers["Allow"]) == (405, "POST")
    resp = await gateway.proxy.options("/v1/chat/completions")
    assert resp.status == 405
    # HEAD of the model list is still its GET.
    assert (await gateway.proxy.head("/v1/models")).status == 200
    plugin = {
        "provider": "openai-compatible",
        "auth": {"header": {"Authorization": "Bearer sk-test"}},
        "override": {"endpoint": f"http://{gateway.fake_address}/v1/chat/completions"},
    }
    route = {"uri": "/v1/*", "plugins": {"ai-proxy": plugin, "cors": {}}}
    await gateway.put("routes/1", route)
    preflight = await gateway.proxy.options(
        "/v1/chat/completions",
        headers={"Origin": "https://app.example", "Access-Control-Request-Method": "POST"},
    )
    assert preflight.status == 200
    assert preflight.headers["Access-Control-Allow-Origin"] == "*"
    assert await gateway.fake_requests() == []


async def test_without_options_model_the_list_is_empty_and_no_provider_is_asked(gateway) -> None:  # type: ignore[no-untyped-def]
    """The client chooses the model: the configuration names none, so the list is empty (a
    deliberate choice, docs/compatibility.md); the provider's catalogue is not asked for."""
    await ai_route(gateway, uri="/v1/*")
    resp = await gateway.proxy.get("/v1/models")
    assert (resp.status, await resp.json()) == (200, {"object": "list", "data": []})
    resp = await gateway.proxy.get("/v1/models/gpt-4o")
    assert resp.status == 404
    assert (await resp.json())["error"]["code"] == "model_not_found"
    assert await gateway.fake_requests() == []


async def test_an_old_azure_api_version_is_not_sent_stream_options(gateway, calls) -> None:  # type: ignore[no-untyped-def]
    """Before 2024-09-01-preview Azure refuses ``stream_options``: the stream is not asked for
    its usage (nothing hidden either), and is charged as a stream that ended without it."""
    endpoint = f"http://{gateway.fake_address}/openai/deployments/gpt4/chat/completions"
    await ai_route(
        gateway,
        provider="azure-openai",
        auth={"header": {"api-key": "azure-key"}},
        override={"endpoint": endpoint + "?api-version=2024-06-01"},
    )
    resp = await gateway.proxy.post("/chat", json={**CHAT, "stream": True})
    assert resp.status == 200, await resp.text()
    events = [e for e in (await resp.read()).split(b"\n\n") if e]
    assert events[-1] == b"data: [DONE]"
    (seen,) = await gateway.fake_requests()
    assert "stream_options" not in seen["body"]
    (call,) = calls
    assert call is not None and call.stream and call.estimated
    assert call.relayed_chars > 0  # what ai-rate-limiting charges (``relayed_estimate``)
    assert call.usage is not None and call.usage.completion_tokens == -(-call.relayed_chars // 4)


async def test_prompt_plugins_leave_a_get_to_the_llm_plugin(gateway) -> None:  # type: ignore[no-untyped-def]
    """ai-prompt-template, -decorator and -guard run first and read the body: on an LLM route
    a GET is not theirs to refuse (400 "could not get body"), the route answers it (405, or
    the model list); a POST still goes through them."""
    template = {"name": "t", "template": {"messages": [{"role": "user", "content": "{{q}}"}]}}
    prompts = {
        "ai-prompt-template": {"templates": [template]},
        "ai-prompt-decorator": {"prepend": [{"role": "system", "content": "Be brief."}]},
        "ai-prompt-guard": {"deny_patterns": ["password"]},
    }
    plugin = {
        "provider": "openai-compatible",
        "auth": {"header": {"Authorization": "Bearer sk-test"}},
        "options": {"model": "gpt-4o-mini"},
        "override": {"endpoint": f"http://{gateway.fake_address}/v1/chat/completions"},
    }
    await gateway.put("routes/1", {"uri": "/v1/*", "plugins": {**prompts, "ai-proxy": plugin}})
    resp = await gateway.proxy.get("/v1/chat/completions")
    assert resp.status == 405
    assert (await resp.json())["error"]["message"].startswith("Invalid method for URL")
    resp = await gateway.proxy.get("/v1/models")
    assert resp.status == 200
    assert [m["id"] for m in (await resp.json())["data"]] == ["gpt-4o-mini"]
    assert await gateway.fake_requests() == []
    resp = await gateway.proxy.post(
        "/v1/chat/completions", json={"template_name": "t", "q": "my password"}
    )
    assert resp.status == 400  # the guard saw the templated prompt
    resp = await gateway.proxy.post("/v1/chat/completions", json={"template_name": "t", "q": "hi"})
    assert resp.status == 200
    (seen,) = await gateway.fake_requests()
    assert seen["body"]["messages"][0] == {"role": "system", "content": "Be brief."}
