"""The data plane's one handler: match a route, run the plugin phases, stream the upstream.

    match -> rewrite -> (consumer merge) -> access -> before_proxy -> upstream
          -> header_filter -> body_filter -> log

A plugin ends a request by returning a ``Reply`` or raising an ``HttpError``; either way the
response goes through the header and body filters, and the log phase always runs.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any

from aiohttp import hdrs, web

from llmgate.ai.pricing import NO_PRICES, PRICES
from llmgate.ai.tracking import left_waiting, settle_usage
from llmgate.errors import HttpError
from llmgate.http.body import BodyBudget, BodyStream, RequestBody
from llmgate.http.context import (
    CONTEXT,
    UPSTREAM_TRIES,
    OutboundRequest,
    Reply,
    RequestContext,
    Sent,
)
from llmgate.http.headers import add_forwarded, end_to_end
from llmgate.http.limits import ClientLimits
from llmgate.http.paths import check_target, parse_target
from llmgate.http.variables import RouteVariables, server_port
from llmgate.proxy.eager import drive
from llmgate.proxy.respond import UPSTREAM_STATUS_HEADER, relay, send_reply, upstream_status
from llmgate.proxy.upstream import BadGateway, GatewayTimeout, Outgoing, no_upstream
from llmgate.runtime.snapshot import (
    CHAIN,
    EMPTY_CHAIN,
    SNAPSHOT,
    CompiledRoute,
    ConsumerEntry,
)

if TYPE_CHECKING:
    from llmgate.plugin_api.plugin import Plugin
    from llmgate.runtime.loader import SnapshotLoader

log = logging.getLogger("llmgate.proxy")


# Bodies up to this size are read before proxying so a retry can send them again.
REPLAYABLE_BODY = 1024 * 1024
# Expect is answered here (a client waiting for "100 Continue" gets it from the gateway, as
# from nginx); the upstream gets the body at once.
_DROP_INBOUND = frozenset({"host", "content-length", "expect"})

NOT_FOUND = Reply.error(404, "404 Route Not Found")
# What an unmatched request runs on while global rules exist: their plugins, then the 404.
UNMATCHED = CompiledRoute(
    id="", name=None, chain=EMPTY_CHAIN, plugin_confs={}, upstream=None, owners={}
)
INTERNAL_ERROR = Reply.error(500, "internal error")
# nginx's status for a request whose client went away before it was answered.
CLIENT_CLOSED = 499


def make_handler(
    loader: SnapshotLoader, limits: ClientLimits = ClientLimits()
) -> Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]:
    """The data plane's request handler, reading the snapshot ``loader`` keeps current."""

    # Request bodies held in memory by every request of this process together.
    budget = BodyBudget(limits.buffered_bodies_max_bytes)
    # Log phases still running for requests whose handler was cancelled (see _log_phase).
    logging_on: set[asyncio.Task[None]] = set()

    # (A partial: called in C, where a closure passing the same arguments on is a Python
    # call a request.)
    return functools.partial(_handle, loader, limits, budget, logging_on)


async def _handle(
    loader: SnapshotLoader,
    limits: ClientLimits,
    budget: BodyBudget,
    logging_on: set[asyncio.Task[None]],
    request: web.BaseRequest,
) -> web.StreamResponse:
    """Match the request's route and run its phases, then the log phase whatever ended the
    request: a reply, an error, an upstream failure, a client that left or stopped reading for
    ``send_timeout`` seconds (499, as nginx) or a bug (500).  (One coroutine for the request's
    setup and its ending: each coroutine between aiohttp and the plugins costs ~1k
    instructions a request.)"""
    snapshot = loader.current
    if snapshot is None:
        return _plain(Reply.error(503, "configuration not loaded yet"))
    headers = request.headers
    try:
        # Routed, matched and forwarded on nginx's $uri: the normalised path.
        target = parse_target(request.raw_path, headers.get(hdrs.HOST), limits.merge_slashes)
    except HttpError as error:
        return _plain(Reply.json(error.status, error.body))
    if hdrs.EXPECT in headers:
        await _continue(request)
    router = snapshot.router
    # Route conditions (vars, remote_addrs) read the request's variables; most configs have none.
    variables = RouteVariables(request, target) if router.needs_variables else None
    entry = router.match(request.method, target.host, target.uri, variables)
    if entry is not None and entry.payload is not None:
        route = entry.payload
    elif snapshot.global_ids:
        route = UNMATCHED  # the global rules run before the 404, as in APISIX
    else:
        return _plain(NOT_FOUND)
    outbound = OutboundRequest(
        method=request.method,
        path=target.forward_path,
        query=target.query,
        headers=end_to_end(headers, _DROP_INBOUND),
    )
    body = RequestBody(
        request.content,
        request.content_length,
        request.body_exists,
        limits.body_timeout,
        request.transport,
        budget,
    )
    ctx = RequestContext(request, route, outbound, route.upstream, target, body)
    ctx.state[SNAPSHOT] = snapshot
    ctx.state[CHAIN] = snapshot.chain_of(route) if snapshot.global_ids else route.chain
    prices = snapshot.services.prices
    if prices is not NO_PRICES:
        ctx.state[PRICES] = prices
    request[CONTEXT] = ctx  # for the access log
    loader.enter(snapshot)
    try:
        try:
            return await _respond(ctx, limits.send_timeout)
        except (ConnectionError, asyncio.CancelledError):
            ctx.status = CLIENT_CLOSED
            ctx.client_aborted = True
            if sent := request.writer.output_size:
                ctx.bytes_sent = sent  # what went out before the client left ($bytes_sent)
            raise
        except Exception:
            log.exception("request on route %s failed", ctx.route.id)
            if request.writer.output_size:
                ctx.status = ctx.status or 500
                raise  # the response has begun: the connection is closed
            ctx.status = 500
            return _plain(INTERNAL_ERROR)
        finally:
            settle_usage(ctx)  # an answered call without usage: its estimate, for every reader
            plugins = ctx.state[CHAIN].log
            if plugins and (waiting := _log_phase(ctx, plugins, logging_on)) is not None:
                await waiting
    finally:
        loader.leave(snapshot)
        body.release()
        _observe(ctx)


def _forwarding(ctx: RequestContext) -> None:
    """Tell ``Services.observers`` (token accounting) the upstream request is about to go."""
    for observer in ctx.state[SNAPSHOT].services.observers:
        try:
            observer.forwarding(ctx)
        except Exception:
            log.exception("observer %s failed", type(observer).__name__)


def _observe(ctx: RequestContext) -> None:
    """Tell ``Services.observers`` the request is done (after the log phase, however it
    ended)."""
    for observer in ctx.state[SNAPSHOT].services.observers:
        try:
            observer.observe(ctx)
        except Exception:
            log.exception("observer %s failed", type(observer).__name__)


async def _continue(request: web.BaseRequest) -> None:
    """``Expect: 100-continue``: tell the client to send its body (aiohttp's router would; the
    low-level server leaves it to us)."""
    if request.headers["Expect"].lower() == "100-continue" and request.version == (1, 1):
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")


def _plain(reply: Reply) -> web.Response:
    assert isinstance(reply.body, bytes)
    return web.Response(status=reply.status, body=reply.body, headers=reply.headers)


def _log_phase(
    ctx: RequestContext, plugins: tuple[Plugin, ...], logging_on: set[asyncio.Task[None]]
) -> asyncio.Future[None] | None:
    """Every log plugin, in order.  Those that finish without waiting (metrics, counters in
    memory, a logger's queue) run right here; from the first that waits on I/O on, the rest of
    the phase runs in a task of its own, which the caller awaits (shielded: None when there is
    none to wait for): a client that closes its connection while the log phase runs (aiohttp
    then cancels this handler; a keep-alive client that read the whole response may close at
    once) must not cut it short -- a budget would keep its reservation, a logger lose its
    line.  The task is kept in ``logging_on`` until it is done."""
    for index, plugin in enumerate(plugins):
        step = plugin.log(ctx)
        try:
            waiting = step.send(None)
        except StopIteration:
            continue
        except Exception:
            log.exception("log phase of %s failed", plugin.name)
            continue
        task = asyncio.ensure_future(_finish_log(ctx, plugin, step, waiting, plugins[index + 1 :]))
        logging_on.add(task)
        task.add_done_callback(logging_on.discard)
        return asyncio.shield(task)
    return None


async def _finish_log(
    ctx: RequestContext,
    plugin: Plugin,
    step: Coroutine[Any, Any, None],
    waiting: Any,
    rest: tuple[Plugin, ...],
) -> None:
    """The log phase from ``plugin`` on, whose ``log`` coroutine ``step`` is suspended on
    ``waiting`` (what it yielded: a future, or None for a bare yield)."""
    try:
        await drive(step, waiting)
    except Exception:
        log.exception("log phase of %s failed", plugin.name)
    for later in rest:
        try:
            await later.log(ctx)
        except Exception:
            log.exception("log phase of %s failed", later.name)


async def _respond(ctx: RequestContext, send_timeout: float) -> web.StreamResponse:
    sent: Sent | None = None
    try:
        reply = await _request_phases(ctx)
        if reply is None:
            _forwarding(ctx)
            try:
                sent = await (ctx.forwarder or send_to_upstream)(ctx)
            except asyncio.CancelledError:
                left_waiting(ctx)  # the client left: the provider has the prompt
                raise
            except (BadGateway, GatewayTimeout) as error:
                headers = dict(error.headers)
                if ctx.forwarder is None and ctx.upstream is not None:
                    # nginx's $upstream_status is the 502/504 of the failed tries: APISIX
                    # marks the answer as the upstream's failure too.
                    headers[UPSTREAM_STATUS_HEADER] = upstream_status(ctx, None, error.status)
                reply = Reply.json(error.status, error.body, headers or None)
    except HttpError as error:
        reply = Reply.json(error.status, error.body, error.headers or None)
    chain = ctx.state[CHAIN]
    if sent is not None:
        return await relay(ctx, chain, sent, send_timeout)
    assert reply is not None
    return await send_reply(ctx, chain, reply, send_timeout)


async def _request_phases(ctx: RequestContext) -> Reply | None:
    """Global rules' rewrite and access, then the route's rewrite, the consumer's plugins
    merged in, the route's access (APISIX's order), then every plugin's before_proxy."""
    snapshot = ctx.state[SNAPSHOT]
    skip = snapshot.global_ids
    if skip:
        for plugin in snapshot.global_chain.rewrite:
            reply = await plugin.rewrite(ctx)
            if reply is not None:
                return reply
        for plugin in snapshot.global_chain.access:
            reply = await plugin.access(ctx)
            if reply is not None:
                return reply
    if ctx.route is UNMATCHED:
        return NOT_FOUND  # only the global rules ran: no route, no consumer plugins
    chain = ctx.state[CHAIN]
    for plugin in chain.rewrite:
        if id(plugin) not in skip:
            reply = await plugin.rewrite(ctx)
            if reply is not None:
                return reply
    consumer, route = ctx.consumer, ctx.route
    if (
        isinstance(consumer, ConsumerEntry)
        and consumer.overrides
        and isinstance(route, CompiledRoute)
    ):
        # The consumer's plugins, compiled with the snapshot, merged over the route's (the
        # global rules' stay apart, first).
        merged = snapshot.chain_for(route, consumer)
        done = set(map(id, chain.rewrite))
        ctx.state[CHAIN] = chain = merged
        for plugin in merged.rewrite:
            if id(plugin) not in done:
                reply = await plugin.rewrite(ctx)
                if reply is not None:
                    return reply
    for plugin in chain.access:
        if id(plugin) not in skip:
            reply = await plugin.access(ctx)
            if reply is not None:
                return reply
    # After the whole access phase, global rules' and route's together (the chain holds both):
    # what APISIX's nginx answers in the content phase (a disk cache's HIT).
    for plugin in chain.before_proxy:
        reply = await plugin.before_proxy(ctx)
        if reply is not None:
            return reply
    return None


def _hash_key(ctx: RequestContext) -> str | None:
    pool = ctx.upstream
    if pool is None or pool.spec.type != "chash":
        return None
    return pool.hash_key(ctx)


async def outgoing_for(ctx: RequestContext) -> Outgoing:
    """The upstream request as plugins left ``ctx.outbound``, with X-Forwarded-* added (to
    ``ctx.outbound.headers``, which the upstream request then uses and owns: the last use the
    request makes of them).

    A target holding control characters (built by a plugin from client data) is a 400.  The
    body is a plugin's replacement, else the client's: read whole when it is at most
    ``REPLAYABLE_BODY`` (so a retry can send it again), else streamed through as it arrives
    (with its Content-Length when it declared one).
    """
    inbound, outbound = ctx.inbound, ctx.outbound
    headers = outbound.headers
    target = check_target(outbound.path, outbound.query)
    body: bytes | BodyStream | None = outbound.body
    if body is None and ctx.body.exists:
        client = ctx.body
        if client.buffered is not None:
            body = client.buffered
        elif client.length is not None and client.length <= REPLAYABLE_BODY:
            body = await client.read()
        else:
            if client.length is not None:
                headers["Content-Length"] = str(client.length)
            body = client.stream()
    add_forwarded(
        headers,
        inbound.remote,
        inbound.scheme,
        ctx.target.authority,
        server_port(inbound),  # (``ctx.var("server_port")``, which no plugin sets)
    )
    return Outgoing(
        method=outbound.method,
        path_and_query=target,
        headers=headers,
        body=body,
        client_host=outbound.host or ctx.target.authority,
        hash_key=_hash_key(ctx),
        timeout=ctx.route.timeout,
        own_headers=True,
    )


async def send_to_upstream(ctx: RequestContext) -> Sent:
    """Send ``ctx.outbound`` to ``ctx.upstream`` (the default forwarder)."""
    pool = ctx.upstream
    if pool is None:
        raise no_upstream(ctx.route.upstream_id)
    outgoing = await outgoing_for(ctx)
    try:
        response, index, started = await pool.send(outgoing)
    finally:
        if outgoing.failed:  # tries that failed before the last (none, mostly)
            ctx.state[UPSTREAM_TRIES] = outgoing.failed
    return response, pool, index, started
