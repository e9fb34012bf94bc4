"""ai-proxy: sends the request to one LLM provider, in place of the route's upstream.

``ProviderTarget`` (one LLM: provider, credentials, model options, endpoint override) and
``CallOptions`` (timeouts, keepalive, logging) are shared with ai-proxy-multi, as in APISIX's
``ai-proxy/schema.lua``; they live in ``ai/target_config.py``.

At run time (access phase) the client's JSON body is read and classified (chat, completions,
embeddings), shaped for the provider (``options``, ``override``, ``stream_options.include_usage``
for streams) and sent, with the provider's credentials only, to its endpoint; the answer is
relayed as it comes (SSE event by event) while its ``usage`` is recorded in ``LlmCall``; a
stream's usage the client did not ask for is kept from it (``tracking.hide_usage``).
``max_stream_duration_ms`` / ``max_response_bytes`` cap a runaway answer (``ai/caps.py``).

The route is an LLM route (``llm_route``): the gateway's own errors are OpenAI errors
(``ai/replies.py``), every response has ``X-Request-Id``, and ``GET …/models`` answers with
``options.model`` (``ai/models.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from llmgate.ai import forward, tracking
from llmgate.ai.models import ModelEntry, models_answer, models_target
from llmgate.ai.replies import give_retry_after
from llmgate.ai.target import compile_target
from llmgate.ai.target_config import CallOptions, ProviderTarget
from llmgate.http.context import Reply
from llmgate.plugin_api.plugin import Plugin
from llmgate.plugins.request_id import llm_request_id

if TYPE_CHECKING:
    from llmgate.http.context import RequestContext, ResponseHead
    from llmgate.runtime.services import Services


class AIProxyConfig(CallOptions, ProviderTarget):
    pass


class AIProxy(Plugin[AIProxyConfig]):
    name = "ai-proxy"
    priority = 1040
    Config = AIProxyConfig
    # The route's clients are OpenAI clients: OpenAI errors, /models, X-Request-Id.
    llm_route = True
    secret_fields = (
        "auth.header", "auth.query", "auth.gcp.service_account_json",
        "auth.aws.secret_access_key", "auth.aws.session_token",
    )  # fmt: skip

    def __init__(self, config: AIProxyConfig, services: Services, owner: str = "") -> None:
        super().__init__(config, services, owner)
        conf = self.config
        self.target = compile_target(
            f"ai-proxy-{conf.provider}", conf, conf, services.pools, f"{owner} ai-proxy"
        )
        self.llm_provider: str = conf.provider
        model = conf.options.model if conf.options else None
        self.models: tuple[ModelEntry, ...] = ((model, conf.provider),) if model else ()

    async def access(self, ctx: RequestContext) -> Reply | None:
        if not tracking.claim(ctx, self):
            return None  # ai-proxy-multi (which runs first) sends this request
        listing, model = models_target(ctx.inbound.method, ctx.inbound.path)
        if listing:
            return Reply.json(*models_answer(self.models, model))
        refused = forward.wrong_method(ctx)
        if refused is not None:
            return refused
        request = await forward.read_request(ctx, self.config.max_req_body_size)
        if self.target.refusal is not None:
            return Reply.error(501, self.target.refusal)
        self.target.apply(ctx, request)
        ctx.forwarder = forward.send
        return None

    def header_filter(self, ctx: RequestContext, head: ResponseHead) -> None:
        llm_request_id(ctx, head)
        give_retry_after(head)
        tracking.track_head(ctx, self, head, self.target.hides_usage)

    def body_filter(self, ctx: RequestContext, chunk: bytes, eof: bool) -> bytes:
        return tracking.track_chunk(ctx, self, chunk, eof)
