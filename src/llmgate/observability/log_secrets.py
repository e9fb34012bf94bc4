"""Credentials kept out of log entries: which header and query argument names carry them (the
fixed ones plus those a route's auth plugins read), and headers, query arguments and query
strings with their values masked (``***``).  Used by the access log of the logger plugins
(``access_log.py``, ``log_values.py``) and by the data plane's request log (``request_log.py``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_plus

from llmgate.runtime.snapshot import CHAIN

if TYPE_CHECKING:
    from llmgate.http.context import RequestContext

MASK = "***"
SECRET_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "apikey",
        "api-key",
        "x-api-key",
        "cookie",
        "set-cookie",
    }
)
SECRET_ARGS = frozenset({"api_key", "apikey", "key", "token", "access_token"})


# (header names, query argument names) whose values are credentials, lower-case.
Secrets = tuple[frozenset[str], frozenset[str]]


def auth_names(ctx: RequestContext) -> Secrets:
    """Header and query argument names carrying credentials for this route: the fixed ones plus
    those the route's auth plugins read (key-auth's ``header`` / ``query``)."""
    headers, args = SECRET_HEADERS, SECRET_ARGS
    for plugin in ctx.state[CHAIN].plugins:
        if plugin.kind == "auth":
            header = getattr(plugin.config, "header", None)
            query = getattr(plugin.config, "query", None)
            if isinstance(header, str) and header.lower() not in headers:
                headers = headers | {header.lower()}
            if isinstance(query, str) and query.lower() not in args:
                args = args | {query.lower()}
    return headers, args


def _grouped(pairs: Iterable[tuple[str, str]], secret: frozenset[str]) -> dict[str, Any]:
    """Values by name (a list when repeated), those of ``secret`` names masked."""
    out: dict[str, Any] = {}
    for name, value in pairs:
        shown = MASK if name.lower() in secret else value
        if name not in out:
            out[name] = shown
        elif isinstance(out[name], list):
            out[name].append(shown)
        else:
            out[name] = [out[name], shown]
    return out


def masked_headers(items: Iterable[tuple[str, str]], secret: frozenset[str]) -> dict[str, Any]:
    """Headers by lower-case name (a list when repeated), credentials masked."""
    return _grouped(((name.lower(), value) for name, value in items), secret)


def masked_args(items: Iterable[tuple[str, str]], secret: frozenset[str]) -> dict[str, Any]:
    """Query arguments by name (a list when repeated), credentials masked."""
    return _grouped(items, secret)


def masked_query(raw_query: str, secret: frozenset[str]) -> str:
    """``raw_query`` with the values of credential arguments masked, the rest as sent."""
    if not raw_query:
        return raw_query
    parts = []
    for part in raw_query.split("&"):
        name = part.partition("=")[0]
        parts.append(f"{name}={MASK}" if unquote_plus(name).lower() in secret else part)
    return "&".join(parts)


def masked_request_uri(ctx: RequestContext, secret_args: frozenset[str]) -> str:
    path, mark, query = ctx.inbound.raw_path.partition("?")
    return path + mark + masked_query(query, secret_args)


def masked_upstream_uri(ctx: RequestContext) -> str:
    """APISIX's ``$upstream_uri`` (the path and query sent upstream) with every query value
    masked: a plugin may put a provider's key there (ai-proxy ``auth.query``)."""
    outbound = ctx.outbound
    if not outbound.query:
        return outbound.path
    masked = "&".join(
        f"{part.partition('=')[0]}={MASK}" for part in outbound.query.split("&") if part
    )
    return f"{outbound.path}?{masked}"
