"""Where each provider listens by default and what it speaks (APISIX's ``ai-providers/``).

``override.endpoint`` replaces scheme, host, port and path; without it a provider's default
host is used with the path of the request's protocol.  Every provider listed here speaks
OpenAI's wire format; the ones needing request signing (bedrock) or token exchange
(vertex-ai's service accounts) are refused at request time (see ``unsupported``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from llmgate.ai.protocols import APISIX_NAMES, Protocol

_OPENAI_PATHS: Mapping[Protocol, str] = {
    "chat": "/v1/chat/completions",
    "completions": "/v1/completions",
    "embeddings": "/v1/embeddings",
}


@dataclass(frozen=True, slots=True)
class ProviderDefaults:
    host: str | None  # None: override.endpoint is required
    paths: Mapping[Protocol, str]  # the protocols it supports, with their default paths
    # How it names the cap on output tokens in a chat request (override.llm_options).
    max_tokens_field: str = "max_tokens"
    # The URL names the deployment, so the body's model is dropped.
    remove_model: bool = False


PROVIDERS: Mapping[str, ProviderDefaults] = {
    "openai": ProviderDefaults(
        "api.openai.com", _OPENAI_PATHS, max_tokens_field="max_completion_tokens"
    ),
    "openai-compatible": ProviderDefaults(None, _OPENAI_PATHS),
    "azure-openai": ProviderDefaults(
        None,
        {"chat": "/chat/completions", "completions": "/completions", "embeddings": "/embeddings"},
        remove_model=True,
    ),
    "deepseek": ProviderDefaults("api.deepseek.com", {"chat": "/chat/completions"}),
    "aimlapi": ProviderDefaults("api.aimlapi.com", {"chat": "/chat/completions"}),
    "anthropic": ProviderDefaults("api.anthropic.com", {"chat": "/v1/chat/completions"}),
    "openrouter": ProviderDefaults("openrouter.ai", {"chat": "/api/v1/chat/completions"}),
    "gemini": ProviderDefaults(
        "generativelanguage.googleapis.com",
        {"chat": "/v1beta/openai/chat/completions"},
        max_tokens_field="max_completion_tokens",
    ),
    "vertex-ai": ProviderDefaults(
        "aiplatform.googleapis.com",
        {
            "chat": "/v1beta1/projects/{project_id}/locations/{region}/endpoints/openapi"
            "/chat/completions"
        },
        max_tokens_field="max_completion_tokens",
    ),
    "bedrock": ProviderDefaults(None, {}),
}


# Azure OpenAI takes ``stream_options`` from api-version 2024-09-01-preview on; before, it
# refuses the field (400 "Unrecognized request argument supplied: stream_options").
_AZURE_STREAM_OPTIONS_SINCE = "2024-09-01"


def takes_stream_options(provider: str, api_version: str | None) -> bool:
    """Whether a stream sent with this ``api-version`` may be asked for its usage: always but
    for azure-openai's versions dated before 2024-09-01 (an undated one, as the v1 API's
    ``preview`` / ``latest``, or none, takes it)."""
    if provider != "azure-openai" or not api_version:
        return True
    date = api_version[:10]
    dated = len(date) == 10 and date[:4].isdigit() and date[4] == "-" and date[7] == "-"
    return not dated or date >= _AZURE_STREAM_OPTIONS_SINCE


def default_host(provider: str, region: str | None) -> str | None:
    """The provider's host, with vertex-ai's regional form when a region is set."""
    if provider == "vertex-ai" and region:
        return f"{region}-aiplatform.googleapis.com"
    return PROVIDERS[provider].host


def default_path(
    provider: str, protocol: Protocol, project_id: str | None, region: str | None
) -> str | None:
    """The provider's path for ``protocol`` (None when it does not speak it)."""
    path = PROVIDERS[provider].paths.get(protocol)
    if path is None or "{" not in path:
        return path
    if not (project_id and region):
        return None
    return path.format(project_id=project_id, region=region)


def unsupported(provider: str, has_gcp_auth: bool, has_aws_auth: bool) -> str | None:
    """Why llmgate cannot call this provider as configured, or None when it can."""
    if provider == "bedrock" or has_aws_auth:
        return "provider bedrock (AWS SigV4 signing, Converse API) is not supported by llmgate"
    if has_gcp_auth:
        return "auth.gcp (service account token exchange) is not supported by llmgate"
    return None


def supported_names(provider: str) -> list[str]:
    return [APISIX_NAMES[p] for p in PROVIDERS[provider].paths]
