"""A response whose whole body is in hand (an upstream's small answer, a plugin's reply),
its head and body written to the client in one write.

aiohttp makes and prepares a ``web.Response`` in steps, each a call or more (``__init__`` and
its parent's, ``_set_status``, the ``body`` setter; ``prepare``, ``_start`` twice,
``_prepare_headers``, ``content_length``, ``_write_headers``, then ``write_eof`` down three
levels): ~20 Python calls for every answer.  ``WholeResponse`` sets what ``web.Response``
sets for a body of bytes, and its ``prepare`` does aiohttp's work in one function for the
common case (no Content-Length set, not chunked, not compressed, no cookies, a status and
method whose answer has a body), handing head and body to the writer together; any other
case is aiohttp's own ``prepare``.

The bytes written, the headers' order, and what aiohttp's later code reads (``keep_alive``,
``prepared``, ``body_length``, the writer's ``output_size``) are aiohttp's, to the byte:
``tests/http/test_whole_response.py`` answers each case both ways and compares them.  This
leans on private attributes of aiohttp's ``Response`` (those its ``__init__`` sets, and
``_eof_sent``, ``_payload_writer``, ``_req``, ``_keep_alive``, ``_body_length``, ``_chunked``,
``_compression``, ``_cookies``, ``_must_be_empty_body``), its ``_set_status`` and
``BaseRequest._prepare_hook``, which that test pins (aiohttp 3.14).
"""

from __future__ import annotations

from aiohttp import hdrs, web, web_response
from aiohttp.abc import AbstractStreamWriter
from aiohttp.compression_utils import MAX_SYNC_CHUNK_SIZE
from aiohttp.helpers import rfc822_formatted_time
from aiohttp.http import HttpVersion10, HttpVersion11
from multidict import CIMultiDict

__all__ = ["WholeResponse"]

# Methods whose answer is aiohttp's own (HEAD: no body; CONNECT: none after a 2xx).
_OWN_METHODS = frozenset({hdrs.METH_HEAD, hdrs.METH_CONNECT})


class WholeResponse(web.Response):
    """``web.Response(status=, body=, headers=)`` for a body of bytes, prepared and written
    at once: ``prepare`` sends the head and the body (``write_eof`` then has nothing left to
    do), as aiohttp's ``finish_response`` calls them one after the other."""

    def __init__(self, status: int, body: bytes, headers: CIMultiDict[str]) -> None:
        # What web.Response.__init__ sets for these arguments (its checks are for others).
        self._state = {}
        self._headers = CIMultiDict(headers)
        self._set_status(status, None)
        self._body = body
        self._zlib_executor_size = MAX_SYNC_CHUNK_SIZE
        self._zlib_executor = None

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        status = self._status
        headers = self._headers
        if (
            self._eof_sent
            or self._payload_writer is not None
            or self._chunked
            or self._compression
            or self._cookies
            or status < 200
            or status in (204, 304)
            or request.method in _OWN_METHODS
            or hdrs.CONTENT_LENGTH in headers
        ):
            return await super().prepare(request)
        body = self._body
        assert isinstance(body, bytes)
        # What aiohttp's Response._start and StreamResponse._prepare_headers do for this case,
        # in their order (the headers' order on the wire).
        self._must_be_empty_body = False
        self._req = request
        writer = self._payload_writer = request.writer
        keep_alive = self._keep_alive
        if keep_alive is None:
            keep_alive = self._keep_alive = request.keep_alive
        headers[hdrs.CONTENT_LENGTH] = str(len(body))
        if body:
            headers.setdefault(hdrs.CONTENT_TYPE, "application/octet-stream")
        if hdrs.DATE not in headers:
            headers[hdrs.DATE] = rfc822_formatted_time()
        # Read at each answer, as aiohttp does (the edge sets its own once started).
        headers.setdefault(hdrs.SERVER, web_response.SERVER_SOFTWARE)  # type: ignore[attr-defined]
        version = request.version
        if hdrs.CONNECTION not in headers:
            if keep_alive:
                if version == HttpVersion10:
                    headers[hdrs.CONNECTION] = "keep-alive"
            elif version == HttpVersion11:
                headers[hdrs.CONNECTION] = "close"
        await request._prepare_hook(self)
        await writer.write_headers(
            f"HTTP/{version[0]}.{version[1]} {status} {self._reason}", headers
        )
        await writer.write_eof(body)
        # What StreamResponse.write_eof leaves.
        self._eof_sent = True
        self._req = None
        self._body_length = writer.output_size
        self._payload_writer = None
        return writer
