"""The incremental SSE scanner and usage extraction."""

from __future__ import annotations

import pytest

from llmgate.ai.sse import SseScanner
from llmgate.ai.usage import Usage, usage_of, usage_of_body

STREAM = (
    b'data: {"choices":[{"delta":{"content":"Hi"}}]}\n\n'
    b": a comment\n\n"
    b'data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":5,"total_tokens":8}}\r\n\r\n'
    b"data: [DONE]\n\n"
)


@pytest.mark.parametrize("size", [1, 2, 7, 64, len(STREAM)])
def test_any_split_gives_the_same_events(size: int) -> None:
    scanner = SseScanner()
    events = []
    for i in range(0, len(STREAM), size):
        events += scanner.feed(STREAM[i : i + size])
    events += scanner.close()
    assert events == [
        b'{"choices":[{"delta":{"content":"Hi"}}]}',
        b'{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":5,"total_tokens":8}}',
        b"[DONE]",
    ]


def test_multi_line_data_and_unterminated_end() -> None:
    scanner = SseScanner()
    assert scanner.feed(b"event: x\ndata: a\ndata: b\n\ndata: tail") == [b"a\nb"]
    assert scanner.close() == [b"tail"]


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (
            {"usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}},
            Usage(1, 2, 3),
        ),
        ({"usage": {"prompt_tokens": 4, "completion_tokens": 5}}, Usage(4, 5, 9)),
        ({"usage": {"prompt_tokens": 4, "total_tokens": 4}}, Usage(4, 0, 4)),
        ({"usage": None}, None),
        ({"usage": {"prompt_tokens": "x"}}, Usage(0, 0, 0)),
        ([], None),
        ({}, None),
    ],
)
def test_usage_of(payload: object, expected: Usage | None) -> None:
    assert usage_of(payload) == expected


def test_usage_of_body() -> None:
    assert usage_of_body(b'{"usage":{"total_tokens":7}}') == Usage(0, 0, 7)
    assert usage_of_body(b"not json") is None


@pytest.mark.parametrize("eol", [b"\n", b"\r\n", b"\r"], ids=["lf", "crlf", "cr"])
@pytest.mark.parametrize("size", [1, 2, 7, 64])
def test_every_line_ending_the_spec_allows(eol: bytes, size: int) -> None:
    """A line ends with CRLF, LF or a bare CR (an upstream using bare CRs is still read)."""
    stream = STREAM.replace(b"\r\n", b"\n").replace(b"\n", eol)
    scanner = SseScanner()
    events = []
    for i in range(0, len(stream), size):
        events += scanner.feed(stream[i : i + size])
    events += scanner.close()
    assert events == [
        b'{"choices":[{"delta":{"content":"Hi"}}]}',
        b'{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":5,"total_tokens":8}}',
        b"[DONE]",
    ]


def test_a_bare_cr_event_is_seen_when_its_empty_line_arrives() -> None:
    scanner = SseScanner()
    assert scanner.feed(b"data: a\rdata: b\r\r") == [b"a\nb"]
    # A CR then, in the next read, an LF: one line ending, not an empty line.
    assert scanner.feed(b"data: c\r") == []
    assert scanner.feed(b"\ndata: d\r\n\r\n") == [b"c\nd"]
