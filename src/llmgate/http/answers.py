"""What the edge answers on its own, and how an answer says whether its connection stays open.

The gateway's own one-line JSON errors for requests it will not read (a version it does not
speak, a Transfer-Encoding nginx refuses, plain HTTP on the HTTPS port), ``name_connection``
(``Connection: keep-alive`` or ``close`` on every answer, as nginx, ending the connection when
much of an unread body is still to come), and the mark of an answer sent without a
Content-Type.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

# The most of a request's body still to come that an answer given before reading it leaves to
# be read and dropped, keeping the connection (nginx discards any size): past it, or for chunks
# not yet ended, the answer ends the connection (a declared 10 GB is not drained).
DISCARD_LIMIT = 64 * 1024


def json_error(status: int, error_msg: str) -> web.Response:
    response = web.Response(
        status=status,
        body=orjson.dumps({"error_msg": error_msg}),
        content_type="application/json",
    )
    response.force_close()
    return response


async def version_not_supported(_request: web.BaseRequest) -> web.StreamResponse:
    return json_error(505, "HTTP version not supported")


async def bad_transfer_encoding(_request: web.BaseRequest) -> web.StreamResponse:
    return json_error(400, "bad request")


def plain_chunked(message: Any) -> bool:
    """Whether a chunked request says so as nginx accepts it: HTTP/1.1 and a Transfer-Encoding
    of ``chunked`` alone.  aiohttp's parser also reads HTTP/1.0 chunks (1.0 has none: a proxy
    in front may frame the body by its length or its close) and ``identity, chunked`` or
    ``gzip, chunked`` (a coding it then drops); nginx answers 400 and 501, llmgate 400."""
    if message.version < (1, 1):
        return False
    return all(
        value.strip().lower() == "chunked"
        for value in message.headers.getall("Transfer-Encoding", ())
    )


PLAIN_HTTP_ON_TLS = "The plain HTTP request was sent to HTTPS port"


async def plain_http_on_tls_port(_request: web.BaseRequest) -> web.StreamResponse:
    """nginx's answer to plain HTTP sent to an HTTPS port (400, then the connection is
    closed), with APISIX's JSON error body instead of nginx's HTML page."""
    return json_error(400, PLAIN_HTTP_ON_TLS)


def name_connection(request: web.BaseRequest, response: web.StreamResponse) -> None:
    """Say in ``response`` whether its connection stays open, as nginx does on every answer
    (aiohttp says it only where it differs from the HTTP version's default).  Called once
    aiohttp decided (``keep_alive``), before the head is written.

    An HTTP/1.0 answer with a body and no Content-Length (a stream: 1.0 has no chunks) ends
    with its connection, as nginx ends it: aiohttp found so but left ``keep_alive`` True, so
    the connection stayed open and the client never saw the end of the body.

    An answer that says ``Connection: close`` itself (the gateway's 413 for a body over its
    limit) ends its connection, as it says; so does one given while much of the request's body
    is still to come (``body_left_is_large``): the rest is not read."""
    keep_alive = response.keep_alive
    if keep_alive and (
        (
            request.version < (1, 1)
            and response.content_length is None
            and request.method != "HEAD"
            and response.status not in (204, 304)
            and response.status >= 200
        )
        or body_left_is_large(request)
    ):
        response.force_close()
        keep_alive = False
    headers = response.headers
    said = headers.get("Connection")
    if said is None:
        headers["Connection"] = "keep-alive" if keep_alive else "close"
    elif keep_alive and said.lower() == "close":
        response.force_close()


def body_left_is_large(request: web.BaseRequest) -> bool:
    """Whether more than ``DISCARD_LIMIT`` bytes of ``request``'s body have not arrived yet,
    or its chunks have not ended (their size is not known)."""
    payload = request.content
    if payload.is_eof():
        return False
    length = request.content_length
    return length is None or length - payload.total_raw_bytes > DISCARD_LIMIT


# Marks a response whose head has no Content-Type (an upstream's untyped answer, a header a
# plugin removed): nginx sends it without one, where aiohttp adds application/octet-stream.
UNTYPED = web.ResponseKey("llmgate.untyped", bool)


def mark_untyped(response: web.StreamResponse) -> None:
    """Remember, before it is sent, whether ``response`` has no Content-Type."""
    if "Content-Type" not in response.headers:
        response[UNTYPED] = True
