"""Asking a stream for usage, and dropping the usage chunk for clients that did not ask."""

from __future__ import annotations

import time

import orjson
import pytest

from llmgate.ai.stream_usage import MAX_EVENT, UsageChunkFilter, is_usage_chunk, with_usage

CHUNK = b'data: {"choices":[{"delta":{"content":"hi"}}],"usage":null}\n\n'
# CHUNK as OpenAI sends it to a client that did not ask for usage: no ``usage`` key at all.
BARE = b'data: {"choices":[{"delta":{"content":"hi"}}]}\n\n'
USAGE = b'data: {"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2}}\n\n'
DONE = b"data: [DONE]\n\n"
STREAM = CHUNK * 3 + USAGE + DONE


def test_with_usage() -> None:
    assert with_usage({"stream": True}) == {
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    kept = with_usage({"stream": True, "stream_options": {"x": 1, "include_usage": False}})
    assert kept == {"stream": True, "stream_options": {"x": 1, "include_usage": True}}
    assert with_usage({"stream": False}) is None
    assert with_usage({"stream": True, "stream_options": {"include_usage": True}}) is None


@pytest.mark.parametrize("size", [1, 2, 7, 50, len(STREAM)])
def test_the_usage_chunk_is_dropped_whatever_the_chunking(size: int) -> None:
    usage_filter = UsageChunkFilter()
    pieces = [STREAM[i : i + size] for i in range(0, len(STREAM), size)]
    out = b"".join(usage_filter.feed(piece, False) for piece in pieces)
    out += usage_filter.feed(b"", True)
    assert out == BARE * 3 + DONE


def test_whole_events_are_not_held_back() -> None:
    usage_filter = UsageChunkFilter()
    assert usage_filter.feed(CHUNK + CHUNK[:10], False) == BARE
    assert usage_filter.feed(CHUNK[10:], False) == BARE
    crlf = CHUNK.replace(b"\n\n", b"\r\n\r\n")
    assert usage_filter.feed(crlf, False) == BARE.replace(b"\n\n", b"\r\n\r\n")


def test_an_endless_event_is_never_buffered_past_the_bound() -> None:
    """As an attacker upstream: one event that never ends is passed on, not hoarded."""
    usage_filter = UsageChunkFilter()
    sent = 0
    for _ in range(40):
        sent += len(usage_filter.feed(b"x" * 64 * 1024, False))
    assert len(usage_filter._pending) <= MAX_EVENT
    assert sent >= 40 * 64 * 1024 - MAX_EVENT


def test_is_usage_chunk() -> None:
    assert is_usage_chunk(orjson.dumps({"choices": [], "usage": {"total_tokens": 3}}))
    assert not is_usage_chunk(b'{"choices":[{"delta":{}}],"usage":{"total_tokens":3}}')
    assert not is_usage_chunk(b'{"choices":[],"usage":null}')
    assert not is_usage_chunk(b'{"usage":{')


@pytest.mark.parametrize(
    ("event", "relayed"),
    [
        # Spaced JSON (Python's json.dumps) and a trailing CR: the key goes all the same.
        (b'data: {"choices": [], "usage": null}\r\n\r\n', b'data: {"choices": []}\r\n\r\n'),
        (b'data:{"id":"x","usage":null}\n\n', b'data:{"id":"x"}\n\n'),
        # OpenAI's chunks end with "obfuscation" (on by default since 2025-08).
        (
            b'data: {"choices":[{"delta":{}}],"usage":null,"obfuscation":"kJ"}\n\n',
            b'data: {"choices":[{"delta":{}}],"obfuscation":"kJ"}\n\n',
        ),
        # The first key, several data lines, a usage that is not null: left as they are.
        (b'data: {"usage":null,"id":"x"}\n\n', b'data: {"usage":null,"id":"x"}\n\n'),
        (
            b'data: {"id":"x",\ndata: "usage":null}\n\n',
            b'data: {"id":"x",\ndata: "usage":null}\n\n',
        ),
        (b'data: {"choices":[{}],"usage":{"total_tokens":1}}\n\n', None),
        # Inside a string a quote is escaped: generated text is never touched.
        (b'data: {"t":"a,\\"usage\\":null}"}\n\n', None),
        (b'data: {"t":"a,\\"usage\\":null,"}\n\n', None),
        (b'data: {"a":1,"usage":nullx}\n\n', None),
        (b": keep-alive\n\n", None),
        (b"event: error\ndata: {}\n\n", None),
    ],
)
def test_the_null_usage_key_is_dropped_from_other_chunks(
    event: bytes, relayed: bytes | None
) -> None:
    """OpenAI adds ``"usage":null`` to every chunk only for a client that asked for usage."""
    assert UsageChunkFilter().feed(event, False) == (event if relayed is None else relayed)


def test_a_usage_chunk_split_anywhere_is_still_dropped_and_the_rest_kept() -> None:
    for cut in range(1, len(USAGE)):
        usage_filter = UsageChunkFilter()
        out = usage_filter.feed(CHUNK + USAGE[:cut], False)
        out += usage_filter.feed(USAGE[cut:] + DONE, False) + usage_filter.feed(b"", True)
        assert out == BARE + DONE, cut


def test_a_usage_chunk_ending_the_stream_without_its_blank_line_is_dropped() -> None:
    usage_filter = UsageChunkFilter()
    out = usage_filter.feed(CHUNK + USAGE.rstrip(), False) + usage_filter.feed(b"", True)
    assert out == BARE


def test_events_with_either_separator_keep_their_order() -> None:
    crlf = CHUNK.replace(b"\n\n", b"\r\n\r\n")
    usage_crlf = USAGE.replace(b"\n\n", b"\r\n\r\n")
    stream = (CHUNK + crlf) * 50 + usage_crlf + CHUNK + DONE
    expected = (BARE + BARE.replace(b"\n\n", b"\r\n\r\n")) * 50 + BARE + DONE
    assert UsageChunkFilter().feed(stream, False) == expected


# The SSE spec ends a line with CRLF, LF or a bare CR: an event ends at an empty line.
ENDINGS = {"lf": b"\n", "crlf": b"\r\n", "cr": b"\r"}


def _ending(stream: bytes, eol: bytes) -> bytes:
    return stream.replace(b"\n", eol)


@pytest.mark.parametrize("eol", ENDINGS.values(), ids=ENDINGS.keys())
def test_each_event_goes_on_at_its_empty_line_whatever_the_line_ending(eol: bytes) -> None:
    usage_filter = UsageChunkFilter()
    chunk, bare = _ending(CHUNK, eol), _ending(BARE, eol)
    assert usage_filter.feed(chunk, False) == bare  # not held back waiting for more
    assert usage_filter.feed(_ending(USAGE, eol), False) == b""
    assert usage_filter.feed(chunk + _ending(DONE, eol), False) == bare + _ending(DONE, eol)
    assert usage_filter.feed(b"", True) == b""


@pytest.mark.parametrize("eol", ENDINGS.values(), ids=ENDINGS.keys())
@pytest.mark.parametrize("size", [1, 2, 7, 50])
def test_any_line_ending_and_chunking_filters_the_same(eol: bytes, size: int) -> None:
    stream = _ending(STREAM, eol)
    usage_filter = UsageChunkFilter()
    pieces = [stream[i : i + size] for i in range(0, len(stream), size)]
    out = b"".join(usage_filter.feed(piece, False) for piece in pieces)
    out += usage_filter.feed(b"", True)
    assert out == _ending(BARE * 3 + DONE, eol)


def test_a_crlf_split_between_its_cr_and_lf_keeps_the_next_event_whole() -> None:
    """``\\r\\n\\r`` already ends the event (relayed at once); the ``\\n`` that follows in the
    next read belongs to that ending, not to the next event."""
    usage_filter = UsageChunkFilter()
    crlf = _ending(CHUNK, b"\r\n")
    assert usage_filter.feed(crlf[:-1], False) == _ending(BARE, b"\r\n")[:-1]
    assert usage_filter.feed(b"\n" + crlf, False) == b"\n" + _ending(BARE, b"\r\n")


def test_mixed_endings_end_events() -> None:
    usage_filter = UsageChunkFilter()
    event = CHUNK.rstrip(b"\n")
    bare = BARE.rstrip(b"\n")
    for ending in (b"\n\r\n", b"\r\n\n", b"\r\r\n", b"\n\r"):
        assert usage_filter.feed(event + ending, False) == bare + ending, ending


def test_a_bare_cr_event_of_several_lines_is_not_cut() -> None:
    event = b'data: {"id":"x",\rdata: "usage":null}\r\r'
    assert UsageChunkFilter().feed(event, False) == event


def test_a_thousand_events_in_one_chunk_are_scanned_in_linear_time() -> None:
    for eol in ENDINGS.values():
        stream = _ending(CHUNK * 1000 + USAGE + DONE, eol)
        started = time.perf_counter()
        out = UsageChunkFilter().feed(stream, False)
        elapsed = time.perf_counter() - started
        assert out == _ending(BARE * 1000 + DONE, eol)
        assert elapsed < 0.05, (eol, elapsed)
