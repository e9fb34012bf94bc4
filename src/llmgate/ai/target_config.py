"""The configuration of one LLM target, shared by ai-proxy and ai-proxy-multi (APISIX's
``ai-proxy/schema.lua``): ``ProviderTarget`` (provider, credentials, model options, endpoint
override) and ``CallOptions`` (timeouts, keepalive, logging).  ``ai/target.py`` compiles them.

It sits in ``ai/`` (below the plugins) so that ``ai/target.py`` can name it without importing a
plugin.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, model_validator

from llmgate.plugin_api.config import ConfigSection, EnvOrPattern, PluginConfig, is_env_ref

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
