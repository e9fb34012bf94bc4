"""nginx's limits on a request head, and the JSON answer to a request aiohttp's parser refused.

What the parser refuses gets a JSON 400, 414 (request line too long) or 431 (header too large,
too many headers, or a head over ``MAX_HEAD`` in all: counted as it arrives by
``http.protocol``, behind a request under way too, so an unfinished head is refused once past
it rather than held until its timeout), never an echo of the client's bytes
(``error_answer``).
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage, LineTooLong

from llmgate.http.answers import json_error

log = logging.getLogger("llmgate.http")

# nginx reads a request line and each header line into 8 KiB buffers.  The two limits differ
# by one byte so that aiohttp's LineTooLong tells which one was passed (414 or 431).
MAX_REQUEST_LINE = 8192
MAX_FIELD = 8190
MAX_HEADERS = 128
# nginx holds a request head in at most 4 buffers of 8 KiB (large_client_header_buffers): a
# larger head is refused.  aiohttp's own limits (128 fields of 8 KiB) let one head, whole or
# still arriving, hold a megabyte and about twice that in memory.
MAX_HEAD = 4 * 8192


def head_size(message: Any) -> int:
    """The bytes a parsed request head took: its request line and header lines."""
    size = len(message.method) + len(message.path) + 13
    for name, value in message.raw_headers:
        size += len(name) + len(value) + 4
    return size


def error_answer(
    request: web.BaseRequest, status: int, exc: BaseException | None
) -> web.StreamResponse:
    """A JSON answer for a request aiohttp could not parse (or a handler that failed);
    the client's bytes are never echoed, nor logged above debug level."""
    if request.writer.output_size > 0:
        raise ConnectionError("response already started: cannot send an error")
    if isinstance(exc, LineTooLong):
        if exc.args[1:2] == (MAX_REQUEST_LINE,):
            return json_error(414, "request URI too long")
        return json_error(431, "request header fields too large")
    if isinstance(exc, BadHttpMessage) and "Too many headers" in str(exc):
        return json_error(431, "request header fields too large")
    if status >= 500:
        log.error("request from %s failed", request.remote, exc_info=exc)
        return json_error(500, "internal error")
    log.debug("bad request from %s: %s", request.remote, exc)
    return json_error(status, "bad request")
