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

from typing import Any

import orjson

# Events larger than this are passed on as they come, never held back whole.
MAX_EVENT = 1024 * 1024
_USAGE_MARKS = (b'"usage":{', b'"usage": {')
# A chunk's null usage key after another, as compact (OpenAI) or spaced (json.dumps) JSON.
_NULL_USAGE = (b',"usage":null', b', "usage": null')
_SEPARATORS = (b"\n\n", b"\r\n\r\n")


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
    lines = [line.rstrip(b"\r") for line in event.split(b"\n")]
    return b"\n".join(
        line[6:] if line.startswith(b"data: ") else line[5:]
        for line in lines
        if line.startswith(b"data:")
    )


def without_null_usage(event: bytes) -> bytes:
    """An event (without its blank line) whose one ``data`` line holds a ``"usage":null`` key
    after another, without that key; any other event as it is.

    Unescaped, ``,"usage":null`` can only be JSON syntax (a quote inside a string is escaped),
    and the last one is the top-level key OpenAI puts after ``choices`` (before
    ``obfuscation``, when there is one)."""
    if b"null" not in event or not event.startswith(b"data:") or b"\n" in event:
        return event
    for mark in _NULL_USAGE:
        index = event.rfind(mark)
        if index > 0 and event[index + len(mark) : index + len(mark) + 1] in (b",", b"}"):
            return event[:index] + event[index + len(mark) :]
    return event


class UsageChunkFilter:
    """Drops the usage-only event from an SSE stream and the ``"usage":null`` key from the
    others (``without_null_usage``); every other byte goes on unchanged.

    Whole events are passed on as soon as their blank line arrives; only the unfinished tail
    of a chunk waits for the next one (never more than ``MAX_EVENT`` bytes).
    """

    __slots__ = ("_pending",)

    def __init__(self) -> None:
        self._pending = b""

    def feed(self, chunk: bytes, eof: bool) -> bytes:
        buffer = self._pending + chunk if self._pending else chunk
        out: list[bytes] = []
        start = 0
        ends = _Boundaries(buffer)
        while True:
            end, size = ends.next(start)
            if end < 0:
                break
            event = buffer[start:end]
            if not _is_usage_event(event):
                out.append(without_null_usage(event))
                out.append(buffer[end : end + size])
            start = end + size
        rest = buffer[start:]
        if eof and rest.strip() and _is_usage_event(rest.strip()):
            rest = b""  # the stream's last event, without its blank line
        if eof or len(rest) > MAX_EVENT:
            out.append(rest)
            rest = b""
        self._pending = rest
        return b"".join(out)


def _is_usage_event(event: bytes) -> bool:
    return any(mark in event for mark in _USAGE_MARKS) and is_usage_chunk(_data(event))


class _Boundaries:
    """Where the events of one buffer end, each separator searched for once per position (a
    chunk of many small events is scanned in linear time)."""

    __slots__ = ("_buffer", "_found")

    def __init__(self, buffer: bytes) -> None:
        self._buffer = buffer
        self._found = {separator: buffer.find(separator) for separator in _SEPARATORS}

    def next(self, start: int) -> tuple[int, int]:
        """Where the next event after ``start`` ends, and the size of its separator."""
        best, size = -1, 0
        for separator, index in self._found.items():
            if 0 <= index < start:
                index = self._found[separator] = self._buffer.find(separator, start)
            if index >= 0 and (best < 0 or index < best):
                best, size = index, len(separator)
        return best, size
