"""Admin API authentication: ``X-API-KEY`` header or ``?api_key=``, admin and viewer roles."""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from aiohttp import web
from aiohttp.typedefs import Handler

from llmgate.errors import Unauthorized, error_response


@dataclass(frozen=True, slots=True)
class AdminKeys:
    admin: str
    viewer: str | None = None

    def role_of(self, presented: str) -> str | None:
        """ "admin", "viewer" or None; every key is compared, in constant time."""
        given = presented.encode()
        is_admin = hmac.compare_digest(given, self.admin.encode())
        is_viewer = self.viewer is not None and hmac.compare_digest(given, self.viewer.encode())
        return "admin" if is_admin else "viewer" if is_viewer else None


_OPEN_PATHS = frozenset({"/healthz", "/readyz"})


def auth_middleware(keys: AdminKeys) -> web.middleware:
    @web.middleware
    async def check_token(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in _OPEN_PATHS:
            return await handler(request)
        presented = request.query.get("api_key") or request.headers.get("X-API-KEY")
        if not presented:
            return error_response(Unauthorized("missing apikey"))
        role = keys.role_of(presented)
        if role is None:
            return error_response(Unauthorized("wrong apikey"))
        if role == "viewer" and request.method not in ("GET", "HEAD"):
            return error_response(Unauthorized("invalid method for role viewer"))
        return await handler(request)

    return check_token
