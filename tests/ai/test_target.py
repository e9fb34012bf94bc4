"""Compiling a provider target: endpoint, provider defaults, auth, pools; refusals."""

from __future__ import annotations

from typing import Any

import pytest

from llmgate.ai.protocols import RequestError
from llmgate.ai.providers import default_host, default_path
from llmgate.ai.target import compile_target
from llmgate.plugins.ai_proxy import AIProxyConfig
from llmgate.proxy.upstream import PoolRegistry


def target(**conf: Any):  # type: ignore[no-untyped-def]
    config = AIProxyConfig.model_validate({"auth": {}, **conf})
    return compile_target("t", config, config, PoolRegistry(), "test")


@pytest.mark.parametrize(
    ("conf", "address", "scheme", "paths"),
    [
        (
            {"provider": "openai"},
            "api.openai.com:443",
            "https",
            ("/v1/chat/completions", "/v1/completions", "/v1/embeddings"),
        ),
        ({"provider": "deepseek"}, "api.deepseek.com:443", "https", ("/chat/completions",)),
        (
            {"provider": "openai", "override": {"endpoint": "http://10.0.0.1:8000"}},
            "10.0.0.1:8000",
            "http",
            ("/v1/chat/completions", "/v1/completions", "/v1/embeddings"),
        ),
        (
            {"provider": "openai-compatible", "override": {"endpoint": "https://llm.local/x/"}},
            "llm.local:443",
            "https",
            ("/x/", "/x/", "/x/"),
        ),
    ],
)
def test_endpoint_and_defaults(
    conf: dict[str, Any], address: str, scheme: str, paths: tuple[str, ...]
) -> None:
    t = target(**conf)
    assert t.pool is not None
    assert [n.address for n in t.pool.nodes] == [address]
    assert t.pool.scheme == scheme
    assert t.pool.spec.pass_host == "node"
    assert tuple(t.path(p) for p in ("chat", "completions", "embeddings")[: len(paths)]) == paths


def test_call_options_shape_the_pool() -> None:
    t = target(
        provider="openai",
        timeout=1500,
        ssl_verify=False,
        keepalive_pool=7,
        keepalive=False,
    )
    assert t.pool is not None
    spec = t.pool.spec
    assert spec.timeout is not None and spec.timeout.read == 1.5
    assert spec.tls is not None and spec.tls.verify is False
    assert spec.keepalive_pool is not None and spec.keepalive_pool.size == 7
    assert t.close_connection


def test_same_endpoint_shares_one_pool() -> None:
    pools = PoolRegistry()
    config = AIProxyConfig.model_validate({"provider": "openai", "auth": {}})
    first = compile_target("a", config, config, pools, "x")
    second = compile_target("b", config, config, pools, "y")
    assert first.pool is second.pool


def test_query_joins_endpoint_and_auth() -> None:
    t = target(
        provider="azure-openai",
        auth={"query": {"key": "s p"}, "header": {"api-key": "k"}},
        override={
            "endpoint": "https://r.openai.azure.com/openai/deployments/d/chat/completions?api-version=1"
        },
    )
    assert t.query == "api-version=1&key=s+p"
    assert t.auth_headers == (("api-key", "k"),)
    assert t.shaping.remove_model


def test_unsupported_protocol_is_a_400() -> None:
    with pytest.raises(RequestError) as caught:
        target(provider="openrouter").path("embeddings")
    assert caught.value.status == 400
    assert "supported: openai-chat" in caught.value.message


@pytest.mark.parametrize(
    "conf",
    [
        {"provider": "bedrock", "provider_conf": {"region": "us-east-1"},
         "auth": {"aws": {"access_key_id": "a", "secret_access_key": "s"}}},
        {"provider": "vertex-ai", "provider_conf": {"project_id": "p", "region": "r"},
         "auth": {"gcp": {"service_account_json": "{}"}}},
    ],
)  # fmt: skip
def test_providers_llmgate_cannot_sign_for_are_refused(conf: dict[str, Any]) -> None:
    t = target(**conf)
    assert t.refusal is not None and t.pool is None


def test_vertex_defaults() -> None:
    assert default_host("vertex-ai", "europe-west4") == "europe-west4-aiplatform.googleapis.com"
    assert default_path("vertex-ai", "chat", "proj", "europe-west4") == (
        "/v1beta1/projects/proj/locations/europe-west4/endpoints/openapi/chat/completions"
    )
    assert default_path("vertex-ai", "chat", None, None) is None
    assert default_path("deepseek", "embeddings", None, None) is None


@pytest.mark.parametrize(
    ("endpoint_query", "asks"),
    [
        ("?api-version=2024-02-01", False),
        ("?api-version=2024-08-01-preview", False),
        ("?api-version=2024-09-01-preview", True),
        ("?api-version=2024-10-21", True),
        ("?api-version=preview", True),  # the v1 API's
        ("", True),
    ],
)
def test_azure_streams_are_asked_for_usage_only_from_2024_09(
    endpoint_query: str, asks: bool
) -> None:
    """Azure OpenAI refuses ``stream_options`` (400) before api-version 2024-09-01-preview."""
    t = target(
        provider="azure-openai",
        override={
            "endpoint": "https://r.openai.azure.com/openai/deployments/d/chat/completions"
            + endpoint_query
        },
    )
    assert t.hides_usage({"messages": [], "stream": True}, "chat") is asks
    assert target(provider="openai").hides_usage({"messages": [], "stream": True}, "chat")
