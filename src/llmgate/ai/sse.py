"""Incremental Server-Sent Events parsing, for watching a stream without holding it back.

``SseScanner.feed(chunk)`` takes the bytes as they pass (any split) and returns the ``data``
payloads of the events completed by them; the chunk itself is never modified or delayed.
"""

from __future__ import annotations

import re

_MAX_PENDING = 1024 * 1024  # a single event larger than this is skipped, not buffered forever
# A line ends with CRLF, LF or a bare CR (the SSE spec allows all three).
_LINE_END = re.compile(rb"\r\n|\n|\r")


class SseScanner:
    __slots__ = ("_after_cr", "_data", "_pending")

    def __init__(self) -> None:
        self._pending = b""
        self._data: list[bytes] = []
        # The last read ended with a CR: an LF starting the next one is the rest of that CRLF.
        self._after_cr = False

    def feed(self, chunk: bytes) -> list[bytes]:
        """The data payloads (``data:`` lines joined by newlines) of every completed event."""
        if self._after_cr and chunk:
            self._after_cr = False
            if chunk.startswith(b"\n"):
                chunk = chunk[1:]
        resume = len(self._pending)  # the pending tail holds no line ending
        buffer = self._pending + chunk if self._pending else chunk
        events: list[bytes] = []
        start = 0
        for end in _LINE_END.finditer(buffer, resume):
            line = buffer[start : end.start()]
            start = end.end()
            if not line:
                if self._data:
                    events.append(b"\n".join(self._data))
                    self._data = []
            elif line.startswith(b"data:"):
                value = line[5:]
                self._data.append(value[1:] if value.startswith(b" ") else value)
        self._pending = buffer[start:]
        if start and not self._pending and buffer.endswith(b"\r"):
            self._after_cr = True
        if len(self._pending) > _MAX_PENDING:
            self._pending, self._data = b"", []
        return events

    def close(self) -> list[bytes]:
        """Events left when the stream ends without a final empty line."""
        self._after_cr = False
        events = self.feed(b"\n\n") if self._pending or self._data else []
        return events
