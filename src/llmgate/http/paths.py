"""The request target as nginx reads it: the normalised path (``$uri``), the query, the host.

    parse_target("/public/%2e%2e/v1/x?a=1", "API.example.:9080")
        -> RequestTarget(uri="/v1/x", raw_path="/public/%2e%2e/v1/x", query="a=1",
                         host="api.example", ...)

``normalize_path`` does what nginx's ``ngx_http_parse_complex_uri`` does to ``$uri``: every
``%XX`` is decoded (``%00`` and a malformed escape are a 400), ``.`` and ``..`` segments are
resolved (climbing above ``/`` is a 400), runs of ``/`` are merged (``merge_slashes``), and a
``#`` ends the path.  One deliberate difference: ``\\`` (raw or ``%5C``) is a separator, as in
nginx on Windows and in WHATWG URL parsers, so ``..%5C`` cannot climb in an upstream that
reads it that way.  The path is routed on and forwarded in that form, re-escaped by
``escape_path`` (APISIX's ``uri_safe_encode``), so an upstream that decodes it once sees the
very path the gateway routed.

``canonical_host`` is nginx's ``ngx_http_validate_host`` (1.29.4, RFC 3986 host syntax):
lower-cased, the port and one trailing dot dropped; ``..``, a character outside a reg-name
(``/``, ``\\``, ``@``, quotes, spaces, controls, non-ASCII) or a bad port is a 400.

Everything here is a pure function of its arguments (``parse_target`` remembers the latest
targets it parsed).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from llmgate.errors import BadRequest

__all__ = [
    "BadTarget",
    "RequestTarget",
    "canonical_host",
    "check_target",
    "escape_path",
    "normalize_path",
    "parse_target",
]


class BadTarget(BadRequest):
    """400 ``{"error_msg": ...}``: a request target or Host that cannot be served."""


# What nginx's ngx_escape_uri (NGX_ESCAPE_URI) escapes in a path: controls, space, "#", "%",
# "?", DEL and every non-ASCII byte.
_PATH_ESCAPED = frozenset(range(0x21)) | {0x23, 0x25, 0x3F} | frozenset(range(0x7F, 0x100))
_PATH_BYTE = tuple(f"%{b:02X}" if b in _PATH_ESCAPED else chr(b) for b in range(256))
_HEX = frozenset(b"0123456789abcdefABCDEF")
# Bytes that never belong in a request target the gateway sends: controls, space, DEL.
_UNSAFE_TARGET = frozenset(chr(b) for b in (*range(0x21), 0x7F))


def escape_path(path: str) -> str:
    """``path`` percent-encoded as APISIX's ``uri_safe_encode`` (nginx's ``ngx_escape_uri``).

    ``path`` may hold any byte decoded from the client's escapes (as surrogates for bytes that
    are not UTF-8); each comes back as the same escape.
    """
    return "".join(_PATH_BYTE[b] for b in path.encode("utf-8", "surrogateescape"))


def _decode(path: str) -> str:
    """``path`` with every ``%XX`` decoded; bytes that are not UTF-8 stay as surrogates."""
    raw = path.encode("utf-8", "surrogateescape")
    out = bytearray()
    i = 0
    end = len(raw)
    while i < end:
        byte = raw[i]
        if byte != 0x25:  # "%"
            out.append(byte)
            i += 1
            continue
        if i + 2 >= end or raw[i + 1] not in _HEX or raw[i + 2] not in _HEX:
            raise BadTarget("invalid escape in the request path")
        value = int(raw[i + 1 : i + 3], 16)
        if value == 0:
            raise BadTarget("invalid escape in the request path")
        out.append(value)
        i += 3
    return out.decode("utf-8", "surrogateescape")


def normalize_path(path: str, merge_slashes: bool = True) -> str:
    """nginx's ``$uri`` of ``path`` (the target's path, without its query string).

    Raises ``BadTarget`` for a malformed escape, ``%00``, a path that does not start with
    ``/``, or one whose ``..`` segments climb above ``/``.
    """
    fragment = path.find("#")
    if fragment >= 0:
        path = path[:fragment]
    if not path.startswith(("/", "\\")):
        raise BadTarget("the request path must start with /")
    if (
        "%" not in path
        and "/." not in path
        and "\\" not in path
        and (not merge_slashes or "//" not in path)
    ):
        return path  # already normal: the common case costs four scans
    decoded = _decode(path) if "%" in path else path
    segments = decoded.replace("\\", "/").split("/")
    last = len(segments) - 1
    out: list[str] = []
    for index in range(1, last + 1):
        segment = segments[index]
        if segment == "..":
            if not out:
                raise BadTarget("the request path climbs above /")
            out.pop()
            if index == last:
                out.append("")
        elif segment == ".":
            if index == last:
                out.append("")
        elif segment or index == last or not merge_slashes:
            out.append(segment)
    return "/" + "/".join(out)


# RFC 3986 reg-name characters (unreserved, sub-delims, "%"), as nginx's host validation
# takes them; an IP literal ("[...]") also takes ":".
_HOST_CHARS = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=%"
)
_LITERAL_CHARS = _HOST_CHARS | {":"}


@functools.lru_cache(maxsize=1024)
def canonical_host(raw: str) -> str:
    """The host of a Host header or absolute-form target as nginx's ``$host``: lower-cased,
    without port or trailing dot (``[::1]`` keeps its brackets).  ``BadTarget`` when invalid:
    as nginx 1.29.4's ``ngx_http_validate_host``, RFC 3986 host syntax (no "@", quotes,
    controls or non-ASCII; ".." nowhere; a port of digits up to 65535)."""
    literal = raw.startswith("[")
    if literal:
        close = raw.find("]")
        if close < 0:
            raise BadTarget("invalid host")
        host_end = close + 1
        name, allowed = raw[1:close], _LITERAL_CHARS
    else:
        colon = raw.find(":")
        host_end = len(raw) if colon < 0 else colon
        name, allowed = raw[:host_end], _HOST_CHARS
    if not set(name) <= allowed or ".." in name:
        raise BadTarget("invalid host")
    if not _valid_port(raw[host_end:]):
        raise BadTarget("invalid host")
    host = raw[:host_end]
    if not literal and host.endswith("."):
        host = host[:-1]
    if not host:
        raise BadTarget("invalid host")
    return host.lower()


def _valid_port(rest: str) -> bool:
    """What follows the host: nothing, or ":" and a port of 0-65535 in digits (or none)."""
    if not rest:
        return True
    digits = rest[1:]
    if rest[0] != ":":
        return False
    return not digits or (
        len(digits) <= 5 and digits.isascii() and digits.isdigit() and int(digits) <= 65535
    )


@dataclass(frozen=True, slots=True)
class RequestTarget:
    """Where a request goes, as the gateway routes and forwards it."""

    uri: str  # the normalised path: ``$uri``, routed on and matched by plugins
    raw_path: str  # the path as the client sent it (origin-form, without query or fragment)
    query: str  # the query string as sent, without "?"
    host: str | None  # the routing host (``$host``); None when the request named none
    authority: str | None  # the Host to pass upstream (``pass_host: pass``), port included
    forward_path: str  # ``uri`` escaped for the upstream request line

    @property
    def request_uri(self) -> str:
        """APISIX's ``$request_uri``: the normalised path and the query."""
        return f"{self.uri}?{self.query}" if self.query else self.uri

    @property
    def real_request_uri(self) -> str:
        """APISIX's ``$real_request_uri``: the path and query as the client sent them."""
        return f"{self.raw_path}?{self.query}" if self.query else self.raw_path


def _split_absolute(target: str) -> tuple[str, str]:
    """(authority, origin-form rest) of an absolute-form target ``http://host:port/path?q``."""
    scheme, _, rest = target.partition("://")
    if scheme.lower() not in ("http", "https"):
        raise BadTarget("unsupported request target")
    cut = len(rest)
    for mark in "/?#":
        found = rest.find(mark)
        if 0 <= found < cut:
            cut = found
    authority, path = rest[:cut], rest[cut:]
    if not authority or "@" in authority:
        raise BadTarget("invalid host in the request target")
    if not path.startswith("/"):
        path = "/" + path
    return authority, path


# Targets and Hosts up to this long are remembered (``_remembered``): a gateway sees the same few
# paths again and again, and a ``RequestTarget`` is frozen, so one serves every request for it.
_REMEMBERED_LENGTH = 256


def parse_target(target: str, host_header: str | None, merge_slashes: bool = True) -> RequestTarget:
    """The ``RequestTarget`` of a request line's target and its Host header (None when absent).

    An absolute-form target (``http://host/path``) names the host; a Host header that names
    another host is a 400.
    """
    if len(target) <= _REMEMBERED_LENGTH and (
        host_header is None or len(host_header) <= _REMEMBERED_LENGTH
    ):
        return _remembered(target, host_header, merge_slashes)
    return _parse_target(target, host_header, merge_slashes)


@functools.lru_cache(maxsize=1024)
def _remembered(target: str, host_header: str | None, merge_slashes: bool) -> RequestTarget:
    """``_parse_target``, once per target, Host and ``merge_slashes`` among the latest 1024
    (a target that is a 400 is not remembered: its error is raised again each time)."""
    return _parse_target(target, host_header, merge_slashes)


def _parse_target(target: str, host_header: str | None, merge_slashes: bool) -> RequestTarget:
    authority = host_header
    if not target.startswith("/"):
        named, target = _split_absolute(target)
        if host_header is None:
            authority = named
        elif canonical_host(host_header) != canonical_host(named):
            raise BadTarget("the request target's host differs from the Host header")
    path, _, query = target.partition("?")
    if "#" in query:
        query = query[: query.find("#")]
    uri = normalize_path(path, merge_slashes)
    raw = path.partition("#")[0]
    return RequestTarget(
        uri=uri,
        raw_path=raw,
        query=query,
        host=canonical_host(authority) if authority is not None else None,
        authority=authority,
        forward_path=raw if uri == raw else escape_path(uri),
    )


def check_target(path: str, query: str) -> str:
    """``path?query`` for an upstream request line; ``BadTarget`` when it holds a control
    byte, a space or DEL (a target built from client data must never split the request)."""
    target = f"{path}?{query}" if query else path
    if target.isascii() and target.isprintable() and " " not in target:
        return target  # printable ASCII without spaces: the common case, checked in C
    if not _UNSAFE_TARGET.isdisjoint(target):
        raise BadTarget("invalid characters in the upstream request target")
    return target
