"""Watching LLM responses: usage and model from streams and JSON bodies, chunks untouched."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from multidict import CIMultiDict

from llmgate.ai import tracking
from llmgate.ai.call import LlmCall
from llmgate.ai.tracking import ResponseTracker, text_size
from llmgate.ai.usage import Usage
from tests.http.test_variables import make_ctx

SSE = CIMultiDict({"Content-Type": "text/event-stream; charset=utf-8"})
JSON = CIMultiDict({"Content-Type": "application/json"})

STREAM = (
    b'data: {"model":"gpt-x","choices":[{"delta":{"content":"Hi"}}],"usage":null}\n\n'
    b'data: {"model":"gpt-x","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":5,'
    b'"total_tokens":8}}\n\n'
    b"data: [DONE]\n\n"
)
BODY = orjson.dumps(
    {"model": "gpt-y", "choices": [], "usage": {"prompt_tokens": 2, "completion_tokens": 4}}
)


def run(tracker: ResponseTracker, data: bytes, size: int) -> bytes:
    out = b""
    for i in range(0, len(data), size):
        chunk = data[i : i + size]
        tracker.feed(chunk, False)
        out += chunk
    tracker.feed(b"", True)
    return out


@pytest.mark.parametrize("size", [1, 3, 17, 100, len(STREAM)])
def test_stream_usage_whatever_the_chunking(size: int) -> None:
    call = LlmCall()
    tracker = ResponseTracker(call, 200, SSE)
    assert run(tracker, STREAM, size) == STREAM
    assert call.usage == Usage(3, 5, 8)
    assert call.model == "gpt-x"
    assert call.first_token is not None and call.finished is not None
    assert call.first_token <= call.finished


@pytest.mark.parametrize("size", [1, 10, len(BODY)])
def test_json_usage_at_the_end(size: int) -> None:
    call = LlmCall()
    run(ResponseTracker(call, 200, JSON), BODY, size)
    assert call.usage == Usage(2, 4, 6)  # total computed when absent
    assert call.model == "gpt-y"


def test_json_copy_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tracking, "MAX_JSON_COPY", 10)
    call = LlmCall()
    run(ResponseTracker(call, 200, JSON), BODY, 4)
    assert call.usage is None
    assert call.finished is not None


@pytest.mark.parametrize(
    ("status", "headers"),
    [
        (429, JSON),
        (200, CIMultiDict({"Content-Type": "application/json", "Content-Encoding": "gzip"})),
        (200, CIMultiDict({"Content-Type": "text/plain"})),
    ],
)
def test_unreadable_or_failed_responses_are_not_parsed(
    status: int, headers: CIMultiDict[str]
) -> None:
    call = LlmCall()
    run(ResponseTracker(call, status, headers), BODY, 5)
    assert call.usage is None
    assert call.first_token is not None and call.finished is not None


def test_stream_without_usage_and_garbage_events() -> None:
    call = LlmCall()
    data = b'data: {not json\n\ndata: [DONE]\n\n: comment\n\ndata: {"usage": 5}'
    run(ResponseTracker(call, 200, SSE), data, 7)
    assert call.usage is None


def test_text_is_counted_until_usage_comes() -> None:
    """``relayed_chars``: what a budget charges a stream cut short before its usage."""
    call = LlmCall()
    tracker = ResponseTracker(call, 200, SSE)
    tracker.feed(b'data: {"choices":[{"delta":{"content":"Hello"}}]}\n\n', False)
    assert call.relayed_chars == 5 and call.usage is None
    tracker.feed(STREAM, True)
    assert call.relayed_chars == 7 and call.usage == Usage(3, 5, 8)
    tracker = ResponseTracker(call := LlmCall(), 200, JSON)
    tracker.feed(
        orjson.dumps({"choices": [{"message": {"content": "Hi"}}], "usage": {"total_tokens": 1}}),
        True,
    )
    assert call.relayed_chars == 0 and call.usage == Usage(0, 0, 1)


@pytest.mark.parametrize(
    ("delta", "size"),
    [
        # Tool calls: their arguments are generated text the provider bills.
        ({"tool_calls": [{"index": 0, "function": {"name": "get", "arguments": '{"ci'}}]}, 7),
        (
            {
                "tool_calls": [
                    {"index": 0, "function": {"arguments": "ab"}},
                    {"index": 1, "function": {"arguments": "cde"}},
                ]
            },
            5,
        ),
        ({"function_call": {"name": "f", "arguments": "xy"}}, 3),  # the legacy form
        ({"refusal": "No."}, 3),
        ({"reasoning_content": "Hmm", "content": None}, 3),  # deepseek-reasoner
        ({"content": "ab", "tool_calls": "junk"}, 2),
    ],
)
def test_every_generated_text_of_a_delta_is_counted(delta: dict[str, Any], size: int) -> None:
    """A stream cut before its usage is charged what was relayed: tool-call arguments,
    refusals and reasoning too, not only ``content``."""
    assert text_size({"choices": [{"index": 0, "delta": delta}]}) == size


WHOLE = [
    (JSON, BODY),
    (JSON, b'{"usage":{"prompt_tokens":-1,"completion_tokens":true,"total_tokens":0.5}}'),
    (JSON, b'{"usage":{"prompt_tokens":7,"prompt_tokens_details":{"cached_tokens":9}}}'),
    (JSON, b'{"model":"m","choices":[{"message":{"content":"four"}}]}'),
    (JSON, b"not json"),
    (JSON, b""),
    (SSE, STREAM),
    (CIMultiDict({"Content-Type": "application/json", "Content-Encoding": "gzip"}), BODY),
    (CIMultiDict({"Content-Type": "text/plain"}), BODY),
]


@pytest.mark.parametrize(("headers", "body"), WHOLE)
@pytest.mark.parametrize("status", [200, 500])
def test_a_whole_body_is_tracked_as_one_last_chunk(
    headers: CIMultiDict[str], body: bytes, status: int
) -> None:
    fed, whole = LlmCall(), LlmCall()
    ResponseTracker(fed, status, headers).feed(body, True)
    ResponseTracker(whole, status, headers).feed_whole(body)
    for call in (fed, whole):
        assert call.finished is not None
        assert (call.first_token is None) == (not body)
        call.first_token = call.finished = None
    assert whole == fed


def test_a_whole_body_keeps_an_earlier_first_token() -> None:
    call = LlmCall(first_token=1.0)
    ResponseTracker(call, 200, JSON).feed_whole(BODY)
    assert call.first_token == 1.0 and call.usage == Usage(2, 4, 6)


@pytest.mark.parametrize(
    ("answered", "left_waiting", "expected"),
    [
        pytest.param(False, False, None, id="never-answered"),
        pytest.param(False, True, Usage(25, 0, 25), id="left-waiting"),
        pytest.param(True, False, Usage(25, 0, 25), id="answered-without-usage"),
    ],
)
def test_settle_usage_charges_the_prompt_of_a_call_left_waiting(
    answered: bool, left_waiting: bool, expected: Usage | None
) -> None:
    ctx = make_ctx()
    ctx.outbound.body = b"x" * 100  # 25 tokens at 4 bytes a token
    call = LlmCall.of(ctx)
    call.protocol, call.answered = "chat", answered
    if left_waiting:
        tracking.left_waiting(ctx)
    assert tracking.settle_usage(ctx) is call
    assert call.usage == expected
    assert call.estimated is (expected is not None)


def test_a_call_answered_or_from_the_cache_is_never_left_waiting() -> None:
    ctx = make_ctx()
    call = LlmCall.of(ctx)
    call.answered = True
    tracking.left_waiting(ctx)
    assert not call.left_waiting
