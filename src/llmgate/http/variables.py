"""APISIX/nginx variables (``$remote_addr``, ``$uri``, ``$arg_x``, ``$http_x``...) and templates.

``request_variable`` reads a variable of the client's request alone; ``RouteVariables`` offers
those to route conditions, evaluated before a request context exists; ``Template`` is a string
with ``$var`` or ``${var}`` references, compiled once per snapshot and rendered per request from
anything with a ``var(name)`` method (the request context, ``http/context.py``, whose ``var``
adds the variables a request learns as it runs: its route, consumer, status...).
"""

from __future__ import annotations

import binascii
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Protocol

# The parser of aiohttp's ``request.cookies`` (RFC 6265, names with special characters
# accepted), for the lines ``request.cookies`` does not read.
from aiohttp._cookie_helpers import parse_cookie_header
from yarl import URL

if TYPE_CHECKING:
    from aiohttp import web
    from multidict import CIMultiDict, CIMultiDictProxy

    from llmgate.http.paths import RequestTarget


class Variables(Protocol):
    """What a template renders from: a request context (``RequestContext.var``)."""

    def var(self, name: str) -> str | None: ...


# Variables of the client's request alone: known before a route is matched, so route
# conditions (``vars``, ``remote_addrs``) can test them.


# The connection's addresses as aiohttp keeps them, read once per connection: asking the
# transport costs a system call (getpeername, getsockname) and a socket object each time.


def _remote_port(request: web.BaseRequest) -> str | None:
    peer = request.protocol.peername
    return str(peer[1]) if peer and len(peer) > 1 else None


def _server_addr(request: web.BaseRequest) -> str | None:
    sock = request.protocol.sockname
    return str(sock[0]) if sock else None


def server_port(request: web.BaseRequest) -> str | None:
    """nginx's ``$server_port``: the port the request came in on."""
    sock = request.protocol.sockname
    return str(sock[1]) if sock and len(sock) > 1 else None


def _server_protocol(request: web.BaseRequest) -> str:
    return f"HTTP/{request.version.major}.{request.version.minor}"


_BASE64 = re.compile(rb"[A-Za-z0-9+/]*")


def remote_user(request: web.BaseRequest) -> str | None:
    """nginx's ``$remote_user``: the user name of a ``Basic`` Authorization header, whether or
    not it is a valid credential, never its password (what follows the first ``:``).  None
    without such a header or when it does not decode (base64 padding may be left out, as
    nginx's ``ngx_decode_base64`` allows)."""
    header = request.headers.get("Authorization")
    if header is None or len(header) < 6 or header[:6].lower() != "basic ":
        return None
    encoded = header[6:].lstrip(" ").encode("latin-1", "replace").rstrip(b"=")
    if not encoded or len(encoded) % 4 == 1 or not _BASE64.fullmatch(encoded):
        return None
    try:
        decoded = binascii.a2b_base64(encoded + b"=" * (-len(encoded) % 4))
    except binascii.Error:
        return None
    user, colon, _ = decoded.partition(b":")
    return user.decode("utf-8", "replace") if colon else None


@cache
def _hostname() -> str:
    """nginx's ``$hostname``: the machine's name (``gethostname``), read once."""
    return socket.gethostname()


# The request target as the gateway routed it (nginx's ``$uri`` and ``$host``; APISIX's
# ``$request_uri`` is the normalised path with the query, ``$real_request_uri`` as sent).
_TARGET: dict[str, Callable[[RequestTarget], str | None]] = {
    "uri": lambda target: target.uri,
    "host": lambda target: target.host,
    "request_uri": lambda target: target.request_uri,
    "real_request_uri": lambda target: target.real_request_uri,
    "document_uri": lambda target: target.uri,
}

_REQUEST: dict[str, Callable[[web.BaseRequest], str | None]] = {
    "remote_addr": lambda request: request.remote,
    "remote_port": _remote_port,
    "server_addr": _server_addr,
    "server_port": server_port,
    "request_method": lambda request: request.method,
    "query_string": lambda request: request.query_string,
    "args": lambda request: request.query_string,
    "scheme": lambda request: request.scheme,
    "server_protocol": _server_protocol,
    "http_host": lambda request: request.headers.get("Host"),
    "content_type": lambda request: request.headers.get("Content-Type"),
    "content_length": lambda request: request.headers.get("Content-Length"),
    "is_args": lambda request: "?" if request.query_string else "",
    "remote_user": remote_user,
    "hostname": lambda request: _hostname(),
    # APISIX's data-plane server block is ``server_name _;`` (apisix/cli/ngx_tpl.lua).
    "server_name": lambda request: "_",
}


# The variables a query set by a plugin changes (APISIX's ``core.request.set_uri_args``).
_ARGS_VARS = frozenset({"args", "query_string", "is_args"})


def is_args_variable(name: str) -> bool:
    """Whether variable ``name`` reads the query (``$args``, ``$arg_<name>``...)."""
    return name in _ARGS_VARS or name.startswith("arg_")


def args_variable(query: str, name: str) -> str | None:
    """The value of query variable ``name`` for ``query`` (raw, as in a request target),
    parsed as aiohttp parses a request's query: the first of a repeated argument."""
    if name == "is_args":
        return "?" if query else ""
    if name.startswith("arg_"):
        return URL.build(query_string=query, encoded=True).query.get(name[4:])
    return query


def _header(request: web.BaseRequest, name: str) -> str | None:
    """``$http_<name>``: a repeated header's lines joined as nginx (>= 1.23) does, with "; "
    for Cookie and ", " for the rest (one ``getall``: a single line costs no more)."""
    return header_value(request.headers, name)


def header_value(headers: CIMultiDictProxy[str] | CIMultiDict[str], name: str) -> str | None:
    """A header's value as nginx's ``$http_``, ``$sent_http_`` and ``$upstream_http_<name>``
    give it: the lines of a repeated header joined ("; " for Cookie, else ", ")."""
    values = headers.getall(name, None)
    if values is None:
        return None
    if len(values) == 1:
        return values[0]
    return ("; " if name.lower() == "cookie" else ", ").join(values)


def cookie(request: web.BaseRequest, name: str) -> str | None:
    """``$cookie_<name>``: the cookie in any Cookie line, read from the lines joined as
    ``$http_cookie`` (nginx >= 1.23 joins them with "; "), parsed as aiohttp parses one line
    (the last of a repeated name wins, as in APISIX's resty.cookie).  One line: aiohttp's
    cookies of the request, parsed once."""
    lines = request.headers.getall("Cookie", None)
    if lines is None:
        return None
    if len(lines) == 1:
        return request.cookies.get(name)
    found = None
    for key, morsel in parse_cookie_header(_header(request, "Cookie") or ""):
        if key == name:
            found = morsel.value
    return found


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
        return _header(request, name[5:].replace("_", "-"))
    if name.startswith("cookie_"):
        return cookie(request, name[7:])
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


# APISIX's resolve_var: ``$name`` (ASCII letters, digits, ``_`` and ``.``), ``${name}`` or
# ``${name ?? default}`` (spaces around the name and the ``??`` are dropped); a ``$`` right
# after a backslash is literal text, the backslash kept.
_REFERENCE = re.compile(r"(?<!\\)\$(?:\{[ \t\n\r\f\v]*([^}]+?)[ \t\n\r\f\v]*\}|([A-Za-z0-9_.]+))")
_DEFAULT = re.compile(r"[ \t\n\r\f\v]*\?\?[ \t\n\r\f\v]*")


@dataclass(frozen=True, slots=True)
class Reference:
    """A variable in a template: ``$name``, ``${name}``, or ``${name ?? default}`` (the
    default when the variable is unset)."""

    name: str
    default: str | None = None

    @classmethod
    def parse(cls, text: str) -> Reference:
        """``name`` or ``name ?? default`` (split as ngx.re.split does: trailing empty fields
        dropped, so ``${a??}`` has no default)."""
        fields = _DEFAULT.split(text)
        while fields and not fields[-1]:
            fields.pop()
        return cls(fields[0] if fields else "", fields[1] if len(fields) > 1 else None)

    def value(self, lookup: Callable[[str], str | None]) -> str | None:
        value = lookup(self.name)
        return self.default if value is None else value


@dataclass(frozen=True, slots=True)
class Template:
    """A string with ``$var`` references (APISIX's ``core.utils.resolve_var``), split once into
    literal text and ``Reference`` parts."""

    parts: tuple[str | Reference, ...]

    @classmethod
    def compile(cls, text: str) -> Template:
        parts: list[str | Reference] = []
        position = 0
        for match in _REFERENCE.finditer(text):
            if match.start() > position:
                parts.append(text[position : match.start()])
            braced = match.group(1)
            parts.append(Reference.parse(braced) if braced is not None else Reference(match[2]))
            position = match.end()
        if position < len(text):
            parts.append(text[position:])
        return cls(tuple(parts))

    @property
    def is_literal(self) -> bool:
        return all(isinstance(part, str) for part in self.parts)

    def render(self, ctx: Variables) -> str:
        """The text with each variable's value (an unset variable without a default renders
        as "")."""
        return self.expand(ctx.var)

    def resolve(self, lookup: Callable[[str], str | None]) -> str | None:
        """The text as ``expand`` gives it, or None when no variable in it has a value (nor a
        default): APISIX's ``resolve_var`` resolving none (``n_resolved == 0``)."""
        out = []
        resolved = False
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
                continue
            value = part.value(lookup)
            if value is not None:
                resolved = True
                out.append(value)
        return "".join(out) if resolved else None

    def expand(
        self, lookup: Callable[[str], str | None], escape: Callable[[str], str] | None = None
    ) -> str:
        """The text with each variable's value from ``lookup``, passed through ``escape``."""
        out = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
                continue
            value = part.value(lookup)
            if value:
                out.append(escape(value) if escape is not None else value)
        return "".join(out)


def chash_key_reader(hash_on: str, key: str | None) -> Callable[[Variables], str | None]:
    """How chash reads a request's key, as APISIX's ``fetch_chash_hash_key``: the consumer's
    name, ``$http_<key>`` (a repeated header's lines joined), ``$cookie_<key>``, the variable
    ``key`` or the template ``key`` (vars_combinations: when none of its variables has a value);
    the client's address when that has none, so keyless requests spread by client instead of
    all hashing "" onto one node."""
    if hash_on == "vars_combinations":
        template = Template.compile(key or "")

        def combination(ctx: Variables) -> str | None:
            value = template.resolve(ctx.var)
            return value if value is not None else ctx.var("remote_addr")

        return combination
    if hash_on == "consumer":
        name = "consumer_name"
    elif hash_on in ("header", "cookie"):
        name = f"{'http' if hash_on == 'header' else 'cookie'}_{key}"
    else:
        name = (key or "remote_addr").removeprefix("$")

    def variable(ctx: Variables) -> str | None:
        value = ctx.var(name)
        return value if value is not None else ctx.var("remote_addr")

    return variable
