"""Header rules of a proxy: hop-by-hop headers are dropped, X-Forwarded-* are added.

Names are looked up and set as ``istr`` constants: a multidict takes an ``istr``'s folded case
as it is, where it folds a ``str`` again each time (about half the cost of setting a header).
The headers keep the names as spelled here (a multidict holds every name as an ``istr``)."""

from __future__ import annotations

import functools
import re

from multidict import CIMultiDict, CIMultiDictProxy, istr

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
_HOP_BY_HOP_NAMES = tuple(istr(name) for name in sorted(HOP_BY_HOP))
_CONNECTION = istr("Connection")
_X_FORWARDED_FOR = istr("X-Forwarded-For")
_X_REAL_IP = istr("X-Real-IP")
_X_FORWARDED_PROTO = istr("X-Forwarded-Proto")
_X_FORWARDED_HOST = istr("X-Forwarded-Host")
_X_FORWARDED_PORT = istr("X-Forwarded-Port")


@functools.lru_cache(maxsize=256)
def _named_by(connection: str) -> tuple[istr, ...]:
    """The headers a Connection line names, less those dropped anyway (hop-by-hop): none for
    the usual ``keep-alive`` or ``close``.  Remembered per line: the same few come again and
    again."""
    tokens = {token.strip().lower() for token in connection.split(",")}
    return tuple(istr(name) for name in sorted(tokens - HOP_BY_HOP - {""}))


def end_to_end(
    headers: CIMultiDictProxy[str] | CIMultiDict[str], drop: frozenset[str] = frozenset()
) -> CIMultiDict[str]:
    """A copy of ``headers`` without hop-by-hop headers, those named by Connection, and ``drop``
    (lower-case names).  Copied whole, then the few names looked up (in C): cheaper than
    filtering header by header."""
    out = CIMultiDict(headers)
    for hop in _HOP_BY_HOP_NAMES:
        if hop in out:
            del out[hop]
    for name in drop:
        if name in out:
            del out[name]
    for connection in headers.getall(_CONNECTION, ()):
        for named in _named_by(connection):
            if named in out:
                del out[named]
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
        previous = headers.get(_X_FORWARDED_FOR)
        headers[_X_FORWARDED_FOR] = f"{previous}, {client_ip}" if previous else client_ip
        headers[_X_REAL_IP] = client_ip
    headers[_X_FORWARDED_PROTO] = scheme
    if host:
        headers[_X_FORWARDED_HOST] = host
    if port:
        headers[_X_FORWARDED_PORT] = port


# Control characters but tab: a raw CR or LF in a value would split the header line.
_VALUE_CONTROLS = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def escape_header_value(value: str) -> str:
    """``value`` with control characters percent-encoded (as OpenResty does), so a header value
    built from request variables is always safe to send."""
    return _VALUE_CONTROLS.sub(lambda m: f"%{ord(m.group()):02X}", value)
