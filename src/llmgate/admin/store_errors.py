"""Database errors answer 503 ``{"error_msg": "store unavailable: …"}``, never a bare 500; a
value the database refuses answers 400 ``{"error_msg": "invalid value: …"}``.

Any admin request (a resource's GET, PUT…, ``/usage``) that meets a database error — the
store refusing connections, a connection cut mid-query, a timeout — gets a JSON 503 whose
message says why in one line (the driver's message, without SQL or parameters).  The process's
``StoreState`` hears of it, so the log says it once per change of state, not once per request
(its probe, or the data plane's watcher, says when the store answers again).

A value the database refuses (``store.data_errors``: a string longer than its column, a number
out of range, a NUL byte in PostgreSQL text) is the client's error, not the store's: a 400 that
names the problem without repeating the value, and the store stays "ok".  A write that meets
one is rolled back whole.
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from llmgate.errors import BadRequest, HttpError, error_response
from llmgate.store.data_errors import invalid_value
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
            reason = invalid_value(exc)
            if reason is not None:
                return error_response(BadRequest(f"invalid value: {reason}"))
            if not is_store_error(exc):
                raise
            state.failed(exc)
            return error_response(StoreUnavailable(describe(exc)))

    return store_errors
