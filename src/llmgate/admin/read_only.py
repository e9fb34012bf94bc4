"""A read-only admin API (``serve --standalone``): reads work, writes answer 405."""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from llmgate.errors import MethodNotAllowed, error_response

_READS = frozenset({"GET", "HEAD", "OPTIONS"})
# POST, but writes nothing: checking a config is as useful with a read-only admin API.
_VALIDATE = "/apisix/admin/schema/validate/"


def read_only_middleware(reason: str) -> Middleware:
    """Refuse every admin write with 405 ``{"error_msg": reason}``."""

    @web.middleware
    async def refuse_writes(request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path
        if (
            request.method not in _READS
            and path.startswith("/apisix/admin")
            and not path.startswith(_VALIDATE)
        ):
            return error_response(MethodNotAllowed(reason))
        return await handler(request)

    return refuse_writes
