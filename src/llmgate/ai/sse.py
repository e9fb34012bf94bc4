"""Incremental Server-Sent Events parsing, for watching a stream without holding it back.

``SseScanner.feed(chunk)`` takes the bytes as they pass (any split) and returns the ``data``
payloads of the events completed by them; the chunk itself is never modified or delayed.
"""

from __future__ import annotations

_MAX_PENDING = 1024 * 1024  # a single event larger than this is skipped, not buffered forever


class SseScanner:
    __slots__ = ("_data", "_pending")

    def __init__(self) -> None:
        self._pending = b""
        self._data: list[bytes] = []

    def feed(self, chunk: bytes) -> list[bytes]:
        """The data payloads (``data:`` lines joined by newlines) of every completed event."""
        buffer = self._pending + chunk if self._pending else chunk
        events: list[bytes] = []
        start = 0
        while True:
            end = buffer.find(b"\n", start)
            if end < 0:
                break
            line = buffer[start:end].rstrip(b"\r")
            start = end + 1
            if not line:
                if self._data:
                    events.append(b"\n".join(self._data))
                    self._data = []
            elif line.startswith(b"data:"):
                value = line[5:]
                self._data.append(value[1:] if value.startswith(b" ") else value)
        self._pending = buffer[start:]
        if len(self._pending) > _MAX_PENDING:
            self._pending, self._data = b"", []
        return events

    def close(self) -> list[bytes]:
        """Events left when the stream ends without a final blank line."""
        events = self.feed(b"\n\n") if self._pending or self._data else []
        return events
