"""Header rules of a proxy: hop-by-hop headers are dropped, X-Forwarded-* are added."""

from __future__ import annotations

import functools
import re

from multidict import CIMultiDict, CIMultiDictProxy

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)


_HOP_BY_HOP_NAMES = tuple(sorted(HOP_BY_HOP))


@functools.lru_cache(maxsize=256)
def _named_by(connection: str) -> tuple[str, ...]:
    """The headers a Connection line names, less those dropped anyway (hop-by-hop): none for
    the usual ``keep-alive`` or ``close``.  Remembered per line: the same few come again and
    again."""
    tokens = {token.strip().lower() for token in connection.split(",")}
    return tuple(sorted(tokens - HOP_BY_HOP - {""}))


def end_to_end(
    headers: CIMultiDictProxy[str] | CIMultiDict[str], drop: frozenset[str] = frozenset()
) -> CIMultiDict[str]:
    """A copy of ``headers`` without hop-by-hop headers, those named by Connection, and ``drop``
    (lower-case names).  Copied whole, then the few names looked up (in C): cheaper than
    filtering header by header."""
    out = CIMultiDict(headers)
    for name in _HOP_BY_HOP_NAMES:
        if name in out:
            del out[name]
    for name in drop:
        if name in out:
            del out[name]
    for connection in headers.getall("Connection", ()):
        for name in _named_by(connection):
            if name in out:
                del out[name]
    return out


def add_forwarded(
    headers: CIMultiDict[str],
    client_ip: str | None,
    scheme: str,
    host: str | None,
    port: str | None,
) -> None:
    """X-Forwarded-For (appended), -Proto, -Host, -Port and X-Real-IP, as APISIX sets them."""
    if client_ip:
        previous = headers.get("X-Forwarded-For")
        headers["X-Forwarded-For"] = f"{previous}, {client_ip}" if previous else client_ip
        headers["X-Real-IP"] = client_ip
    headers["X-Forwarded-Proto"] = scheme
    if host:
        headers["X-Forwarded-Host"] = host
    if port:
        headers["X-Forwarded-Port"] = port


# Control characters but tab: a raw CR or LF in a value would split the header line.
_VALUE_CONTROLS = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def escape_header_value(value: str) -> str:
    """``value`` with control characters percent-encoded (as OpenResty does), so a header value
    built from request variables is always safe to send."""
    return _VALUE_CONTROLS.sub(lambda m: f"%{ord(m.group()):02X}", value)
