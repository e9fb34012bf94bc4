"""APISIX/nginx variables (``$remote_addr``, ``$uri``, ``$arg_x``, ``$http_x``...) and templates.

``request_variable`` reads a variable of the client's request alone; ``RouteVariables`` offers
those to route conditions, evaluated before a request context exists; ``Template`` is a string
with ``$var`` or ``${var}`` references, compiled once per snapshot and rendered per request from
anything with a ``var(name)`` method (the request context, ``http/context.py``, whose ``var``
adds the variables a request learns as it runs: its route, consumer, status...).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from aiohttp import web

    from llmgate.http.paths import RequestTarget


class Variables(Protocol):
    """What a template renders from: a request context (``RequestContext.var``)."""

    def var(self, name: str) -> str | None: ...


# Variables of the client's request alone: known before a route is matched, so route
# conditions (``vars``, ``remote_addrs``) can test them.


def _remote_port(request: web.BaseRequest) -> str | None:
    peer = request.transport.get_extra_info("peername") if request.transport else None
    return str(peer[1]) if peer and len(peer) > 1 else None


def _server_addr(request: web.BaseRequest) -> str | None:
    sock = request.transport.get_extra_info("sockname") if request.transport else None
    return str(sock[0]) if sock else None


def _server_port(request: web.BaseRequest) -> str | None:
    sock = request.transport.get_extra_info("sockname") if request.transport else None
    return str(sock[1]) if sock and len(sock) > 1 else None


def _server_protocol(request: web.BaseRequest) -> str:
    return f"HTTP/{request.version.major}.{request.version.minor}"


# The request target as the gateway routed it (nginx's ``$uri`` and ``$host``; APISIX's
# ``$request_uri`` is the normalised path with the query, ``$real_request_uri`` as sent).
_TARGET: dict[str, Callable[[RequestTarget], str | None]] = {
    "uri": lambda target: target.uri,
    "host": lambda target: target.host,
    "request_uri": lambda target: target.request_uri,
    "real_request_uri": lambda target: target.real_request_uri,
}

_REQUEST: dict[str, Callable[[web.BaseRequest], str | None]] = {
    "remote_addr": lambda request: request.remote,
    "remote_port": _remote_port,
    "server_addr": _server_addr,
    "server_port": _server_port,
    "request_method": lambda request: request.method,
    "query_string": lambda request: request.query_string,
    "args": lambda request: request.query_string,
    "scheme": lambda request: request.scheme,
    "server_protocol": _server_protocol,
    "http_host": lambda request: request.headers.get("Host"),
}


def request_variable(request: web.BaseRequest, target: RequestTarget, name: str) -> str | None:
    """The value of variable ``name`` (without ``$``) that only the client's request (and its
    ``target``) determines; None when unset or when it needs more than the request."""
    by_target = _TARGET.get(name)
    if by_target is not None:
        return by_target(target)
    getter = _REQUEST.get(name)
    if getter is not None:
        return getter(request)
    if name.startswith("arg_"):
        return request.query.get(name[4:])
    if name.startswith("http_"):
        return request.headers.get(name[5:].replace("_", "-"))
    if name.startswith("cookie_"):
        return request.cookies.get(name[7:])
    return None  # post_arg_*: form bodies are never parsed on the hot path


class RouteVariables:
    """What route conditions read, before there is a request context: the request's own
    variables, ``uri`` being the normalised path the router matches on.  Callable as a
    ``Lookup``."""

    __slots__ = ("request", "target")

    def __init__(self, request: web.BaseRequest, target: RequestTarget) -> None:
        self.request = request
        self.target = target

    def __call__(self, name: str) -> str | None:
        return request_variable(self.request, self.target, name)


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

    def render(self, ctx: Variables) -> str:
        """The text with each variable's value (an unset variable renders as "")."""
        if len(self.parts) == 1:
            is_var, text = self.parts[0]
            return (ctx.var(text) or "") if is_var else text
        return "".join((ctx.var(text) or "") if is_var else text for is_var, text in self.parts)
