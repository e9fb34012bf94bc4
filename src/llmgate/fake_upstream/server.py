"""Running the fake upstream: `serve` inside a loop until cancelled, `run` blocking."""

from __future__ import annotations

import asyncio
import contextlib

from aiohttp import web

from llmgate.fake_upstream.app import build_app
from llmgate.fake_upstream.knobs import FakeSettings


async def serve(host: str, port: int, settings: FakeSettings) -> None:
    """Listen on host:port until cancelled, then close the listener and the connections."""
    runner = web.AppRunner(build_app(settings), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def run(host: str, port: int, settings: FakeSettings) -> None:
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
        runner.run(serve(host, port, settings))
