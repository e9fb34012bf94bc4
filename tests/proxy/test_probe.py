"""Active health-check probes against small raw servers (and the fake's TLS port)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from llmgate.proxy.probe import Prober
from llmgate.schemas.checks import ActiveCheck
from tests.processes import fake_upstream_process, free_port

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def serve(handler: Handler) -> tuple[asyncio.Server, int]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


def prober(**conf: object) -> Prober:
    return Prober(ActiveCheck.model_validate(conf))


async def test_http_probe_sends_what_apisix_sends_and_reads_the_status() -> None:
    seen: list[bytes] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        body = await reader.readexactly(4) if b"Content-Length: 4" in head else b""
        seen.append(head + body)
        writer.write(b"HTTP/1.1 503 Unavailable\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    server, port = await serve(answer)
    probe = prober(
        http_method="POST",
        http_path="/healthz?deep=1",
        http_req_body="ping",
        req_headers=["Authorization: Bearer k", "X-Probe: 1"],
    )
    assert await probe.probe("127.0.0.1", port, "api.example") == ("status", 503)
    server.close()
    assert seen == [
        b"POST /healthz?deep=1 HTTP/1.1\r\nConnection: close\r\nAuthorization: Bearer k\r\n"
        b"X-Probe: 1\r\nHost: api.example\r\nContent-Length: 4\r\n\r\nping"
    ]


async def test_outcomes_of_failures() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)

    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.close()

    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"SSH-2.0-OpenSSH\r\n")
        await writer.drain()
        writer.close()

    probe = prober(timeout=0.3)
    assert await probe.probe("127.0.0.1", free_port(), "h") == ("tcp", 0)
    for handler, outcome in ((silent, ("timeout", 0)), (hang_up, ("tcp", 0)), (garbage, ("status", 0))):  # fmt: skip
        server, port = await serve(handler)
        began = time.monotonic()
        assert await probe.probe("127.0.0.1", port, "h") == outcome
        assert time.monotonic() - began < 3
        server.close()


async def test_tcp_probe_only_connects() -> None:
    server, port = await serve(lambda r, w: asyncio.sleep(0))
    assert await prober(type="tcp").probe("127.0.0.1", port, "h") == ("up", 0)
    server.close()
    assert await prober(type="tcp").probe("127.0.0.1", port, "h") == ("tcp", 0)


async def test_https_probe_verifies_certificates_unless_told_not_to() -> None:
    with fake_upstream_process() as port:  # plain and TLS on one port, self-signed
        lax = prober(type="https", https_verify_certificate=False, http_path="/__fake/health")
        assert await lax.probe("127.0.0.1", port, "localhost") == ("status", 200)
        strict = prober(type="https", http_path="/__fake/health")
        assert await strict.probe("127.0.0.1", port, "localhost") == ("tcp", 0)


async def test_attacker_an_endless_status_line_costs_bounded_memory_and_time() -> None:
    """A node (compromised, or not an HTTP server) that streams bytes without a newline."""

    async def flood(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        try:
            for _ in range(10_000):
                writer.write(b"H" * 65536)
                await writer.drain()
        except ConnectionError:
            pass

    server, port = await serve(flood)
    began = time.monotonic()
    assert await prober(timeout=2).probe("127.0.0.1", port, "h") == ("status", 0)
    assert time.monotonic() - began < 3
    server.close()
