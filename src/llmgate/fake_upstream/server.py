"""Running the fake upstream: `serve` inside a loop until cancelled, `run` blocking.

One port speaks both plain HTTP and HTTPS, so an upstream configured with `"scheme": "https"`
(as for api.openai.com:443) works against the fake unchanged. Each accepted connection is
sniffed: once it is readable its first byte is peeked (not consumed); 0x16, the content type of a
TLS handshake record, means TLS with the self-signed certificate in `tls/`, anything else plain
HTTP. The socket is then handed to aiohttp's low-level server with
`loop.connect_accepted_socket` (`llmgate.http.sniffing`). Every connection is sniffed in its own
task, so one that connects and sends nothing holds up nobody (it is closed after
`sniffing.SNIFF_TIMEOUT` seconds).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from importlib import resources

from aiohttp import web

from llmgate.fake_upstream.app import build_app
from llmgate.fake_upstream.knobs import FakeSettings
from llmgate.http.sniffing import SniffingListener


def server_ssl_context() -> ssl.SSLContext:
    """A server-side TLS context with the fake's self-signed certificate (HTTP/1.1 only)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    folder = resources.files("llmgate.fake_upstream") / "tls"
    with (
        resources.as_file(folder / "fake-cert.pem") as cert,
        resources.as_file(folder / "fake-key.pem") as key,
    ):
        context.load_cert_chain(cert, key)
    context.set_alpn_protocols(["http/1.1"])
    return context


async def serve(
    host: str, port: int, settings: FakeSettings, *, tls: bool = True, announce: bool = False
) -> None:
    """Listen on host:port until cancelled, then close the listener and the connections.

    With `tls` (the default) the port accepts TLS as well as plain HTTP; without, plain HTTP only.
    With `announce`, ``llmgate: fake upstream listening on host:port`` is printed once it listens.
    """
    runner = web.AppRunner(build_app(settings), access_log=None)
    await runner.setup()
    listener: SniffingListener | None = None
    try:
        assert runner.server is not None
        server = runner.server
        listener = SniffingListener(server, server_ssl_context() if tls else None, server)
        await listener.start(host, port)
        if announce:
            print(f"llmgate: fake upstream listening on {host}:{port}", flush=True)
        await asyncio.Event().wait()
    finally:
        if listener is not None:
            await listener.close()
        await runner.cleanup()


def run(
    host: str, port: int, settings: FakeSettings, *, tls: bool = True, announce: bool = False
) -> None:
    """Serve until interrupted, on uvloop when it is installed."""
    try:
        import uvloop
    except ImportError:
        loop_factory = None
    else:
        loop_factory = uvloop.new_event_loop
    with (
        contextlib.suppress(KeyboardInterrupt),
        asyncio.Runner(loop_factory=loop_factory) as runner,
    ):
        runner.run(serve(host, port, settings, tls=tls, announce=announce))
