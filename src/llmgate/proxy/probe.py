"""One active health-check probe, as lua-resty-healthcheck sends it.

    tcp     connect (within ``timeout``): up
    http    connect, send ``METHOD http_path HTTP/1.1`` with ``Connection: close``,
            ``req_headers``, ``Host`` and ``http_req_body``, read the status line
    https   the same over TLS (SNI: the Host; certificate checked per
            ``https_verify_certificate``)

Every socket step (connect, TLS handshake, send, reading the status line) has ``timeout``
seconds.  The outcome is what the checker counts:

    ("up", 0)          tcp: the node accepted the connection
    ("status", code)   http(s): the status line's code (0: unreadable)
    ("timeout", 0)     a step timed out
    ("tcp", 0)         refused, reset, TLS failure, or closed before a status line
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl
from typing import Literal

from llmgate.schemas.checks import ActiveCheck

Outcome = tuple[Literal["up", "status", "timeout", "tcp"], int]

_STATUS_LINE = re.compile(rb"^HTTP/\d+\.\d+\s+(\d+)", re.IGNORECASE)
_MAX_STATUS_LINE = 8192


class Prober:
    """Sends the probes of one ``checks.active`` config (built once per checker)."""

    def __init__(self, active: ActiveCheck) -> None:
        self.active = active
        self.ssl: ssl.SSLContext | None = None
        if active.type == "https":
            context = ssl.create_default_context()
            if not active.https_verify_certificate:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            self.ssl = context
        headers = b"".join(h.encode("utf-8") + b"\r\n" for h in active.req_headers or ())
        self._headers = headers
        self._own_host = any(
            h.partition(":")[0].strip().lower() == "host" for h in active.req_headers or ()
        )
        self._body = active.http_req_body.encode("utf-8")

    def request(self, host_header: str) -> bytes:
        """The probe's request bytes."""
        active = self.active
        head = b"%s %s HTTP/1.1\r\nConnection: close\r\n%s" % (
            active.http_method.encode(),
            active.http_path.encode("utf-8"),
            self._headers,
        )
        if not self._own_host:
            head += b"Host: %s\r\n" % host_header.encode()
        if self._body:
            head += b"Content-Length: %d\r\n" % len(self._body)
        return head + b"\r\n" + self._body

    async def probe(self, host: str, port: int, host_header: str) -> Outcome:
        timeout = self.active.timeout
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(
                    host,
                    port,
                    ssl=self.ssl,
                    # SNI and the name checked: the Host (Python sends no SNI for an address)
                    server_hostname=host_header if self.ssl is not None else None,
                    limit=_MAX_STATUS_LINE,
                )
        except TimeoutError:
            return "timeout", 0
        except (OSError, ssl.SSLError, ValueError):
            return "tcp", 0
        try:
            if self.active.type == "tcp":
                return "up", 0
            return await self._exchange(reader, writer, host_header, timeout)
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(timeout):
                    await writer.wait_closed()

    async def _exchange(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        host_header: str,
        timeout: float,  # noqa: ASYNC109
    ) -> Outcome:
        try:
            writer.write(self.request(host_header))
            async with asyncio.timeout(timeout):
                await writer.drain()
            async with asyncio.timeout(timeout):
                line = await reader.readuntil(b"\n")
        except TimeoutError:
            return "timeout", 0
        except asyncio.LimitOverrunError:
            return "status", 0
        except (OSError, ssl.SSLError, asyncio.IncompleteReadError):
            return "tcp", 0
        match = _STATUS_LINE.match(line)
        return "status", int(match.group(1)) if match else 0
