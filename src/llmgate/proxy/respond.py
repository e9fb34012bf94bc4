"""The response side of the handler: the head through the plugins' header filters, the body
through their body filters, written to the client under the send timeout.

``relay`` streams an upstream's response (its connection back to the pool once done);
``send_reply`` sends a plugin's or the gateway's own ``Reply``; when the request's body broke
off (timed out, broken framing, too large, over the budget) the connection is closed after it,
as nginx closes it: what is left of that body on the connection is unknown or unwanted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
import time
from typing import TypeVar

from aiohttp import HttpVersion11, web
from aiohttp.http_writer import StreamWriter
from multidict import CIMultiDict

from llmgate.ai.replies import gateway_reply
from llmgate.ai.settlement import STATE_KEY as SETTLEMENT
from llmgate.ai.tracking import passive_tracker
from llmgate.http.answers import mark_untyped
from llmgate.http.body import BodyState
from llmgate.http.context import (
    BODY_BYTES,
    HEAD_BYTES,
    SENT_HEADERS,
    UPSTREAM_HEADERS,
    UPSTREAM_TRIES,
    Reply,
    RequestContext,
    ResponseHead,
    Sent,
)
from llmgate.http.headers import end_to_end
from llmgate.http.whole_response import WholeResponse
from llmgate.proxy.client import UpstreamError
from llmgate.runtime.snapshot import PluginChain

log = logging.getLogger("llmgate.proxy")

# Set on an upstream's 5xx, as APISIX does.
UPSTREAM_STATUS_HEADER = "X-APISIX-Upstream-Status"
_R = TypeVar("_R", bound=web.StreamResponse)
_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends a reset
_CHUNKED_END = len(b"0\r\n\r\n")


def upstream_status(ctx: RequestContext, status: int | None, failed: int) -> str:
    """X-APISIX-Upstream-Status: nginx's $upstream_status, one entry per try ("502, 503"),
    ``status`` the answer of the last one (None: every try failed, the last with
    ``failed``)."""
    tries = [str(code) for _, code, _ in ctx.state.get(UPSTREAM_TRIES, ())]
    if status is not None:
        tries.append(str(status))
    return ", ".join(tries) or str(failed)


def _head(ctx: RequestContext, chain: PluginChain, head: ResponseHead) -> ResponseHead:
    if ctx.response_headers:
        head.headers.update(ctx.response_headers)
    ctx.state[SENT_HEADERS] = head.headers
    declared = "Content-Length" in head.headers
    for plugin in chain.header_filter:
        plugin.header_filter(ctx, head)
    head.length_removed = declared and "Content-Length" not in head.headers
    # The gateway frames the body it sends: a Transfer-Encoding a plugin set (response-rewrite
    # "set") went out beside Content-Length over a body that was not chunked.
    head.headers.popall("Transfer-Encoding", None)
    if chain.body_filter:
        head.headers.popall("Content-Length", None)
    ctx.status = head.status
    return head


def _head_size(response: web.Response) -> int:
    """About the size of the status line and headers aiohttp will write for ``response``."""
    size = 17 + len(response.reason or "") + 2  # "HTTP/1.1 200 OK\r\n" ... "\r\n"
    for name, value in response.headers.items():
        size += len(name) + len(value) + 4
    # Date, Server and Content-Length are added when the response is sent.
    return size + 80


def _filter(ctx: RequestContext, chain: PluginChain, chunk: bytes, eof: bool) -> bytes:
    for plugin in chain.body_filter:
        chunk = plugin.body_filter(ctx, chunk, eof)
    return chunk


# Upstream answer headers not passed on (nginx's proxy_hide_header default): the gateway's
# own Server replaces the upstream's.
_HIDDEN = frozenset({"server"})


class SendTimeout(ConnectionError):
    """The client did not take a write of the response for ``send_timeout`` seconds: it is
    treated as gone (nginx's ``send_timeout``), its connection reset."""


# aiohttp's StreamWriter waits for the client to take what it was given (drain) once more than
# this was written since it last waited (the LIMIT of its write).
_DRAIN_AT = 0x10000


async def _write(
    ctx: RequestContext, writer: StreamWriter, data: bytes, send_timeout: float
) -> None:
    """``response.write(data)``, waiting at most ``send_timeout`` seconds for a client that
    does not read (aiohttp would wait forever, holding the upstream and the buffers).

    The bytes go to the transport at once; only the wait for the client (past ``_DRAIN_AT``
    bytes written since the last one, as in aiohttp's write) takes time, so the timeout is
    armed for it alone, not for every chunk of a stream (a timer each)."""
    await writer.write(data, drain=False)
    if writer.buffer_size <= _DRAIN_AT:
        return
    writer.buffer_size = 0
    try:
        async with asyncio.timeout(send_timeout):
            await writer.drain()
    except TimeoutError:
        transport = ctx.inbound.transport
        if transport is not None:
            # A reset, not a close: the kernel would otherwise keep the unsent bytes (up to
            # its send buffer) for a client that reads nothing (nginx's
            # reset_timedout_connection).
            sock = transport.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
            transport.abort()
        raise SendTimeout(f"the client read nothing for {send_timeout:g} s") from None


async def _prepare(ctx: RequestContext, response: web.StreamResponse) -> StreamWriter:
    """Send the head of a streamed response (aiohttp sends it at once), note its size, and
    return the writer of its body."""
    writer = await response.prepare(ctx.inbound)
    assert isinstance(writer, StreamWriter)
    ctx.state[HEAD_BYTES] = writer.output_size
    return writer


async def relay(
    ctx: RequestContext, chain: PluginChain, sent: Sent, send_timeout: float
) -> web.StreamResponse:
    """Stream the upstream response to the client, chunk by chunk, through the filters."""
    upstream, pool, index, started = sent
    ctx.upstream_addr = pool.nodes[index].address
    ctx.upstream_status = upstream.status
    try:
        tracker = passive_tracker(ctx, upstream.status, upstream.headers)
        ctx.state[UPSTREAM_HEADERS] = upstream.headers
        headers = end_to_end(upstream.headers, _HIDDEN)
        if 500 <= upstream.status <= 599:
            # As APISIX ($upstream_status): tells the upstream's 5xx from the gateway's own.
            headers[UPSTREAM_STATUS_HEADER] = upstream_status(ctx, upstream.status, upstream.status)
        head = _head(ctx, chain, ResponseHead(upstream.status, headers))
        if upstream.content.complete:
            # The whole body came with the head (a small response): one write, no streaming.
            body = upstream.content.take_all()
            if tracker is not None:
                tracker.feed_whole(body)
            if chain.body_filter:
                body = _filter(ctx, chain, body, False) + _filter(ctx, chain, b"", True)
            head.headers.popall("Content-Length", None)
            whole = WholeResponse(head.status, body, head.headers)
            mark_untyped(whole)
            # nginx's $bytes_sent (head and body); aiohttp writes it after the log phase.
            ctx.bytes_sent = len(body) + _head_size(whole)
            if head.length_removed and ctx.inbound.version >= HttpVersion11:
                # No Content-Length to send (a plugin removed it): nginx chunks the body.
                whole.enable_chunked_encoding()
                ctx.bytes_sent += _CHUNKED_END + (len(f"{len(body):x}") + 4 if body else 0)
            ctx.state[BODY_BYTES] = len(body)
            return whole
        response = web.StreamResponse(status=head.status, headers=head.headers)
        mark_untyped(response)
        writer = await _prepare(ctx, response)
        # Token budgets waiting for the call's usage: settled before the client sees it.
        settling = ctx.state.get(SETTLEMENT)
        try:
            async for chunk in upstream.content.iter_any():
                if tracker is not None:
                    tracker.feed(chunk, False)
                if chain.body_filter:
                    chunk = _filter(ctx, chain, chunk, False)
                if settling is not None and settling.due:
                    await settling.run(ctx)
                if not chunk:
                    continue
                await _write(ctx, writer, chunk, send_timeout)
            if tracker is not None:
                tracker.feed(b"", True)
            tail = _filter(ctx, chain, b"", True) if chain.body_filter else b""
            if settling is not None:
                await settling.run(ctx)
            if tail:
                await _write(ctx, writer, tail, send_timeout)
            await response.write_eof()
            ctx.bytes_sent = response.body_length
        except (UpstreamError, TimeoutError) as exc:
            # The upstream broke mid-response: the status is sent, so cut the client off too.
            log.warning("upstream %s broke mid-response: %s", ctx.upstream_addr, exc)
            ctx.upstream_broken = True
            # nginx's $bytes_sent: what went out before the cut (no write_eof to count it).
            ctx.bytes_sent = ctx.inbound.writer.output_size
            if ctx.inbound.transport is not None:
                ctx.inbound.transport.close()
        return response
    finally:
        upstream.release()
        pool.finished(index, started)
        ctx.upstream_latency = time.monotonic() - started


def _closing(ctx: RequestContext, response: _R) -> _R:
    """``response``, closing its connection when the request's body broke off."""
    if ctx.body.state is BodyState.BROKEN:
        response.force_close()
    return response


async def send_reply(
    ctx: RequestContext, chain: PluginChain, reply: Reply, send_timeout: float
) -> web.StreamResponse:
    reply = gateway_reply(ctx, chain, reply)  # OpenAI errors on LLM routes; cache-hit accounting
    head = _head(ctx, chain, ResponseHead(reply.status, CIMultiDict(reply.headers), False))
    if isinstance(reply.body, bytes):
        body = reply.body
        if chain.body_filter:
            body = _filter(ctx, chain, body, False) + _filter(ctx, chain, b"", True)
        ctx.bytes_sent = ctx.state[BODY_BYTES] = len(body)  # aiohttp writes it after the log phase
        whole = _closing(ctx, WholeResponse(head.status, body, head.headers))
        mark_untyped(whole)
        return whole
    response = _closing(ctx, web.StreamResponse(status=head.status, headers=head.headers))
    mark_untyped(response)
    writer = await _prepare(ctx, response)
    async for chunk in reply.body:
        chunk = _filter(ctx, chain, chunk, False) if chain.body_filter else chunk
        if chunk:
            await _write(ctx, writer, chunk, send_timeout)
    tail = _filter(ctx, chain, b"", True) if chain.body_filter else b""
    if tail:
        await _write(ctx, writer, tail, send_timeout)
    await response.write_eof()
    ctx.bytes_sent = response.body_length
    return response
