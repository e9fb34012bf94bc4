"""The fake upstream over HTTP: OpenAI endpoints, streaming, knobs, echo and inspection."""

import asyncio
import base64
import contextlib
import socket
import struct
import time
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from llmgate.fake_upstream import FakeSettings, build_app, replies, serve

CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"
EMBEDDINGS = "/v1/embeddings"
ERROR_KEYS = {"message", "type", "param", "code"}

Client = TestClient[web.Request, web.Application]


def chat_body(prompt: str = "Hello there", **extra: Any) -> dict[str, Any]:
    return {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "Be nice."},
            {"role": "user", "content": prompt},
        ],
        **extra,
    }


@pytest.fixture
async def client(aiohttp_client: AiohttpClient) -> Client:
    return await aiohttp_client(build_app(FakeSettings()))


async def read_http_chunks(response: aiohttp.ClientResponse) -> list[bytes]:
    """The body split exactly at the HTTP chunk boundaries the server wrote."""
    chunks: list[bytes] = []
    pending = b""
    while True:
        data, end_of_chunk = await response.content.readchunk()
        pending += data
        if end_of_chunk and pending:
            chunks.append(pending)
            pending = b""
        elif not data and not end_of_chunk:
            assert pending == b""
            return chunks


def event_payloads(events: list[bytes]) -> list[Any]:
    """Each `data: ...` event decoded; `[DONE]` stays the string "[DONE]"."""
    payloads = []
    for event in events:
        assert event.startswith(b"data: ")
        assert event.endswith(b"\n\n")
        data = event[len(b"data: ") : -2]
        payloads.append("[DONE]" if data == b"[DONE]" else orjson.loads(data))
    return payloads


async def recorded(client: Client) -> list[dict[str, Any]]:
    response = await client.get("/__fake/requests")
    assert response.status == 200
    requests: list[dict[str, Any]] = (await response.json())["requests"]
    return requests


# --- chat ---------------------------------------------------------------------------------------


async def test_chat_reply_shape_and_usage(client: Client) -> None:
    response = await client.post(CHAT, json=chat_body("What is two plus two?"))
    assert response.status == 200
    assert response.content_type == "application/json"
    body = await response.json()
    assert body["object"] == "chat.completion"
    assert body["id"].startswith("chatcmpl-")
    assert isinstance(body["created"], int)
    assert body["model"] == "gpt-4o-mini"
    [choice] = body["choices"]
    assert choice["index"] == 0
    assert choice["finish_reason"] == "stop"
    assert choice["message"]["role"] == "assistant"
    content = choice["message"]["content"]
    assert content == replies.reply_text("What is two plus two?")
    prompt_tokens = replies.count_tokens("Be nice.") + replies.count_tokens("What is two plus two?")
    completion_tokens = replies.count_tokens(content)
    assert body["usage"] == {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }
    assert prompt_tokens == 9


async def test_chat_is_deterministic_and_prompt_specific(client: Client) -> None:
    async def content(prompt: str) -> str:
        body = await (await client.post(CHAT, json=chat_body(prompt))).json()
        content: str = body["choices"][0]["message"]["content"]
        return content

    first, again, other = await content("alpha"), await content("alpha"), await content("beta")
    assert first == again
    assert first != other


async def test_chat_model_defaults_to_the_settings(aiohttp_client: AiohttpClient) -> None:
    client = await aiohttp_client(build_app(FakeSettings(model="fake-model")))
    response = await client.post(CHAT, json={"messages": [{"role": "user", "content": "x"}]})
    body = await response.json()
    assert body["model"] == "fake-model"


async def test_chat_under_a_prefix_is_answered(client: Client) -> None:
    response = await client.post(
        "/openai/deployments/gpt/chat/completions?api-version=2024-02-01", json=chat_body()
    )
    assert response.status == 200
    assert (await response.json())["object"] == "chat.completion"


# --- legacy completions and embeddings ----------------------------------------------------------


async def test_completions_string_and_list_prompt(client: Client) -> None:
    body = await (await client.post(COMPLETIONS, json={"prompt": "Say hi", "model": "m"})).json()
    assert body["object"] == "text_completion"
    assert body["model"] == "m"
    assert body["choices"] == [
        {
            "text": replies.reply_text("Say hi"),
            "index": 0,
            "logprobs": None,
            "finish_reason": "stop",
        }
    ]
    completion_tokens = replies.count_tokens(replies.reply_text("Say hi"))
    assert body["usage"] == {
        "prompt_tokens": 2,
        "completion_tokens": completion_tokens,
        "total_tokens": 2 + completion_tokens,
    }
    many = await (await client.post(COMPLETIONS, json={"prompt": ["one", "two"]})).json()
    assert [choice["index"] for choice in many["choices"]] == [0, 1]
    assert many["choices"][0]["text"] != many["choices"][1]["text"]


async def test_embeddings(client: Client) -> None:
    response = await client.post(EMBEDDINGS, json={"input": ["hello world", "bye"], "model": "e"})
    assert response.status == 200
    body = await response.json()
    assert body["object"] == "list"
    assert body["model"] == "e"
    assert body["usage"] == {"prompt_tokens": 3, "total_tokens": 3}
    first, second = body["data"]
    assert first["object"] == "embedding"
    assert (first["index"], second["index"]) == (0, 1)
    assert len(first["embedding"]) == 8
    assert all(isinstance(value, float) for value in first["embedding"])
    assert first["embedding"] != second["embedding"]
    again = await (await client.post(EMBEDDINGS, json={"input": "hello world"})).json()
    assert again["data"][0]["embedding"] == first["embedding"]


async def test_embeddings_base64(client: Client) -> None:
    body = await (
        await client.post(EMBEDDINGS, json={"input": "hi", "encoding_format": "base64"})
    ).json()
    vector = struct.unpack("<8f", base64.b64decode(body["data"][0]["embedding"]))
    assert vector == pytest.approx(replies.embedding_vector("hi"), abs=1e-6)


async def test_models(client: Client) -> None:
    body = await (await client.get("/v1/models")).json()
    assert body["object"] == "list"
    assert [model["id"] for model in body["data"]] == ["gpt-3.5-turbo"]
    assert body["data"][0]["object"] == "model"
    one = await (await client.get("/v1/models/gpt-4o")).json()
    assert one["id"] == "gpt-4o"


# --- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "data"),
    [
        (CHAT, b"{not json"),
        (CHAT, b""),
        (CHAT, b"[1, 2]"),
        (CHAT, b'{"model": "m"}'),
        (CHAT, b'{"messages": [], "model": "m"}'),
        (CHAT, b'{"messages": [{"role": "user", "content": "x"}], "model": 5}'),
        (COMPLETIONS, b"nope"),
        (COMPLETIONS, b'{"model": "m"}'),
        (EMBEDDINGS, b"nope"),
        (EMBEDDINGS, b'{"model": "m"}'),
    ],
)
async def test_bad_input_is_400(client: Client, path: str, data: bytes) -> None:
    response = await client.post(path, data=data, headers={"Content-Type": "application/json"})
    assert response.status == 400
    error = (await response.json())["error"]
    assert set(error) == ERROR_KEYS
    assert error["type"] == "invalid_request_error"
    assert error["param"] is None
    assert error["code"] is None
    assert error["message"]


async def test_bad_knob_is_400(client: Client) -> None:
    response = await client.post(CHAT, json=chat_body(), headers={"X-Fake-Status": "teapot"})
    assert response.status == 400
    assert "X-Fake-Status" in (await response.json())["error"]["message"]


# --- streaming ----------------------------------------------------------------------------------


async def test_chat_stream_events_are_separate_chunks_and_match_the_reply(
    client: Client,
) -> None:
    plain = await (await client.post(CHAT, json=chat_body("stream me"))).json()
    response = await client.post(CHAT, json=chat_body("stream me", stream=True))
    assert response.status == 200
    assert response.content_type == "text/event-stream"
    events = await read_http_chunks(response)
    payloads = event_payloads(events)
    assert payloads[-1] == "[DONE]"
    chunks = payloads[:-1]
    assert len(chunks) == len(replies.split_pieces(plain["choices"][0]["message"]["content"])) + 2
    assert all(chunk["object"] == "chat.completion.chunk" for chunk in chunks)
    assert len({chunk["id"] for chunk in chunks}) == 1
    assert all(chunk["model"] == "gpt-4o-mini" for chunk in chunks)
    assert all(len(chunk["choices"]) == 1 and "usage" not in chunk for chunk in chunks)
    deltas = "".join(chunk["choices"][0]["delta"].get("content", "") for chunk in chunks)
    assert deltas == plain["choices"][0]["message"]["content"]
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert all(chunk["choices"][0]["finish_reason"] is None for chunk in chunks[:-1])


async def test_chat_stream_usage_chunk_with_include_usage(client: Client) -> None:
    plain = await (await client.post(CHAT, json=chat_body("count"))).json()
    body = chat_body("count", stream=True, stream_options={"include_usage": True})
    payloads = event_payloads(await read_http_chunks(await client.post(CHAT, json=body)))
    assert payloads[-1] == "[DONE]"
    usage_chunk = payloads[-2]
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"] == plain["usage"]
    assert payloads[-3]["choices"][0]["finish_reason"] == "stop"
    assert all(chunk["usage"] is None for chunk in payloads[:-2])


async def test_completions_stream(client: Client) -> None:
    plain = await (await client.post(COMPLETIONS, json={"prompt": "go"})).json()
    body = {"prompt": "go", "stream": True, "stream_options": {"include_usage": True}}
    payloads = event_payloads(await read_http_chunks(await client.post(COMPLETIONS, json=body)))
    assert payloads[-1] == "[DONE]"
    *chunks, usage_chunk = payloads[:-1]
    assert all(chunk["object"] == "text_completion" for chunk in payloads[:-1])
    assert "".join(chunk["choices"][0]["text"] for chunk in chunks) == plain["choices"][0]["text"]
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert chunks[0]["choices"][0]["logprobs"] is None
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"] == plain["usage"]


async def test_stream_delay_spaces_the_events(client: Client) -> None:
    headers = {"X-Fake-Stream-Delay-Ms": "30"}
    response = await client.post(CHAT, json=chat_body(stream=True), headers=headers)
    started = time.monotonic()
    first, _ = await response.content.readchunk()
    first_at = time.monotonic() - started
    events = [first, *await read_http_chunks(response)]
    total = time.monotonic() - started
    assert event_payloads(events)[-1] == "[DONE]"
    assert total >= 0.03 * (len(events) - 2)
    assert first_at < total / 2


async def test_stream_delay_from_settings(aiohttp_client: AiohttpClient) -> None:
    client = await aiohttp_client(build_app(FakeSettings(stream_delay_ms=20)))
    started = time.monotonic()
    events = await read_http_chunks(await client.post(CHAT, json=chat_body(stream=True)))
    assert time.monotonic() - started >= 0.02 * (len(events) - 1)


# --- knobs --------------------------------------------------------------------------------------


async def test_status_429(client: Client) -> None:
    response = await client.post(CHAT, json=chat_body(), headers={"X-Fake-Status": "429"})
    assert response.status == 429
    error = (await response.json())["error"]
    assert set(error) == ERROR_KEYS
    assert error["type"] == "rate_limit_error"
    assert error["code"] == "rate_limit_exceeded"


async def test_status_5xx_by_header_and_query(client: Client) -> None:
    by_header = await client.post(CHAT, json=chat_body(), headers={"X-Fake-Status": "502"})
    assert by_header.status == 502
    assert (await by_header.json())["error"]["type"] == "server_error"
    by_query = await client.post(f"{EMBEDDINGS}?fake_status=503", json={"input": "x"})
    assert by_query.status == 503
    assert (await by_query.json())["error"]["type"] == "server_error"


async def test_latency_header(client: Client) -> None:
    started = time.monotonic()
    response = await client.post(CHAT, json=chat_body(), headers={"X-Fake-Latency-Ms": "150"})
    assert response.status == 200
    await response.read()
    assert time.monotonic() - started >= 0.15


async def test_latency_from_settings_and_header_override(aiohttp_client: AiohttpClient) -> None:
    client = await aiohttp_client(build_app(FakeSettings(latency_ms=120)))
    started = time.monotonic()
    assert (await client.get("/v1/models")).status == 200
    assert time.monotonic() - started >= 0.12
    started = time.monotonic()
    response = await client.get("/v1/models", headers={"X-Fake-Latency-Ms": "0"})
    assert response.status == 200
    assert time.monotonic() - started < 0.12


async def test_drop_before(client: Client) -> None:
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await client.post(CHAT, json=chat_body(), headers={"X-Fake-Drop": "before"})
    assert (await client.post(CHAT, json=chat_body())).status == 200


async def test_drop_mid_stream(client: Client) -> None:
    headers = {"X-Fake-Drop": "mid-stream"}
    response = await client.post(CHAT, json=chat_body(stream=True), headers=headers)
    assert response.status == 200
    received = b""
    with pytest.raises(aiohttp.ClientPayloadError):
        while True:
            data, _ = await response.content.readchunk()
            if not data:
                break
            received += data
    payloads = event_payloads([event + b"\n\n" for event in received.split(b"\n\n") if event])
    assert len(payloads) == 2
    assert payloads[0]["choices"][0]["delta"]["role"] == "assistant"
    assert b"[DONE]" not in received


async def test_drop_mid_stream_of_a_json_reply(client: Client) -> None:
    headers = {"X-Fake-Drop": "mid-stream"}
    response = await client.post(EMBEDDINGS, json={"input": "x"}, headers=headers)
    assert response.status == 200
    with pytest.raises(aiohttp.ClientPayloadError):
        await response.read()


# --- echo and inspection ------------------------------------------------------------------------


async def test_echo_of_other_paths(client: Client) -> None:
    response = await client.put(
        "/anything/deep/path?a=1&b=two", data=b"plain text", headers={"X-Custom": "yes"}
    )
    assert response.status == 200
    echo = await response.json()
    assert echo["method"] == "PUT"
    assert echo["path"] == "/anything/deep/path"
    assert echo["query"] == "a=1&b=two"
    assert echo["headers"]["x-custom"] == "yes"
    assert echo["body"] == "plain text"
    root = await (await client.get("/")).json()
    assert (root["method"], root["path"], root["query"], root["body"]) == ("GET", "/", "", None)
    as_json = await (await client.post("/anything", json={"k": [1]})).json()
    assert as_json["body"] == {"k": [1]}


async def test_health(client: Client) -> None:
    response = await client.get("/__fake/health", headers={"X-Fake-Status": "500"})
    assert response.status == 200
    assert await response.json() == {"status": "ok"}


async def test_inspection_records_requests_oldest_first_and_clears(client: Client) -> None:
    await client.post(f"{CHAT}?trace=1", json=chat_body("first"), headers={"X-Trace": "t1"})
    await client.post("/other", data=b"raw")
    await client.get("/__fake/health")
    requests = await recorded(client)
    assert [(r["method"], r["path"]) for r in requests] == [("POST", CHAT), ("POST", "/other")]
    first = requests[0]
    assert first["query"] == "trace=1"
    assert first["headers"]["x-trace"] == "t1"
    assert first["body"] == chat_body("first")
    assert requests[1]["body"] == "raw"
    cleared = await client.delete("/__fake/requests")
    assert cleared.status == 200
    assert await cleared.json() == {"cleared": 2}
    assert await recorded(client) == []


async def test_inspection_records_faulted_requests(client: Client) -> None:
    with contextlib.suppress(aiohttp.ServerDisconnectedError):
        await client.post(CHAT, json=chat_body(), headers={"X-Fake-Drop": "before"})
    await client.post(CHAT, json=chat_body(), headers={"X-Fake-Status": "429"})
    statuses = [r["headers"].get("x-fake-status") for r in await recorded(client)]
    assert statuses == [None, "429"]


async def test_inspection_is_bounded(aiohttp_client: AiohttpClient) -> None:
    client = await aiohttp_client(build_app(FakeSettings(record=2)))
    for index in range(3):
        await client.get(f"/r{index}")
    assert [r["path"] for r in await recorded(client)] == ["/r1", "/r2"]


# --- compatibility and serving ------------------------------------------------------------------


async def test_openai_sdk_client(client: Client) -> None:
    openai = pytest.importorskip("openai")
    sdk = openai.AsyncOpenAI(api_key="sk-test", base_url=str(client.make_url("/v1")), max_retries=0)
    try:
        chat = await sdk.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hi"}]
        )
        assert chat.choices[0].message.content == replies.reply_text("hi")
        assert chat.usage is not None
        assert chat.usage.total_tokens == chat.usage.prompt_tokens + chat.usage.completion_tokens
        stream = await sdk.chat.completions.create(
            model="gpt-4o",
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        parts: list[str] = []
        usage = None
        async for chunk in stream:
            parts.extend(choice.delta.content or "" for choice in chunk.choices)
            usage = chunk.usage or usage
        assert "".join(parts) == chat.choices[0].message.content
        assert usage == chat.usage
        embedding = await sdk.embeddings.create(model="e", input="hi")
        expected = replies.embedding_vector("hi")
        assert embedding.data[0].embedding == pytest.approx(expected, abs=1e-6)
        with pytest.raises(openai.RateLimitError):
            await sdk.chat.completions.create(
                model="gpt-4o",
                messages=[{"role": "user", "content": "hi"}],
                extra_headers={"X-Fake-Status": "429"},
            )
    finally:
        await sdk.close()


async def test_serve_until_cancelled() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    task = asyncio.create_task(serve("127.0.0.1", port, FakeSettings()))
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(100):
                try:
                    async with session.get(f"http://127.0.0.1:{port}/__fake/health") as response:
                        assert await response.json() == {"status": "ok"}
                        break
                except aiohttp.ClientConnectorError:
                    await asyncio.sleep(0.02)
            else:
                pytest.fail("fake upstream did not start")
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert task.cancelled()


@pytest.mark.parametrize("path", [CHAT, COMPLETIONS])
@pytest.mark.parametrize("stream", [None, False])
async def test_stream_options_without_stream_is_400_as_openai(
    client: Client, path: str, stream: bool | None
) -> None:
    body = chat_body() if path == CHAT else {"model": "m", "prompt": "hi"}
    body["stream_options"] = {"include_usage": True}
    if stream is not None:
        body["stream"] = stream
    response = await client.post(path, json=body)
    assert response.status == 400
    assert await response.json() == {
        "error": {
            "message": "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            "type": "invalid_request_error",
            "param": "stream_options",
            "code": None,
        }
    }
    # null is as good as absent
    response = await client.post(path, json={**body, "stream_options": None})
    assert response.status == 200


@pytest.mark.parametrize(
    ("api_version", "status"),
    [
        ("2024-02-01", 400),
        ("2024-08-01-preview", 400),
        ("2024-09-01-preview", 200),
        ("2024-10-21", 200),
    ],
)
async def test_azure_api_versions_before_2024_09_refuse_stream_options(
    client: Client, api_version: str, status: int
) -> None:
    """As Azure OpenAI: ``stream_options`` came with api-version 2024-09-01-preview."""
    body = {**chat_body(), "stream": True, "stream_options": {"include_usage": True}}
    path = f"/openai/deployments/gpt/chat/completions?api-version={api_version}"
    response = await client.post(path, json=body)
    assert response.status == status
    if status == 400:
        error = (await response.json())["error"]
        assert error["message"] == "Unrecognized request argument supplied: stream_options"
    # Without the field, every version streams.
    del body["stream_options"]
    assert (await client.post(path, json=body)).status == 200


@pytest.mark.parametrize(("name", "eol"), [("lf", b"\n"), ("crlf", b"\r\n"), ("cr", b"\r")])
async def test_sse_line_endings_knob(client: Client, name: str, eol: bytes) -> None:
    """``X-Fake-Sse-Newline``: the line ending of the stream's events, each the SSE spec allows."""
    body = {**chat_body(), "stream": True}
    response = await client.post(CHAT, json=body, headers={"X-Fake-Sse-Newline": name})
    raw = await response.read()
    events = raw.split(eol * 2)
    assert events[-2:] == [b"data: [DONE]", b""]
    assert all(e.startswith(b"data: {") for e in events[:-2])
    others = {b"\n", b"\r"} - set(eol.decode())  # type: ignore[arg-type]
    assert not any(o in raw.replace(eol, b"") for o in others)
    bad = await client.post(CHAT, json=body, headers={"X-Fake-Sse-Newline": "nel"})
    assert bad.status == 400
