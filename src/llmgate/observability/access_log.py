"""Access-log entries as APISIX's log-util builds them, shared by file-logger and http-logger.

``AccessLog`` is compiled once from a logger's config (both loggers name the fields alike:
``log_format``, ``log_format_extra``, ``include_req_body`` (+ ``_expr``), ``include_resp_body``
(+ ``_expr``), ``max_req_body_bytes``, ``max_resp_body_bytes``, ``match``) and used per request:

    header_filter -> note_head(ctx, head)         keeps the client response's head
    body_filter   -> collect(ctx, chunk)          a bounded copy (``include_resp_body`` only)
    log           -> await entry(ctx)             the entry, or None when ``match`` says skip

The default entry is APISIX's (``client_ip``, ``route_id``, ``service_id``, ``consumer``,
``start_time`` (ms epoch), ``latency`` / ``upstream_latency`` / ``apisix_latency`` (ms),
``request``, ``response``, ``server``, ``upstream``) plus llmgate's ``request_id`` and, for LLM
calls, an ``llm`` block with the provider, model, token usage and cost (``llm_block``); the
values it is made of are read in ``log_values.py``.
``log_format`` (field -> ``$var`` or literal, nested up to five levels) replaces it;
``log_format_extra`` adds fields to it.

Secrets never reach an entry (better than APISIX, which logs them): credential headers and
cookies are masked, as are credential query arguments in ``uri``, ``url`` and ``querystring``
and in the ``$var``s a ``log_format`` may name (``log_secrets.py``); only the inbound request
is logged, so credentials a plugin adds for the upstream never are.
"""

from __future__ import annotations

import functools
import logging
import socket
import zlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from llmgate import __version__
from llmgate.http.context import StateKey, upstream_addrs
from llmgate.http.expr import Expr, ExprError
from llmgate.observability.log_secrets import (
    Secrets,
    auth_names,
    masked_args,
    masked_headers,
    masked_request_uri,
)
from llmgate.observability.log_values import (
    latencies,
    llm_block,
    llm_summary,
    log_var,
    request_body,
    request_size,
    start_time_ms,
)

if TYPE_CHECKING:
    from llmgate.http.context import RequestContext, ResponseHead

log = logging.getLogger("llmgate.observability.access_log")

MAX_FORMAT_DEPTH = 5

_HEAD_KEY: StateKey[ResponseHead] = StateKey("access_log.head")


@functools.cache
def _hostname() -> str:
    return socket.gethostname()


def _decoded(body: bytes, encoding: str | None, limit: int) -> bytes:
    """A (possibly truncated) compressed body inflated, at most ``limit`` bytes."""
    wbits = {"gzip": 31, "deflate": 15}.get((encoding or "").strip().lower())
    if wbits is None:
        return body
    try:
        return zlib.decompressobj(wbits).decompress(body, limit)
    except zlib.error:
        return body


# -- log_format -----------------------------------------------------------------------------------

# A compiled format: (field, kind, payload) with kind "var" (name), "const" or "nested" (format).
Format = tuple[tuple[str, str, Any], ...]


def compile_format(spec: Mapping[str, Any], depth: int = 1) -> Format:
    fields: list[tuple[str, str, Any]] = []
    for key, value in spec.items():
        if isinstance(value, Mapping):
            nested = compile_format(value, depth + 1) if depth < MAX_FORMAT_DEPTH else ()
            fields.append((key, "nested", nested))
        elif isinstance(value, str) and value.startswith("$"):
            fields.append((key, "var", value[1:]))
        else:
            fields.append((key, "const", value))
    return tuple(fields)


class AccessLog:
    """What one logger plugin writes, compiled once from its config."""

    def __init__(self, config: Any) -> None:
        self.format = compile_format(config.log_format) if config.log_format else None
        extra = config.log_format_extra
        self.extra = compile_format(extra) if extra else None
        match = getattr(config, "match", None)  # file-logger only
        self.match = [_expr(rule, "match") for rule in match] if match else None
        self.include_req_body = config.include_req_body
        self.req_expr = _optional_expr(config.include_req_body_expr, "include_req_body_expr")
        self.include_resp_body = config.include_resp_body
        self.resp_expr = _optional_expr(config.include_resp_body_expr, "include_resp_body_expr")
        self.max_req_body_bytes: int = config.max_req_body_bytes
        self.max_resp_body_bytes: int = config.max_resp_body_bytes
        self._resp_key: StateKey[bytearray | bool] = StateKey("access_log.resp_body")

    @staticmethod
    def note_head(ctx: RequestContext, head: ResponseHead) -> None:
        ctx.state[_HEAD_KEY] = head

    def collect(self, ctx: RequestContext, chunk: bytes) -> None:
        """Keep up to ``max_resp_body_bytes`` of the response body, if this log wants it."""
        kept: bytearray | bool | None = ctx.state.get(self._resp_key)
        if kept is None:
            wanted = self.resp_expr is None or self.resp_expr.eval(ctx.var)
            kept = ctx.state[self._resp_key] = bytearray() if wanted else False
        if isinstance(kept, bytearray) and chunk:
            room = self.max_resp_body_bytes - len(kept)
            if room > 0:
                kept += chunk[:room]

    async def entry(self, ctx: RequestContext) -> dict[str, Any] | None:
        if self.match is not None and not any(rule.eval(ctx.var) for rule in self.match):
            return None
        secret = auth_names(ctx)
        if self.format is not None:
            entry = await self._render(ctx, self.format, secret)
            entry["route_id"] = ctx.route.id
        else:
            entry = await self._default(ctx, secret)
            if self.extra is not None:
                for key, value in (await self._render(ctx, self.extra, secret)).items():
                    entry.setdefault(key, value)
        summary = llm_summary(ctx)
        if summary is not None:  # as APISIX's log-util: whatever the format
            entry["llm_summary"] = summary
        return entry

    async def _render(self, ctx: RequestContext, fields: Format, secret: Secrets) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, kind, payload in fields:
            if kind == "nested":
                out[key] = await self._render(ctx, payload, secret)
            elif kind == "const":
                out[key] = payload
            elif payload == "request_body":
                out[key] = await request_body(ctx, self.max_req_body_bytes)
            else:
                out[key] = log_var(ctx, payload, secret)
        return out

    async def _default(self, ctx: RequestContext, secret: Secrets) -> dict[str, Any]:
        secret_headers, secret_args = secret
        inbound = ctx.inbound
        uri = masked_request_uri(ctx, secret_args)
        host = ctx.var("host") or ctx.var("server_addr") or ""
        request: dict[str, Any] = {
            "method": inbound.method,
            "uri": uri,
            "url": f"{inbound.scheme}://{host}:{ctx.var('server_port') or ''}{uri}",
            "size": request_size(ctx),
            "querystring": masked_args(inbound.query.items(), secret_args),
            "headers": masked_headers(inbound.headers.items(), secret_headers),
        }
        if self.include_req_body and (self.req_expr is None or self.req_expr.eval(ctx.var)):
            body = await request_body(ctx, self.max_req_body_bytes)
            if body is not None:
                request["body"] = body
        head: ResponseHead | None = ctx.state.get(_HEAD_KEY)
        response: dict[str, Any] = {
            "status": ctx.status,
            "headers": masked_headers(head.headers.items(), secret_headers) if head else {},
            "size": ctx.bytes_sent,
        }
        kept = ctx.state.get(self._resp_key)
        if self.include_resp_body and kept:
            encoding = head.headers.get("Content-Encoding") if head else None
            inflated = _decoded(bytes(kept), encoding, self.max_resp_body_bytes)
            response["body"] = inflated.decode("utf-8", "replace")
        latency, upstream_latency, apisix_latency = latencies(ctx)
        entry: dict[str, Any] = {
            "client_ip": ctx.var("remote_addr"),
            "route_id": ctx.route.id,
            "service_id": "",
            "start_time": start_time_ms(ctx),
            "latency": latency,
            "apisix_latency": apisix_latency,
            "request": request,
            "response": response,
            "server": {"hostname": _hostname(), "version": __version__},
        }
        optional = {
            "upstream_latency": upstream_latency,
            "consumer": {"username": ctx.consumer.username} if ctx.consumer else None,
            "upstream": upstream_addrs(ctx),  # APISIX's ctx.var.upstream_addr: every try
            "request_id": ctx.request_id,
            "llm": llm_block(ctx),
        }
        entry.update((key, value) for key, value in optional.items() if value is not None)
        return entry


def _expr(rule: Any, field: str) -> Expr:
    try:
        return Expr.compile(rule)
    except ExprError as exc:
        log.warning("%s %r is not a valid condition (%s); it never holds", field, rule, exc)
        return Expr.never()


def _optional_expr(rule: Any, field: str) -> Expr | None:
    return _expr(rule, field) if rule is not None else None
