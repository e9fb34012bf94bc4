"""The values an access-log entry is made of, read from a finished request: latencies, start
time, nginx's ``$request_length``, the ``llm`` block of an LLM call, the inbound body, and the
``$var``s a ``log_format`` may name (the request's variables plus ``request_time``,
``bytes_sent``, ``llm_*``, ...), credentials masked (``log_secrets.py``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from llmgate.ai.call import LlmCall
from llmgate.ai.pricing import amount, call_cost
from llmgate.http.body import BodyState
from llmgate.http.context import (
    BODY_BYTES,
    HEAD_BYTES,
    upstream_host,
    upstream_scheme,
)
from llmgate.observability.log_secrets import (
    MASK,
    Secrets,
    masked_query,
    masked_request_uri,
    masked_upstream_uri,
)

if TYPE_CHECKING:
    from llmgate.http.context import RequestContext

# nginx's ``$time_local``.
TIME_LOCAL = "%d/%b/%Y:%H:%M:%S %z"

# An unread request body is read for the log only when it is this small and fully arrived.
SMALL_BODY = 64 * 1024


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


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
    replayed (its tokens were served from the cache, at no cost), ``aborted`` when the
    gateway cut the answer short (``max_stream_duration_ms``, ``max_response_bytes``), and
    ``usage_estimated: true`` when no usage came and the tokens are the gateway's estimate
    (``tracking.settle_usage``)."""
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
    if call.estimated:
        block["usage_estimated"] = True
    return block


def llm_summary(ctx: RequestContext) -> dict[str, Any] | None:
    """APISIX's ``llm_summary`` (ai-proxy's ``logging.summaries``): its variables named
    without ``llm_``; durations in ms."""
    call = LlmCall.find(ctx)
    if call is None or not call.summaries:
        return None
    usage = call.usage
    started = call.started
    return {
        "request_model": call.asked_model,
        "model": call.model,
        "duration": _ms(call.first_token - started) if started and call.first_token else 0,
        "prompt_tokens": usage.prompt_tokens if usage else 0,
        "completion_tokens": usage.completion_tokens if usage else 0,
        "total_tokens": usage.total_tokens if usage else 0,
        "upstream_response_time": (
            _ms(call.finished - started) if started and call.finished else None
        ),
        "stream": call.stream,
        "cache_read_input_tokens": usage.cached_tokens if usage else 0,
    }


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


def body_bytes_sent(ctx: RequestContext) -> int:
    """nginx's ``$body_bytes_sent``: the response body written (a streamed one's bytes after
    its head), 0 when nothing was."""
    whole = ctx.state.get(BODY_BYTES)
    if whole is not None:
        return whole
    head = ctx.state.get(HEAD_BYTES)
    if ctx.bytes_sent is None or head is None:
        return 0
    return max(ctx.bytes_sent - head, 0)


def _request_line(ctx: RequestContext, secret_args: frozenset[str]) -> str:
    """nginx's ``$request``, its credential query arguments masked."""
    version = ctx.inbound.version
    uri = masked_request_uri(ctx, secret_args)
    return f"{ctx.inbound.method} {uri} HTTP/{version.major}.{version.minor}"


# Variables a ``log_format`` may use besides the request's (``ctx.var``).
def _llm_var(read: Callable[[LlmCall], Any]) -> Callable[[RequestContext], Any]:
    def value(ctx: RequestContext) -> Any:
        call = LlmCall.find(ctx)
        return read(call) if call is not None else None

    return value


_LOG_VARS: dict[str, Callable[[RequestContext], Any]] = {
    "request_time": lambda ctx: round(time.perf_counter() - ctx.started, 3),
    "bytes_sent": lambda ctx: ctx.bytes_sent,
    "request_length": request_size,
    "msec": lambda ctx: round(time.time(), 3),
    "time_iso8601": lambda ctx: time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()),
    "time_local": lambda ctx: time.strftime(TIME_LOCAL, time.localtime()),
    "body_bytes_sent": body_bytes_sent,
    "upstream_scheme": upstream_scheme,
    "upstream_host": upstream_host,
    "upstream_uri": lambda ctx: masked_upstream_uri(ctx) if ctx.upstream_addr else None,
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
    # APISIX's names: traditional_http when no LLM was called; the model asked for.
    "request_type": lambda ctx: (
        call.request_type if (call := LlmCall.find(ctx)) is not None else "traditional_http"
    ),
    "request_llm_model": _llm_var(lambda call: call.asked_model),
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
    if name in ("request_uri", "query_string", "args", "request"):
        if name == "request_uri":
            return masked_request_uri(ctx, args)
        if name == "request":
            return _request_line(ctx, args)
        return masked_query(ctx.inbound.query_string, args)
    if (
        name.startswith(("http_", "sent_http_", "upstream_http_"))
        and name.partition("http_")[2].replace("_", "-").lower() in headers
    ):
        return MASK if ctx.var(name) is not None else None
    if name.startswith("arg_") and name[4:].lower() in args:
        return MASK if ctx.var(name) is not None else None
    if name.startswith("cookie_"):
        return MASK if ctx.var(name) is not None else None
    special = _LOG_VARS.get(name)
    return special(ctx) if special is not None else ctx.var(name)
