"""openai-compatible (llmgate's): a plain route whose upstream speaks OpenAI's API, as the seed
blog's route to ``api.openai.com`` does, treated as an LLM route.

With it, the route behaves as an ai-proxy route does where the gateway has a say:

- the gateway's own errors are OpenAI errors (``ai/replies.py``), ``X-Request-Id`` is on every
  response (``request_id.llm_request_id``);
- ``GET …/models`` answers with ``models`` when they are listed (else the upstream answers);
- a streamed chat or completions request is sent with ``stream_options.include_usage`` so its
  tokens are known (the answers themselves are accounted on every route, ``ai/tracking.py``);
  the usage chunk is then dropped from what a client that did not ask for it receives, and
  the client's ``Accept-Encoding`` is not passed on (an encoded stream cannot be read).
  ``include_usage`` unset means: on when the route has ai-rate-limiting or a logger
  (file-logger, http-logger), whose records would otherwise show 0 tokens for streams.
- ai-rate-limiting budgets its calls (as on any plain route: ``plugins/ai_rate_limiting.py``),
  from their real usage, streams included.

On a route with ai-proxy or ai-proxy-multi it does nothing: they already do all of it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import orjson
from pydantic import Field

from llmgate.ai import tracking
from llmgate.ai.call import LlmCall
from llmgate.ai.models import models_answer, models_target, unique
from llmgate.ai.protocols import detect, protocol_of_path
from llmgate.ai.replies import give_retry_after
from llmgate.ai.stream_usage import UsageChunkFilter, with_usage
from llmgate.http import json_body
from llmgate.http.body import MAX_BUFFERED_BODY
from llmgate.http.context import Reply, StateKey
from llmgate.plugin_api.config import PluginConfig, UniqueItems
from llmgate.plugin_api.plugin import Plugin
from llmgate.plugins.request_id import llm_request_id
from llmgate.runtime.snapshot import CHAIN

if TYPE_CHECKING:
    from llmgate.http.context import RequestContext, ResponseHead
    from llmgate.runtime.services import Services

# Plugins whose records need a stream's usage: with one on the route, include_usage is on.
USAGE_READERS = frozenset({"ai-rate-limiting", "file-logger", "http-logger"})
_FILTER_KEY: StateKey[UsageChunkFilter] = StateKey("openai-compatible.usage-filter")

ModelId = Annotated[str, Field(min_length=1, max_length=200)]


class OpenAICompatibleConfig(PluginConfig):
    # What GET …/models answers with; unset: the upstream's own /models is asked.
    models: Annotated[list[ModelId], Field(min_length=1, max_length=1000), UniqueItems()] | None = (
        None
    )
    # Who owns the models in that list (OpenAI's ``owned_by``).
    owned_by: Annotated[str, Field(min_length=1, max_length=64)] = "upstream"
    # Ask streams for their usage (and hide it from clients that did not); unset: on when the
    # route has ai-rate-limiting, file-logger or http-logger.
    include_usage: bool | None = None


class OpenAICompatible(Plugin[OpenAICompatibleConfig]):
    name = "openai-compatible"
    priority = 1039  # after the prompt plugins (1070-1072) and ai-proxy (1040), before limits
    Config = OpenAICompatibleConfig
    llm_route = True
    llm_provider = "upstream"

    def __init__(self, config: OpenAICompatibleConfig, services: Services, owner: str = "") -> None:
        super().__init__(config, services, owner)
        conf = self.config
        self.models = unique((m, conf.owned_by) for m in conf.models or ())

    async def access(self, ctx: RequestContext) -> Reply | None:
        if tracking.CLAIM_KEY in ctx.state:
            return None  # ai-proxy / ai-proxy-multi sends this request
        method = ctx.inbound.method
        if self.models:
            listing, model = models_target(method, ctx.inbound.path)
            if listing:
                return Reply.json(*models_answer(self.models, model))
        if method == "POST" and self._include_usage(ctx):
            await self._ask_for_usage(ctx)
        return None

    def header_filter(self, ctx: RequestContext, head: ResponseHead) -> None:
        llm_request_id(ctx, head)
        give_retry_after(head)
        if _FILTER_KEY in ctx.state:
            # Kept for the provider's stream, and for a disk HIT's replay (answered after
            # this plugin's access asked for the usage: stored with it).
            call = LlmCall.find(ctx)
            hit = call is not None and call.cache_hit
            if not ((head.from_upstream or hit) and tracking.readable_stream(head)):
                del ctx.state[_FILTER_KEY]
        elif tracking.CLAIM_KEY not in ctx.state and self._include_usage(ctx):
            # A stream proxy-cache replays as stored: with the usage this plugin asked for.
            replayed = tracking.replayed_stream(ctx, head)
            if replayed is not None and with_usage(replayed[0]) is not None:
                ctx.state[_FILTER_KEY] = UsageChunkFilter()

    def body_filter(self, ctx: RequestContext, chunk: bytes, eof: bool) -> bytes:
        usage_filter: UsageChunkFilter | None = ctx.state.get(_FILTER_KEY)
        return chunk if usage_filter is None else usage_filter.feed(chunk, eof)

    def _include_usage(self, ctx: RequestContext) -> bool:
        if self.config.include_usage is not None:
            return self.config.include_usage
        return any(plugin.name in USAGE_READERS for plugin in ctx.state[CHAIN].plugins)

    async def _ask_for_usage(self, ctx: RequestContext) -> None:
        """A streamed chat / completions request goes out with include_usage; its usage
        chunk is dropped on the way back unless the client asked for it."""
        if protocol_of_path(ctx.outbound.path) == "embeddings":
            return
        length = ctx.body.length
        if (
            ctx.outbound.body is None
            and ctx.body.buffered is None
            and (length is None or length > MAX_BUFFERED_BODY)
        ):
            return  # not read whole for this: a large or unframed body streams through
        raw = await ctx.current_body()
        try:  # read as the upstream will (BOM, UTF-16, NaN...): its usage must be asked for
            body = json_body.parse(raw).value
        except json_body.NotJson:
            return
        if not isinstance(body, dict) or detect(body, ctx.outbound.path) not in (
            "chat",
            "completions",
        ):
            return
        asked = with_usage(body)
        if asked is None:
            return
        ctx.outbound.body = orjson.dumps(asked)
        # An encoded stream could be neither accounted nor filtered (ai-proxy drops it too).
        ctx.outbound.headers.popall("Accept-Encoding", None)
        ctx.state[_FILTER_KEY] = UsageChunkFilter()
