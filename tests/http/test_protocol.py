"""EdgeProtocol: what a finished request leaves behind."""

from __future__ import annotations

import asyncio
import gc
import weakref

import aiohttp
from aiohttp import web

from llmgate.http.limits import ClientLimits
from llmgate.http.protocol import EdgeServer

_HOLDER = web.RequestKey("test.holder", object)


class _Holder:
    """Like the data plane's request context: kept on the request, referring back to it."""

    def __init__(self, request: web.BaseRequest) -> None:
        self.request = request


async def test_a_finished_request_leaves_no_reference_cycle() -> None:
    held: list[weakref.ref[_Holder]] = []

    async def handler(request: web.BaseRequest) -> web.StreamResponse:
        holder = _Holder(request)
        request[_HOLDER] = holder
        held.append(weakref.ref(holder))
        return web.Response(text="ok")

    loop = asyncio.get_running_loop()
    server = await loop.create_server(EdgeServer(handler, ClientLimits()), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    gc.collect()
    gc.disable()  # what refcounting frees, and nothing else
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(3):
                async with session.get(f"http://127.0.0.1:{port}/") as response:
                    assert await response.text() == "ok"
        await asyncio.sleep(0.05)
        alive = [ref for ref in held if ref() is not None]
    finally:
        gc.enable()
        server.close()
        await server.wait_closed()
    assert len(held) == 3
    assert alive == []
