"""ai-proxy: sends the request to one LLM provider, in place of the route's upstream.

``ProviderTarget`` (one LLM: provider, credentials, model options, endpoint override) and
``CallOptions`` (timeouts, keepalive, logging) are shared with ai-proxy-multi, as in APISIX's
``ai-proxy/schema.lua``.

At run time (access phase) the client's JSON body is read and classified (chat, completions,
embeddings), shaped for the provider (``options``, ``override``, ``stream_options.include_usage``
for streams) and sent, with the provider's credentials only, to its endpoint; the answer is
relayed as it comes (SSE event by event) while its ``usage`` is recorded in ``LlmCall``.
``max_stream_duration_ms`` / ``max_response_bytes`` cap a runaway answer (``ai/caps.py``).

The route is an LLM route (``llm_route``): the gateway's own errors are OpenAI errors
(``ai/replies.py``), every response has ``X-Request-Id``, and ``GET …/models`` answers with
``options.model`` (``ai/models.py``).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import ConfigDict, Field, model_validator

from llmgate.ai import forward, tracking
from llmgate.ai.models import ModelEntry, models_answer, models_target
from llmgate.ai.target import compile_target
from llmgate.plugin_api.config import ConfigSection, EnvOrPattern, PluginConfig, is_env_ref
from llmgate.plugin_api.plugin import Plugin
from llmgate.plugins.request_id import llm_request_id
from llmgate.proxy.context import Reply

if TYPE_CHECKING:
    from llmgate.proxy.context import RequestContext, ResponseHead
    from llmgate.runtime.services import Services

Provider = Literal[
    "openai", "deepseek", "aimlapi", "anthropic", "openai-compatible", "azure-openai",
    "openrouter", "gemini", "vertex-ai", "bedrock",
]  # fmt: skip

# Providers without a default host: without an endpoint every request would fail, so llmgate
# refuses the config (APISIX's docs require it for openai-compatible but its check does not).
NEEDS_ENDPOINT = frozenset({"openai-compatible", "azure-openai"})

# What ai-proxy-multi's endpoint check accepts: http(s)://host[:port][/path...].
ENDPOINT_PATTERN = r"^https?://[^:/]+(:\d*)?(/.*)?$"

# Request protocols whose outgoing body ``override.request_body`` may patch.
TargetProtocol = Literal[
    "anthropic-messages", "bedrock-converse", "openai-chat", "openai-embeddings",
    "openai-responses", "passthrough",
]  # fmt: skip

AuthParamName = Annotated[str, Field(pattern=r"^[a-zA-Z0-9._-]+$")]
NonEmpty = Annotated[str, Field(min_length=1)]


class GcpAuth(ConfigSection):
    """A GCP service account (vertex-ai); read from GCP_SERVICE_ACCOUNT when the JSON is unset."""

    service_account_json: str | None = None
    max_ttl: Annotated[int, Field(ge=1)] | None = None
    # Renew the access token this many seconds before it expires.
    expire_early_secs: Annotated[int, Field(ge=0)] = 60


class AwsAuth(ConfigSection):
    """AWS IAM credentials for SigV4 signing (bedrock)."""

    access_key_id: NonEmpty
    secret_access_key: NonEmpty
    session_token: NonEmpty | None = None


class ProviderAuth(ConfigSection):
    """Credentials added to every call to the provider."""

    model_config = ConfigDict(extra="forbid")

    header: dict[AuthParamName, str] | None = None
    query: dict[AuthParamName, str] | None = None
    gcp: GcpAuth | None = None
    aws: AwsAuth | None = None


class ModelOptions(ConfigSection):
    """Request body fields forced on every call (``model``, ``temperature``, ...)."""

    model_config = ConfigDict(extra="allow")

    model: str | None = None


class LlmOptions(ConfigSection):
    """Options mapped to each provider's own field name."""

    model_config = ConfigDict(extra="forbid")

    # Sent as max_tokens, max_completion_tokens or max_output_tokens, as the target expects.
    max_tokens: Annotated[int, Field(ge=1)] | None = None


class Override(ConfigSection):
    endpoint: Annotated[str, Field(min_length=1), EnvOrPattern(ENDPOINT_PATTERN)] | None = None
    llm_options: LlmOptions | None = None
    # Deep-merged into the outgoing body, per target protocol.
    request_body: dict[TargetProtocol, dict[str, Any]] | None = None
    # False: the client's fields win and request_body only fills in what is missing.
    request_body_force_override: bool = False


class ProviderConf(ConfigSection):
    project_id: str | None = None
    region: NonEmpty | None = None


class Logging(ConfigSection):
    # Log model, duration and token counts.
    summaries: bool = False
    # Log request and response bodies.
    payloads: bool = False


class ProviderTarget(ConfigSection):
    """One LLM: which provider, how to authenticate, what to force into the body, where."""

    provider: Provider
    provider_conf: ProviderConf | None = None
    auth: ProviderAuth
    options: ModelOptions | None = None
    override: Override | None = None

    @model_validator(mode="after")
    def _provider_requirements(self) -> ProviderTarget:
        endpoint = self.override.endpoint if self.override else None
        region = self.provider_conf.region if self.provider_conf else None
        sa_json = self.auth.gcp.service_account_json if self.auth.gcp else None
        if sa_json is not None and not is_env_ref(sa_json):
            try:
                json.loads(sa_json)
            except (ValueError, RecursionError) as exc:
                raise ValueError(f"invalid gcp service_account_json: {exc}") from None
        if self.provider == "vertex-ai" and not endpoint:
            project_id = self.provider_conf.project_id if self.provider_conf else None
            if not (project_id and region):
                raise ValueError(
                    "vertex-ai requires either provider_conf (project_id + region) "
                    "or override.endpoint"
                )
        if self.provider == "bedrock":
            if not region:
                raise ValueError("bedrock requires provider_conf.region")
            if self.auth.aws is None:
                raise ValueError("bedrock requires auth.aws")
        if self.provider in NEEDS_ENDPOINT and not endpoint:
            raise ValueError(f"{self.provider} requires override.endpoint")
        return self


class CallOptions(PluginConfig):
    """How the gateway calls the LLM; times are in milliseconds."""

    logging: Logging | None = None
    timeout: Annotated[int, Field(ge=1, le=600000)] = 30000
    max_req_body_size: Annotated[int, Field(ge=1)] = 67108864
    # Caps on a runaway response; unset means no cap.
    max_stream_duration_ms: Annotated[int, Field(ge=1)] | None = None
    max_response_bytes: Annotated[int, Field(ge=1)] | None = None
    keepalive: bool = True
    keepalive_timeout: Annotated[int, Field(ge=1000)] = 60000
    keepalive_pool: Annotated[int, Field(ge=1)] = 30
    # 0 flushes every streamed chunk as it arrives.
    streaming_flush_interval_ms: Annotated[int, Field(ge=0)] = 10
    ssl_verify: bool = True

    @model_validator(mode="after")
    def _refuse_what_is_not_enforced(self) -> CallOptions:
        # Accepted means enforced: llmgate never logs prompts.
        if self.logging is not None and self.logging.payloads:
            raise ValueError("logging.payloads is not supported: llmgate never logs prompts")
        return self


class AIProxyConfig(CallOptions, ProviderTarget):
    pass


class AIProxy(Plugin):
    name = "ai-proxy"
    priority = 1040
    Config = AIProxyConfig
    # The route's clients are OpenAI clients: OpenAI errors, /models, X-Request-Id.
    llm_route = True
    secret_fields = (
        "auth.header", "auth.query", "auth.gcp.service_account_json",
        "auth.aws.secret_access_key", "auth.aws.session_token",
    )  # fmt: skip

    config: AIProxyConfig

    def __init__(self, config: PluginConfig, services: Services, owner: str = "") -> None:
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
        request = await forward.read_request(ctx, self.config.max_req_body_size)
        if self.target.refusal is not None:
            return Reply.error(501, self.target.refusal)
        self.target.apply(ctx, request)
        ctx.forwarder = forward.send
        return None

    def header_filter(self, ctx: RequestContext, head: ResponseHead) -> None:
        llm_request_id(ctx, head)
        tracking.track_head(ctx, self, head)

    def body_filter(self, ctx: RequestContext, chunk: bytes, eof: bool) -> bytes:
        return tracking.track_chunk(ctx, self, chunk, eof)
