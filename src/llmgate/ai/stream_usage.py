"""Asking a stream for its usage, and hiding the answer from a client that did not ask.

OpenAI-style streams report token usage only when the request says
``"stream_options": {"include_usage": true}``: then a last chunk with ``"choices": []`` and the
``usage`` block comes before ``[DONE]`` (and every other chunk carries ``"usage": null``).  A
gateway that must account a stream (budgets, logs) asks for it (``with_usage``) and, when the
client did not, takes both back out of what the client receives (``UsageChunkFilter``): the
usage chunk is dropped and a ``"usage":null`` ending another chunk is removed, so the client
sees the stream OpenAI would have sent it.

Pure: bytes and dicts in, bytes and dicts out.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

# Events larger than this are passed on as they come, never held back whole.
MAX_EVENT = 1024 * 1024
_USAGE_MARKS = (b'"usage":{', b'"usage": {')
# A chunk's null usage key after another, as compact (OpenAI) or spaced (json.dumps) JSON.
_NULL_USAGE = (b',"usage":null', b', "usage": null')
# An event ends at an empty line: two line endings in a row, each CRLF, LF or a bare CR (the
# SSE spec allows all three).  A CR followed by an LF is one ending, never a line and an empty
# one.  Searched in C, from where the last search stopped: linear in the stream's length.
_EVENT_END = re.compile(rb"(?:\r\n|\n|\r(?!\n))(?:\r\n|\n|\r)")
_LONGEST_END = 4  # "\r\n\r\n"


def wants_usage(body: dict[str, Any]) -> bool:
    options = body.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True


def with_usage(body: dict[str, Any]) -> dict[str, Any] | None:
    """``body`` asking its stream for usage; None when it is not a stream or already asks."""
    if body.get("stream") is not True or wants_usage(body):
        return None
    options = body.get("stream_options")
    kept = options if isinstance(options, dict) else {}
    return {**body, "stream_options": {**kept, "include_usage": True}}


def is_usage_chunk(data: bytes) -> bool:
    """Whether an event's data is the usage-only chunk (``choices`` empty, ``usage`` set)."""
    if not any(mark in data for mark in _USAGE_MARKS):
        return False
    try:
        payload = orjson.loads(data)
    except orjson.JSONDecodeError:
        return False
    return (
        isinstance(payload, dict)
        and isinstance(payload.get("usage"), dict)
        and payload.get("choices") in ([], None)
    )


def _data(event: bytes) -> bytes:
    return b"\n".join(
        line[6:] if line.startswith(b"data: ") else line[5:]
        for line in event.splitlines()  # CRLF, LF and CR alike
        if line.startswith(b"data:")
    )


def without_null_usage(event: bytes) -> bytes:
    """An event (without its blank line) whose one ``data`` line holds a ``"usage":null`` key
    after another, without that key; any other event as it is.

    Unescaped, ``,"usage":null`` can only be JSON syntax (a quote inside a string is escaped),
    and the last one is the top-level key OpenAI puts after ``choices`` (before
    ``obfuscation``, when there is one)."""
    if b"null" not in event or not event.startswith(b"data:") or b"\n" in event or b"\r" in event:
        return event
    for mark in _NULL_USAGE:
        index = event.rfind(mark)
        if index > 0 and event[index + len(mark) : index + len(mark) + 1] in (b",", b"}"):
            return event[:index] + event[index + len(mark) :]
    return event


class UsageChunkFilter:
    """Drops the usage-only event from an SSE stream and the ``"usage":null`` key from the
    others (``without_null_usage``); every other byte goes on unchanged.

    Whole events are passed on as soon as their empty line arrives, whatever their line
    endings; only the unfinished tail of a chunk waits for the next one (never more than
    ``MAX_EVENT`` bytes).  An event whose ending stopped at a CR that turns out to be the first
    half of a CRLF gets that LF with the next read, as part of its ending (dropped with it
    when the event was).
    """

    __slots__ = ("_after_cr", "_pending")

    def __init__(self) -> None:
        self._pending = b""
        # The last read ended with an event's ending ending in CR: the LF that may follow is
        # still that ending's, relayed (b"\n") or dropped with its event (b"").
        self._after_cr: bytes | None = None

    def feed(self, chunk: bytes, eof: bool) -> bytes:
        out: list[bytes] = []
        if self._after_cr is not None and chunk:
            if chunk.startswith(b"\n"):
                out.append(self._after_cr)
                chunk = chunk[1:]
            self._after_cr = None
        # The pending tail held no event ending: search only where one could now complete.
        resume = max(len(self._pending) - _LONGEST_END + 1, 0)
        buffer = self._pending + chunk if self._pending else chunk
        start = 0
        kept = True
        for end in _EVENT_END.finditer(buffer, resume):
            event = buffer[start : end.start()]
            kept = not _is_usage_event(event)
            if kept:
                out.append(without_null_usage(event))
                out.append(end.group())
            start = end.end()
        rest = buffer[start:]
        if start and not rest and buffer.endswith(b"\r"):
            self._after_cr = b"\n" if kept else b""
        if eof and rest.strip() and _is_usage_event(rest.strip()):
            rest = b""  # the stream's last event, without its empty line
        if eof or len(rest) > MAX_EVENT:
            out.append(rest)
            rest = b""
        self._pending = rest
        return b"".join(out)


def _is_usage_event(event: bytes) -> bool:
    return any(mark in event for mark in _USAGE_MARKS) and is_usage_chunk(_data(event))
