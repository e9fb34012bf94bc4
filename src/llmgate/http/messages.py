"""The messages a request's context holds, named by direction: the request llmgate sends
upstream (``OutboundRequest``, mutable by plugins), a plugin's ``Reply`` (which ends the
request), and the head of the response on its way to the client (``ResponseHead``, mutable in
``header_filter``), whether it came from the upstream or from a ``Reply``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from multidict import CIMultiDict


@dataclass(slots=True)
class OutboundRequest:
    """What llmgate sends upstream.  ``body`` is a plugin's replacement of the client's body;
    None means: send the client's body (``ctx.body``) as it came."""

    method: str
    path: str
    query: str
    headers: CIMultiDict[str]
    body: bytes | None = None
    host: str | None = None  # a Host header set by a plugin (proxy-rewrite ``host``)


@dataclass(slots=True)
class Reply:
    """A response produced by a plugin, which ends the request."""

    status: int
    body: bytes | AsyncIterator[bytes] = b""
    headers: CIMultiDict[str] = field(default_factory=CIMultiDict)

    @classmethod
    def json(cls, status: int, payload: Any, headers: dict[str, str] | None = None) -> Reply:
        head: CIMultiDict[str] = CIMultiDict(headers or {})
        head["Content-Type"] = "application/json"
        return cls(status, orjson.dumps(payload), head)

    @classmethod
    def error(cls, status: int, error_msg: str, **headers: str) -> Reply:
        return cls.json(status, {"error_msg": error_msg}, headers or None)

    @classmethod
    def message(cls, status: int, message: str, headers: dict[str, str] | None = None) -> Reply:
        return cls.json(status, {"message": message}, headers)


@dataclass(slots=True)
class ResponseHead:
    status: int
    headers: CIMultiDict[str]
    from_upstream: bool = True
    # A header filter removed the response's Content-Length (response-rewrite ``remove``):
    # as nginx, the body then goes chunked to an HTTP/1.1 client (set by the proxy handler).
    length_removed: bool = False
