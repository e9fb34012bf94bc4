"""Upstream handlers that send a chat stream in awkward ways, shared by the runtime tests of the
LLM plugins (ai-proxy, openai-compatible)."""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Awaitable, Callable

from aiohttp import web

FIRST_EVENT = b'data: {"choices":[{"delta":{"content":"hi"}}]}\n\n'


def gzip_stream(release: asyncio.Event) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """A provider that gzips its stream anyway: ``FIRST_EVENT`` flushed at once, ``[DONE]``
    once ``release`` is set."""

    async def compressed(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Content-Encoding": "gzip"}
        )
        await response.prepare(request)
        gzip = zlib.compressobj(wbits=31)
        await response.write(gzip.compress(FIRST_EVENT) + gzip.flush(zlib.Z_SYNC_FLUSH))
        await release.wait()
        await response.write(gzip.compress(b"data: [DONE]\n\n") + gzip.flush())
        return response

    return compressed
