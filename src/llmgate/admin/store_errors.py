"""Database errors answer 503 ``{"error_msg": "store unavailable: …"}``, never a bare 500.

Any admin request (a resource's GET, PUT…, ``/usage``) that meets a database error — the
store refusing connections, a connection cut mid-query, a timeout — gets a JSON 503 whose
message says why in one line (the driver's message, without SQL or parameters).  The process's
``StoreState`` hears of it, so the log says it once per change of state, not once per request
(its probe, or the data plane's watcher, says when the store answers again).
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from llmgate.errors import HttpError, error_response
from llmgate.store.health import StoreState, describe, is_store_error


class StoreUnavailable(HttpError):
    status = 503

    def __init__(self, reason: str) -> None:
        super().__init__({"error_msg": f"store unavailable: {reason}"})


def store_errors_middleware(state: StoreState) -> Middleware:
    @web.middleware
    async def store_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPException:
            raise
        except Exception as exc:
            if not is_store_error(exc):
                raise
            state.failed(exc)
            return error_response(StoreUnavailable(describe(exc)))

    return store_errors
