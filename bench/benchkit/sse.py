"""SSE time to first byte, measured over raw sockets."""

from __future__ import annotations

import socket
import time

from benchkit.constants import SSE_BODY
from benchkit.logs import BenchError


def sse_ttfb(port: int, path: str, headers: dict[str, str], samples: int) -> list[float]:
    """Milliseconds from sending a streaming request to the first byte of its first SSE event.

    One fresh connection per request (the clock starts once it is connected); every stream is
    read to its end and must be a 200 ``text/event-stream`` ending in ``data: [DONE]``.
    """
    body = SSE_BODY.encode()
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Accept: text/event-stream\r\nContent-Length: {len(body)}\r\nConnection: close\r\n"
        f"{extra}\r\n"
    ).encode()
    out: list[float] = []
    for _ in range(samples):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            received = bytearray()
            first: float | None = None
            started = time.perf_counter()
            sock.sendall(head + body)
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                received += chunk
                if first is None and b"data:" in received:
                    first = time.perf_counter()
        status_line, _, rest = bytes(received).partition(b"\r\n")
        parts = status_line.split()
        status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
        headers_end = rest.find(b"\r\n\r\n")
        head_text = rest[:headers_end].lower()
        if status != 200 or b"text/event-stream" not in head_text or b"[DONE]" not in rest:
            snippet = rest[headers_end + 4 :][:200].decode(errors="replace")
            raise BenchError(f"SSE request answered {status}: {snippet}")
        assert first is not None
        out.append((first - started) * 1000)
    return out
