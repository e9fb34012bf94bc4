"""Reading, classifying and shaping OpenAI-style request bodies."""

from __future__ import annotations

from typing import Any

import pytest

from llmgate.ai.protocols import (
    RequestError,
    Shaping,
    ask_for_usage,
    deep_merge,
    detect,
    other_endpoint,
    parse_body,
    path_for,
    shape,
)


@pytest.mark.parametrize(
    ("raw", "content_type", "expected"),
    [
        (b'{"a": 1}', "application/json", {"a": 1}),
        (b'{"a": 1}', "application/json; charset=utf-8", {"a": 1}),
        (b'{"a": 1}', None, {"a": 1}),
        (b'{"a": 1}', "application/x-www-form-urlencoded", {"a": 1}),  # curl -d
        (b'{"a": 1}', "text/plain", {"a": 1}),
    ],
)
def test_parse_body_accepts_json_objects(
    raw: bytes, content_type: str | None, expected: Any
) -> None:
    body, sent = parse_body(raw, content_type)
    assert body == expected
    assert sent is raw  # strict JSON is sent as it came


@pytest.mark.parametrize(
    "raw",
    [
        b'\xef\xbb\xbf{"a": "x"}',  # UTF-8 BOM
        '{"a": "x"}'.encode("utf-16"),
        '{"a": "x"}'.encode("utf-16-le"),
        '{"a": "x"}'.encode("utf-32-be"),
    ],
)
def test_parse_body_reads_what_json_loads_reads_and_sends_strict_json(raw: bytes) -> None:
    body, sent = parse_body(raw, "application/json")
    assert body == {"a": "x"}
    assert sent == b'{"a":"x"}'


def test_parse_body_non_finite_numbers_are_sent_as_null() -> None:
    body, sent = parse_body(b'{"a": NaN, "b": -Infinity, "c": "x"}', "application/json")
    assert body["c"] == "x"
    assert sent == b'{"a":null,"b":null,"c":"x"}'


@pytest.mark.parametrize(
    ("raw", "content_type", "message"),
    [
        (b"", "application/json", "could not get body: request body is empty"),
        (b"  \n", None, "could not get body: request body is empty"),
        (b"{", "application/json", "could not parse JSON request body: "),
        (b'"text"', "application/json", "could not parse JSON request body: expected a JSON"),
        (b"a=1", "application/x-www-form-urlencoded", "unsupported content-type: application/x"),
        (b"", "text/plain", "unsupported content-type: text/plain, only application/json"),
        (b"[1]", "text/plain", "unsupported content-type: text/plain"),
        # Readable by json.loads, but not as strict JSON: refused rather than sent differently.
        (b'{"a": "\\ud800"}', None, "could not parse JSON request body: "),
        (b"\xff\xfe{\x00", None, "could not parse JSON request body: "),
    ],
)
def test_parse_body_refuses_with_apisix_messages(
    raw: bytes, content_type: str | None, message: str
) -> None:
    with pytest.raises(RequestError) as caught:
        parse_body(raw, content_type)
    assert caught.value.status == 400
    assert caught.value.message.startswith(message)
    assert caught.value.body == {"error_msg": caught.value.message}


@pytest.mark.parametrize(
    ("body", "path", "protocol"),
    [
        ({"messages": []}, "/chat", "chat"),
        ({"messages": [], "input": "x"}, "/v1/embeddings", "chat"),
        ({"prompt": "x"}, "/chat", "completions"),
        ({"input": "x"}, "/chat", "embeddings"),
        ({"model": "m"}, "/v1/chat/completions", "chat"),
        ({"model": "m"}, "/v1/completions", "completions"),
        ({"model": "m"}, "/openai/deployments/x/embeddings", "embeddings"),
        ({"messages": "not a list"}, "/chat", None),
        ({"model": "m"}, "/chat", None),
    ],
)
def test_detect(body: dict[str, Any], path: str, protocol: str | None) -> None:
    assert detect(body, path) == protocol


@pytest.mark.parametrize(
    ("body", "path", "endpoint"),
    [
        ({"model": "m", "input": "hi"}, "/v1/responses", "/responses"),
        ({"model": "m", "input": "hi"}, "/v1/moderations", "/moderations"),
        ({"model": "m", "input": "hi", "voice": "alloy"}, "/v1/audio/speech", "/audio/speech"),
        ({"model": "m", "prompt": "a cat"}, "/v1/images/generations", "/images/generations"),
        ({"messages": []}, "/api/responses", None),
        ({"input": "hi"}, "/v1/embeddings", None),
    ],
)
def test_other_endpoint(body: dict[str, Any], path: str, endpoint: str | None) -> None:
    assert other_endpoint(body, path) == endpoint


@pytest.mark.parametrize(
    ("path", "protocol", "expected"),
    [
        ("/v1/chat/completions", "chat", "/v1/chat/completions"),
        ("/v1/chat/completions", "embeddings", "/v1/embeddings"),
        ("/v1/chat/completions", "completions", "/v1/completions"),
        ("/v1/completions", "chat", "/v1/chat/completions"),
        ("/openai/deployments/d/embeddings", "chat", "/openai/deployments/d/chat/completions"),
        ("/custom/llm", "embeddings", "/custom/llm"),
    ],
)
def test_path_for(path: str, protocol: Any, expected: str) -> None:
    assert path_for(path, protocol) == expected


def test_shape_applies_options_and_keeps_the_input_unchanged() -> None:
    body = {"model": "client", "temperature": 1, "messages": []}
    rules = Shaping(options={"model": "gpt-3.5-turbo", "temperature": 0, "max_tokens": 100})
    out, changed = shape(body, "chat", rules)
    assert changed
    assert out == {"model": "gpt-3.5-turbo", "temperature": 0, "max_tokens": 100, "messages": []}
    assert body == {"model": "client", "temperature": 1, "messages": []}


def test_shape_without_rules_changes_nothing() -> None:
    body = {"messages": [], "stream": False}
    assert shape(body, "chat", Shaping(options={})) == (body, False)


@pytest.mark.parametrize(
    ("stream_options", "expected"),
    [
        (None, {"include_usage": True}),
        ({"include_usage": False, "x": 1}, {"include_usage": True, "x": 1}),
        ("junk", {"include_usage": True}),
    ],
)
def test_streams_ask_for_usage(stream_options: Any, expected: dict[str, Any]) -> None:
    body: dict[str, Any] = {"messages": [], "stream": True}
    if stream_options is not None:
        body["stream_options"] = stream_options
    # Shaping leaves it to the target, which must know whether the client asked.
    assert shape(body, "chat", Shaping(options={})) == (body, False)
    out = ask_for_usage(body, "chat")
    assert out is not None and out["stream_options"] == expected


def test_stream_asking_for_usage_already_is_sent_as_is() -> None:
    body = {"prompt": "x", "stream": True, "stream_options": {"include_usage": True}}
    assert ask_for_usage(body, "completions") is None


def test_embeddings_never_get_stream_options() -> None:
    assert ask_for_usage({"input": "x", "stream": True}, "embeddings") is None


@pytest.mark.parametrize(
    ("field", "protocol", "expected"),
    [
        ("max_completion_tokens", "chat", {"max_completion_tokens": 50}),
        ("max_tokens", "chat", {"max_tokens": 50}),
        ("max_completion_tokens", "completions", {"max_tokens": 50}),
    ],
)
def test_llm_options_max_tokens_is_named_per_provider(
    field: str, protocol: Any, expected: dict[str, int]
) -> None:
    body = {"max_tokens": 7, "max_completion_tokens": 8}
    out, _ = shape(body, protocol, Shaping(options={}, max_tokens=50, max_tokens_field=field))
    assert out == expected


def test_request_body_override_and_remove_model() -> None:
    rules = Shaping(
        options={},
        request_body={"openai-chat": {"user": "gw", "metadata": {"a": 1}}},
        remove_model=True,
    )
    out, _ = shape({"model": "m", "user": "client", "metadata": {"b": 2}}, "chat", rules)
    assert out == {"user": "client", "metadata": {"a": 1, "b": 2}}
    out, _ = shape({"input": "x"}, "embeddings", rules)
    assert out == {"input": "x"}


def test_deep_merge() -> None:
    target = {"a": {"b": 1, "c": [1]}, "d": None, "e": 1}
    patch = {"a": {"b": 2, "c": [2], "f": 3}, "d": 4, "e": {"x": 1}}
    assert deep_merge(target, patch, force=False) == {
        "a": {"b": 1, "c": [1], "f": 3},
        "d": 4,
        "e": 1,
    }
    assert deep_merge(target, patch, force=True) == {
        "a": {"b": 2, "c": [2], "f": 3},
        "d": 4,
        "e": {"x": 1},
    }
    assert target == {"a": {"b": 1, "c": [1]}, "d": None, "e": 1}
