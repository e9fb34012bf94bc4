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
calls, an ``llm`` block with the provider, model, token usage and cost (``llm_block``).
``log_format`` (field -> ``$var`` or literal, nested up to five levels) replaces it;
``log_format_extra`` adds fields to it.

Secrets never reach an entry (better than APISIX, which logs them): credential headers and
cookies are masked, as are credential query arguments in ``uri``, ``url`` and ``querystring``
and in the ``$var``s a ``log_format`` may name; only the inbound request is logged, so
credentials a plugin adds for the upstream never are.
"""

from __future__ import annotations

import functools
import logging
import socket
import time
import zlib
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_plus

from llmgate import __version__
from llmgate.ai.call import LlmCall
from llmgate.ai.pricing import amount, call_cost
from llmgate.http.body import BodyState
from llmgate.http.context import StateKey
from llmgate.http.expr import Expr, ExprError
from llmgate.runtime.snapshot import CHAIN

if TYPE_CHECKING:
    from llmgate.http.context import RequestContext, ResponseHead

log = logging.getLogger("llmgate.observability.access_log")

MASK = "***"
SECRET_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "apikey",
        "api-key",
        "x-api-key",
        "cookie",
        "set-cookie",
    }
)
SECRET_ARGS = frozenset({"api_key", "apikey", "key", "token", "access_token"})
MAX_FORMAT_DEPTH = 5
# An unread request body is read for the log only when it is this small and fully arrived.
SMALL_BODY = 64 * 1024

_HEAD_KEY: StateKey[ResponseHead] = StateKey("access_log.head")


@functools.cache
def _hostname() -> str:
    return socket.gethostname()


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


# -- secrets -----------------------------------------------------------------------------------


# (header names, query argument names) whose values are credentials, lower-case.
Secrets = tuple[frozenset[str], frozenset[str]]


def auth_names(ctx: RequestContext) -> Secrets:
    """Header and query argument names carrying credentials for this route: the fixed ones plus
    those the route's auth plugins read (key-auth's ``header`` / ``query``)."""
    headers, args = SECRET_HEADERS, SECRET_ARGS
    for plugin in ctx.state[CHAIN].plugins:
        if plugin.kind == "auth":
            header = getattr(plugin.config, "header", None)
            query = getattr(plugin.config, "query", None)
            if isinstance(header, str) and header.lower() not in headers:
                headers = headers | {header.lower()}
            if isinstance(query, str) and query.lower() not in args:
                args = args | {query.lower()}
    return headers, args


def _grouped(pairs: Iterable[tuple[str, str]], secret: frozenset[str]) -> dict[str, Any]:
    """Values by name (a list when repeated), those of ``secret`` names masked."""
    out: dict[str, Any] = {}
    for name, value in pairs:
        shown = MASK if name.lower() in secret else value
        if name not in out:
            out[name] = shown
        elif isinstance(out[name], list):
            out[name].append(shown)
        else:
            out[name] = [out[name], shown]
    return out


def masked_headers(items: Iterable[tuple[str, str]], secret: frozenset[str]) -> dict[str, Any]:
    """Headers by lower-case name (a list when repeated), credentials masked."""
    return _grouped(((name.lower(), value) for name, value in items), secret)


def masked_args(items: Iterable[tuple[str, str]], secret: frozenset[str]) -> dict[str, Any]:
    """Query arguments by name (a list when repeated), credentials masked."""
    return _grouped(items, secret)


def masked_query(raw_query: str, secret: frozenset[str]) -> str:
    """``raw_query`` with the values of credential arguments masked, the rest as sent."""
    if not raw_query:
        return raw_query
    parts = []
    for part in raw_query.split("&"):
        name = part.partition("=")[0]
        parts.append(f"{name}={MASK}" if unquote_plus(name).lower() in secret else part)
    return "&".join(parts)


def masked_request_uri(ctx: RequestContext, secret_args: frozenset[str]) -> str:
    path, mark, query = ctx.inbound.raw_path.partition("?")
    return path + mark + masked_query(query, secret_args)


# -- values of the log phase ---------------------------------------------------------------------


def latencies(ctx: RequestContext) -> tuple[float, float | None, float]:
    """Total, upstream and gateway latency in ms (upstream None when no upstream answered)."""
    total = _ms(time.perf_counter() - ctx.started)
    if ctx.upstream_latency is None:
        return total, None, total
    upstream = _ms(ctx.upstream_latency)
    return total, upstream, max(round(total - upstream, 3), 0.0)


def start_time_ms(ctx: RequestContext) -> int:
    return int((time.time() - (time.perf_counter() - ctx.started)) * 1000)


def request_size(ctx: RequestContext) -> int:
    """Bytes of the request line, headers and body, as nginx's ``$request_length``."""
    inbound = ctx.inbound
    size = len(inbound.method) + len(inbound.raw_path) + 12  # 2 spaces, HTTP/1.1, CRLF
    size += sum(len(name) + len(value) + 4 for name, value in inbound.raw_headers) + 2
    body = ctx.body.buffered
    return size + (len(body) if body is not None else inbound.content_length or 0)


def llm_block(ctx: RequestContext) -> dict[str, Any] | None:
    """The ``llm`` block of a default entry: who answered, the tokens, what it cost (in the
    price table's currency; null without a price), ``cache: "hit"`` for an answer proxy-cache
    replayed (its tokens were served from the cache, at no cost), and ``aborted`` when the
    gateway cut the answer short (``max_stream_duration_ms``, ``max_response_bytes``)."""
    call = LlmCall.find(ctx)
    if call is None:
        return None
    usage = call.usage
    started = call.started
    cost = call_cost(ctx, call)
    block: dict[str, Any] = {
        "provider": call.provider,
        "model": call.model,
        "instance": call.instance,
        "request_type": call.request_type,
        "stream": call.stream,
        "prompt_tokens": usage.prompt_tokens if usage else 0,
        "completion_tokens": usage.completion_tokens if usage else 0,
        "total_tokens": usage.total_tokens if usage else 0,
        "cached_tokens": usage.cached_tokens if usage else 0,
        "cost": amount(cost) if cost is not None else None,
        "ttft_ms": _ms(call.first_token - started) if started and call.first_token else None,
        "duration_ms": _ms(call.finished - started) if started and call.finished else None,
    }
    if call.cache is not None:
        block["cache"] = call.cache
    if call.aborted is not None:
        block["aborted"] = call.aborted
    return block


def _llm_cost(ctx: RequestContext) -> float | None:
    call = LlmCall.find(ctx)
    cost = call_cost(ctx, call) if call is not None else None
    return amount(cost) if cost is not None else None


async def request_body(ctx: RequestContext, limit: int) -> str | None:
    """The inbound body, at most ``limit`` bytes: the one the gateway read, or a small one that
    has fully arrived (never waits on the client, never takes a streamed body)."""
    body = ctx.body.buffered
    if body is None:
        reader = ctx.body
        if reader.state is not BodyState.UNREAD or not reader.exists:
            return None
        if reader.length is None or reader.length > SMALL_BODY or not reader.arrived:
            return None
        body = await reader.read()
    return body[:limit].decode("utf-8", "replace")


def _decoded(body: bytes, encoding: str | None, limit: int) -> bytes:
    """A (possibly truncated) compressed body inflated, at most ``limit`` bytes."""
    wbits = {"gzip": 31, "deflate": 15}.get((encoding or "").strip().lower())
    if wbits is None:
        return body
    try:
        return zlib.decompressobj(wbits).decompress(body, limit)
    except zlib.error:
        return body


# Variables a ``log_format`` may use besides the request's (``ctx.var``).
def _llm_var(read: Callable[[LlmCall], Any]) -> Callable[[RequestContext], Any]:
    def value(ctx: RequestContext) -> Any:
        call = LlmCall.find(ctx)
        return read(call) if call is not None else None

    return value


_LOG_VARS: dict[str, Callable[[RequestContext], Any]] = {
    "request_time": lambda ctx: round(time.perf_counter() - ctx.started, 3),
    "upstream_response_time": lambda ctx: (
        round(ctx.upstream_latency, 3) if ctx.upstream_latency is not None else None
    ),
    "bytes_sent": lambda ctx: ctx.bytes_sent,
    "request_length": request_size,
    "msec": lambda ctx: round(time.time(), 3),
    "time_iso8601": lambda ctx: time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()),
    "llm_model": _llm_var(lambda call: call.model),
    "llm_stream": _llm_var(lambda call: call.stream),
    "llm_prompt_tokens": _llm_var(lambda call: call.usage.prompt_tokens if call.usage else 0),
    "llm_completion_tokens": _llm_var(
        lambda call: call.usage.completion_tokens if call.usage else 0
    ),
    "llm_total_tokens": _llm_var(lambda call: call.usage.total_tokens if call.usage else 0),
    "llm_cost": _llm_cost,
    "llm_cache": _llm_var(lambda call: call.cache),
    "llm_request_type": _llm_var(lambda call: call.request_type),
    "llm_time_to_first_token": _llm_var(
        lambda call: (
            int((call.first_token - call.started) * 1000)
            if call.first_token and call.started
            else None
        )
    ),
}


def log_var(ctx: RequestContext, name: str, secret: Secrets) -> Any:
    """A ``$var`` for a log entry, with credentials masked."""
    headers, args = secret
    if name in ("request_uri", "query_string", "args"):
        if name == "request_uri":
            return masked_request_uri(ctx, args)
        return masked_query(ctx.inbound.query_string, args)
    if name.startswith("http_") and name[5:].replace("_", "-").lower() in headers:
        return MASK if ctx.var(name) is not None else None
    if name.startswith("arg_") and name[4:].lower() in args:
        return MASK if ctx.var(name) is not None else None
    if name.startswith("cookie_"):
        return MASK if ctx.var(name) is not None else None
    special = _LOG_VARS.get(name)
    return special(ctx) if special is not None else ctx.var(name)


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
            return entry
        entry = await self._default(ctx, secret)
        if self.extra is not None:
            for key, value in (await self._render(ctx, self.extra, secret)).items():
                entry.setdefault(key, value)
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
            "upstream": ctx.upstream_addr,
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
