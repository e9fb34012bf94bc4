"""The aiohttp server of a listener: ``EdgeServer`` makes its connections (``EdgeProtocol``,
held to nginx's client limits: ``http.protocol``) and its requests (``EdgeRequest``).

- aiohttp's parser is held to nginx's line and header limits (``http.head_limits``);
- answers say ``Server: llmgate/<version>`` (``SERVER``), as APISIX's say ``APISIX/<version>``,
  not aiohttp's ``Python/3.x aiohttp/3.x``, which told every client the stack and its versions;
- answers name the connection's fate, ``Connection: keep-alive`` or ``close``, as nginx's do
  (``name_connection``; aiohttp leaves it out where HTTP's default says it).
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web, web_response
from aiohttp.web_protocol import RequestHandler

from llmgate import __version__
from llmgate.http.answers import UNTYPED, name_connection
from llmgate.http.head_limits import MAX_FIELD, MAX_HEADERS, MAX_REQUEST_LINE
from llmgate.http.limits import ClientLimits, ConnectionBudget
from llmgate.http.protocol import EdgeProtocol, Handler

_AIOHTTP_IDLE = 10.0**9  # seconds
SERVER = f"llmgate/{__version__}"


class EdgeRequest(web.BaseRequest):
    """A request of an ``EdgeServer`` without an application (the data plane)."""

    async def _prepare_hook(self, response: web.StreamResponse) -> None:
        name_connection(self, response)
        # (The response's dict read directly: ``response.get`` looks the key up through
        # ``Mapping.get``, raising and catching a KeyError for nearly every response.)
        if response._state.get(UNTYPED):
            response.headers.popall("Content-Type", None)


class EdgeServer(web.Server):
    """aiohttp's low-level server, making ``EdgeProtocol`` connections held to ``limits``."""

    def __init__(
        self,
        handler: Handler,
        limits: ClientLimits,
        *,
        max_connections: int | None = None,
        **kwargs: Any,
    ) -> None:
        options: dict[str, Any] = {
            "access_log": None,
            # aiohttp's idle timer never fires: ``EdgeProtocol`` closes idle connections.
            "keepalive_timeout": _AIOHTTP_IDLE,
            "max_line_size": MAX_REQUEST_LINE,
            "max_field_size": MAX_FIELD,
            "max_headers": MAX_HEADERS,
        }
        options.update(kwargs)
        super().__init__(handler, **options)
        # What aiohttp puts in the Server header of every answer that has none (its default
        # names Python, aiohttp and their versions).
        web_response.SERVER_SOFTWARE = SERVER  # type: ignore[attr-defined]
        self._options = {k: v for k, v in options.items() if k not in _SERVER_ONLY}
        self.limits = limits
        # Connections accepted and not yet closed; past the cap a new one is reset at once.
        # The HTTPS listener takes its connections' slots here too, from their accept on.
        self.budget = ConnectionBudget(max_connections or limits.connection_cap())

    def _make_request(
        self,
        message: Any,
        payload: Any,
        protocol: RequestHandler,
        writer: Any,
        task: asyncio.Task[None],
    ) -> web.BaseRequest:
        return EdgeRequest(message, payload, protocol, writer, task, self._loop)

    def __call__(self) -> RequestHandler:
        return EdgeProtocol(self, self.limits, self.budget, loop=self._loop, **self._options)


_SERVER_ONLY = frozenset({"request_factory", "handler_cancellation", "loop"})
