"""Admin API CORS, as APISIX's ``deployment.admin.enable_admin_cors`` (on by default).

Every answer under ``/apisix/admin`` carries APISIX's headers, errors included, and a
preflight (any ``OPTIONS``) is answered 200 at once, before the key is checked: a browser
never sends a key with a preflight.

The origin is ``*``, never the caller's origin reflected: browsers refuse ``*`` for requests
sent with credentials (cookies, TLS client certificates), so another site can only call the
admin API the way any client can, with the key, which it does not have.  The
``Access-Control-Allow-Credentials: true`` that APISIX adds is kept for fidelity; with ``*``
it grants nothing.
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

ADMIN_PREFIX = "/apisix/admin"

# apisix/init.lua, cors_admin()
PREFLIGHT_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "POST, GET, PUT, OPTIONS, DELETE, PATCH",
    "Access-Control-Max-Age": "3600",
    "Access-Control-Allow-Headers": "*",
    "Access-Control-Allow-Credentials": "true",
}
RESPONSE_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Credentials": "true",
    "Access-Control-Expose-Headers": "*",
    "Access-Control-Max-Age": "3600",
}


def _is_admin(request: web.Request) -> bool:
    path = request.path
    return path == ADMIN_PREFIX or path.startswith(ADMIN_PREFIX + "/")


def cors_middleware() -> Middleware:
    """Answer admin preflights and add APISIX's CORS headers to every admin answer.  Goes
    first among the admin middlewares, so that it runs before the key is checked."""

    @web.middleware
    async def admin_cors(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not _is_admin(request):
            return await handler(request)
        if request.method == "OPTIONS":
            return web.Response(status=200, headers=PREFLIGHT_HEADERS, content_type="text/plain")
        try:
            response = await handler(request)
        except web.HTTPException as exc:  # the router's own 404/405
            exc.headers.update(RESPONSE_HEADERS)
            raise
        response.headers.update(RESPONSE_HEADERS)
        return response

    return admin_cors
