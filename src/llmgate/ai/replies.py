"""The one hook the data plane calls where a reply the gateway itself produced (a plugin's
``Reply`` or an ``HttpError``) is about to become the client's response.

``gateway_reply(ctx, chain, reply)`` returns the reply to send:

- on an LLM route (a plugin of the chain has ``llm_route = True``: ai-proxy, ai-proxy-multi,
  openai-compatible), an APISIX-shaped error (``{"error_msg"}`` / ``{"message"}``) becomes an
  OpenAI error (``ai/openai_errors.py``), with APISIX's message; a reply carrying
  ``Retry-After`` is a limiter's, hence a ``rate_limit_error``.  Plain routes keep APISIX's
  bodies.
- on an LLM route, every 429 carries ``Retry-After``, a provider's too (``give_retry_after``,
  called by the LLM plugins' header filters).
- on any route, an answer proxy-cache replays (``Apisix-Cache-Status: HIT``) for an
  OpenAI-style call is accounted as a call with ``cache: "hit"``: its body is watched as it is
  sent, so its usage shows in metrics, logs and usage records, at no cost.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import orjson
from multidict import CIMultiDict

from llmgate.ai.call import CACHE_HIT, STATE_KEY, LlmCall
from llmgate.ai.openai_errors import openai_error, retry_after_for
from llmgate.ai.protocols import detect, protocol_of_path
from llmgate.ai.stream_usage import UsageChunkFilter
from llmgate.ai.tracking import CLAIM_KEY, PASSIVE_CALL_KEY, USAGE_FILTER_KEY, ResponseTracker
from llmgate.http.context import Reply

if TYPE_CHECKING:
    from llmgate.http.context import RequestContext, ResponseHead

CACHE_STATUS = "Apisix-Cache-Status"


def llm_plugin(chain: Any) -> Any:
    """The plugin that makes ``chain``'s route an LLM route, if any (``chain``: a
    ``PluginChain``, typed loosely as it sits in a layer above this one)."""
    for plugin in chain.plugins:
        if getattr(plugin, "llm_route", False):
            return plugin
    return None


def gateway_reply(ctx: RequestContext, chain: Any, reply: Reply) -> Reply:
    """The reply to send for ``reply`` (see the module's docstring)."""
    headers = ctx.response_headers
    if headers is not None and headers.get(CACHE_STATUS) == "HIT" and 200 <= reply.status < 300:
        reply = _cached(ctx, chain, reply)
    if reply.status >= 400 and isinstance(reply.body, bytes) and llm_plugin(chain) is not None:
        limited = "Retry-After" in reply.headers
        body = openai_error(reply.status, reply.body, limited)
        if body is not None:
            head = CIMultiDict(reply.headers)
            head["Content-Type"] = "application/json"
            reply = Reply(reply.status, body, head)
    return reply


def give_retry_after(head: ResponseHead) -> None:
    """An LLM route's 429 without ``Retry-After`` (a provider's) is given one (SPEC §6)."""
    value = retry_after_for(head.status, head.headers)
    if value is not None:
        head.headers["Retry-After"] = value


def _protocol(ctx: RequestContext) -> str | None:
    protocol = protocol_of_path(ctx.outbound.path) or protocol_of_path(ctx.inbound.path)
    if protocol is not None:
        return protocol
    body = ctx.outbound.body if ctx.outbound.body is not None else ctx.body.buffered
    if not body:
        return None
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return detect(payload, "") if isinstance(payload, dict) else None


def _cached(ctx: RequestContext, chain: Any, reply: Reply) -> Reply:
    """Account an answer replayed from the cache; its body is watched as it is sent.

    A disk HIT comes after the access phase: an AI plugin may have prepared the call for the
    provider (claimed it, shaped the body, decided to hide a stream's usage) and
    ai-rate-limiting reserved for it.  That call, never sent, becomes the cache's: a fresh
    call with ``cache: "hit"`` (a reservation is settled at 0), and the usage the plugin would
    have hidden is hidden from the replay here."""
    prepared = LlmCall.find(ctx)
    if (prepared is not None and prepared.started is not None) or ctx.inbound.method != "POST":
        return reply
    protocol = _protocol(ctx)
    if protocol is None:
        return reply
    usage_filter: UsageChunkFilter | None = None
    if prepared is not None:
        if ctx.state.pop(CLAIM_KEY, None) is not None:
            usage_filter = ctx.state.pop(USAGE_FILTER_KEY, None)
        ctx.state.pop(PASSIVE_CALL_KEY, None)
        del ctx.state[STATE_KEY]
    plugin = llm_plugin(chain)
    call = LlmCall.of(ctx)
    call.provider = getattr(plugin, "llm_provider", None) or "upstream"
    call.protocol = protocol
    call.cache = CACHE_HIT
    call.stream = "text/event-stream" in reply.headers.get("Content-Type", "")
    call.started = ctx.started
    tracker = ResponseTracker(call, reply.status, reply.headers)
    if isinstance(reply.body, bytes):
        tracker.feed_whole(reply.body)
        return reply
    return Reply(reply.status, _watched(reply.body, tracker, usage_filter), reply.headers)


async def _watched(
    body: AsyncIterator[bytes], tracker: ResponseTracker, hiding: UsageChunkFilter | None
) -> AsyncIterator[bytes]:
    async for chunk in body:
        tracker.feed(chunk, False)
        if hiding is None:
            yield chunk
        elif shown := hiding.feed(chunk, False):
            yield shown
    tracker.feed(b"", True)
    if hiding is not None and (rest := hiding.feed(b"", True)):
        yield rest
