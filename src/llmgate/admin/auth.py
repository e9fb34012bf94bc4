"""Admin API authentication: ``X-API-KEY`` header or ``?api_key=``, admin and viewer roles."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from llmgate.errors import Unauthorized, error_response


def key_digest(key: str) -> bytes:
    """The SHA-256 of a key: what is kept in memory (and, for a generated key, stored).
    A presented key with surrogates (aiohttp reads bytes that are not UTF-8 as such) hashes
    too, never as a configured key."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()


@dataclass(frozen=True, slots=True, init=False)
class AdminKeys:
    """The admin and viewer keys, held as digests only."""

    admin: bytes
    viewer: bytes | None

    def __init__(self, admin: str, viewer: str | None = None) -> None:
        object.__setattr__(self, "admin", key_digest(admin))
        object.__setattr__(self, "viewer", key_digest(viewer) if viewer is not None else None)

    @classmethod
    def from_digest(cls, admin: bytes, viewer: str | None = None) -> AdminKeys:
        keys = cls("", viewer)
        object.__setattr__(keys, "admin", admin)
        return keys

    def role_of(self, presented: str) -> str | None:
        """ "admin", "viewer" or None; every key is compared, in constant time."""
        given = key_digest(presented)
        is_admin = hmac.compare_digest(given, self.admin)
        is_viewer = self.viewer is not None and hmac.compare_digest(given, self.viewer)
        return "admin" if is_admin else "viewer" if is_viewer else None


_OPEN_PATHS = frozenset({"/healthz", "/readyz", "/healthz/store"})
# Routes answered without a key, by name (the router's match, not a path prefix): the static
# admin UI's files (``admin/ui.py``) and APISIX's ``HEAD /apisix/admin`` probe.
OPEN_ROUTES = frozenset({"ui", "ui-redirect", "admin-head"})
# request[ROLE]: "admin" or "viewer", the role of the key that was presented.
ROLE = web.RequestKey("admin_role", str)


def auth_middleware(keys: AdminKeys) -> Middleware:
    @web.middleware
    async def check_token(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in _OPEN_PATHS or request.match_info.route.name in OPEN_ROUTES:
            return await handler(request)
        presented = request.query.get("api_key") or request.headers.get("X-API-KEY")
        if not presented:
            return error_response(Unauthorized("missing apikey"))
        role = keys.role_of(presented)
        if role is None:
            return error_response(Unauthorized("wrong apikey"))
        if role == "viewer" and request.method not in ("GET", "HEAD"):
            return error_response(Unauthorized("invalid method for role viewer"))
        request[ROLE] = role
        return await handler(request)

    return check_token
