"""APISIX/nginx variables (``$remote_addr``, ``$uri``, ``$arg_x``, ``$http_x``...) and templates.

``lookup`` reads one variable from a request context; ``Template`` is a string with ``$var`` or
``${var}`` references, compiled once per snapshot and rendered per request.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from llmgate.proxy.context import RequestContext


def _remote_addr(ctx: RequestContext) -> str | None:
    return ctx.inbound.remote


def _remote_port(ctx: RequestContext) -> str | None:
    peer = ctx.inbound.transport.get_extra_info("peername") if ctx.inbound.transport else None
    return str(peer[1]) if peer and len(peer) > 1 else None


def _server_addr(ctx: RequestContext) -> str | None:
    sock = ctx.inbound.transport.get_extra_info("sockname") if ctx.inbound.transport else None
    return str(sock[0]) if sock else None


def _server_port(ctx: RequestContext) -> str | None:
    sock = ctx.inbound.transport.get_extra_info("sockname") if ctx.inbound.transport else None
    return str(sock[1]) if sock and len(sock) > 1 else None


def _host(ctx: RequestContext) -> str | None:
    host = ctx.inbound.headers.get("Host")
    if host is None:
        return None
    if host.startswith("["):
        return host[: host.find("]") + 1].lower()
    return host.rsplit(":", 1)[0].lower() if host.count(":") == 1 else host.lower()


def _request_uri(ctx: RequestContext) -> str:
    return ctx.inbound.raw_path


def _query_string(ctx: RequestContext) -> str:
    return ctx.inbound.query_string


_SIMPLE: dict[str, Callable[[RequestContext], str | None]] = {
    "remote_addr": _remote_addr,
    "remote_port": _remote_port,
    "server_addr": _server_addr,
    "server_port": _server_port,
    "host": _host,
    "uri": lambda ctx: ctx.inbound.path,
    "request_uri": _request_uri,
    "request_method": lambda ctx: ctx.inbound.method,
    "query_string": _query_string,
    "args": _query_string,
    "scheme": lambda ctx: ctx.inbound.scheme,
    "server_protocol": lambda ctx: f"HTTP/{ctx.inbound.version.major}.{ctx.inbound.version.minor}",
    "http_host": lambda ctx: ctx.inbound.headers.get("Host"),
    "consumer_name": lambda ctx: ctx.consumer.username if ctx.consumer else None,
    "route_id": lambda ctx: ctx.route.id,
    "route_name": lambda ctx: ctx.route.name,
    "upstream_addr": lambda ctx: ctx.upstream_addr,
    "status": lambda ctx: str(ctx.status) if ctx.status else None,
    "upstream_status": lambda ctx: str(ctx.upstream_status) if ctx.upstream_status else None,
    "request_id": lambda ctx: ctx.state.get("request_id"),
    "apisix_request_id": lambda ctx: ctx.state.get("request_id"),
}


def lookup(ctx: RequestContext, name: str) -> str | None:
    """The value of variable ``name`` (without ``$``) for this request, None when unset."""
    simple = _SIMPLE.get(name)
    if simple is not None:
        return simple(ctx)
    if name.startswith("arg_"):
        return ctx.inbound.query.get(name[4:])
    if name.startswith("http_"):
        return ctx.inbound.headers.get(name[5:].replace("_", "-"))
    if name.startswith("cookie_"):
        return ctx.inbound.cookies.get(name[7:])
    if name.startswith("post_arg_"):
        return None  # form bodies are never parsed on the hot path
    return None


_REFERENCE = re.compile(r"\$\{([A-Za-z0-9_]+)\}|\$([A-Za-z][A-Za-z0-9_]*)")


@dataclass(frozen=True, slots=True)
class Template:
    """A string with ``$var`` references, split once into literal and variable parts."""

    parts: tuple[tuple[bool, str], ...]  # (is_variable, text or variable name)

    @classmethod
    def compile(cls, text: str) -> Template:
        parts: list[tuple[bool, str]] = []
        position = 0
        for match in _REFERENCE.finditer(text):
            if match.start() > position:
                parts.append((False, text[position : match.start()]))
            parts.append((True, match.group(1) or match.group(2)))
            position = match.end()
        if position < len(text):
            parts.append((False, text[position:]))
        return cls(tuple(parts))

    @property
    def is_literal(self) -> bool:
        return all(not is_var for is_var, _ in self.parts)

    def render(self, ctx: RequestContext) -> str:
        """The text with each variable's value (an unset variable renders as "")."""
        if len(self.parts) == 1:
            is_var, text = self.parts[0]
            return (ctx.var(text) or "") if is_var else text
        return "".join((ctx.var(text) or "") if is_var else text for is_var, text in self.parts)
