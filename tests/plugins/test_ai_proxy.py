import re

import pytest
from pydantic import ValidationError

from llmgate.plugins.ai_proxy import AIProxy

OPENAI = {
    "provider": "openai",
    "auth": {"header": {"Authorization": "Bearer $env://OPENAI_API_KEY"}},
    "options": {"model": "gpt-4o-mini", "temperature": 0, "max_tokens": 100},
}

VALID = [
    pytest.param(OPENAI, id="openai"),
    pytest.param(
        {"provider": "deepseek", "auth": {"header": {"Authorization": "Bearer k"}}}, id="ds"
    ),
    pytest.param(
        {
            "provider": "openai-compatible",
            "auth": {"header": {"Authorization": "Bearer k"}},
            "override": {"endpoint": "http://127.0.0.1:8000/v1/chat/completions"},
        },
        id="openai-compatible",
    ),
    pytest.param(
        {
            "provider": "azure-openai",
            "auth": {"header": {"api-key": "k"}},
            "override": {
                "endpoint": "https://x.openai.azure.com/openai/deployments/d/chat/completions?api-version=1"
            },
        },
        id="azure",
    ),
    pytest.param(
        {
            "provider": "openai-compatible",
            "auth": {},
            "override": {"endpoint": "$env://LLM_ENDPOINT"},
        },
        id="endpoint-env-ref",
    ),
    pytest.param({**OPENAI, "auth": {"query": {"api_key": "k"}}}, id="query-auth"),
    pytest.param(
        {
            **OPENAI,
            "timeout": 600000,
            "keepalive": False,
            "keepalive_pool": 1,
            "ssl_verify": False,
            "logging": {"summaries": True, "payloads": False},
        },
        id="call-options",
    ),
    pytest.param(
        {
            **OPENAI,
            "override": {
                "llm_options": {"max_tokens": 5},
                "request_body": {"openai-chat": {"user": "gw"}},
            },
        },
        id="override-body",
    ),
    pytest.param(
        {
            "provider": "bedrock",
            "auth": {"aws": {"access_key_id": "a", "secret_access_key": "s"}},
            "provider_conf": {"region": "us-east-1"},
        },
        id="bedrock",
    ),
    pytest.param(
        {
            "provider": "vertex-ai",
            "auth": {"gcp": {"service_account_json": "{}"}},
            "provider_conf": {"project_id": "p", "region": "r"},
        },
        id="vertex-ai",
    ),
]

INVALID = [
    pytest.param({"auth": {}}, "provider", id="no-provider"),
    pytest.param({"provider": "openai"}, "auth", id="no-auth"),
    pytest.param({**OPENAI, "provider": "cohere"}, "provider", id="unknown-provider"),
    pytest.param(
        {"provider": "openai-compatible", "auth": {}},
        "openai-compatible requires override.endpoint",
        id="compatible-without-endpoint",
    ),
    pytest.param(
        {"provider": "azure-openai", "auth": {}},
        "azure-openai requires override.endpoint",
        id="azure-without-endpoint",
    ),
    pytest.param(
        {**OPENAI, "override": {"endpoint": "api.openai.com"}}, "endpoint", id="no-scheme"
    ),
    pytest.param({**OPENAI, "override": {"endpoint": ""}}, "endpoint", id="empty-endpoint"),
    pytest.param({**OPENAI, "auth": {"cookie": {"a": "b"}}}, "cookie", id="auth-extra"),
    pytest.param({**OPENAI, "auth": {"header": {"Authorization": 1}}}, "header", id="int-secret"),
    pytest.param({**OPENAI, "auth": {"header": {"bad header": "x"}}}, "header", id="header-name"),
    pytest.param({**OPENAI, "options": {"model": 4}}, "model", id="int-model"),
    pytest.param({**OPENAI, "timeout": 0}, "timeout", id="timeout-zero"),
    pytest.param({**OPENAI, "timeout": 600001}, "timeout", id="timeout-too-long"),
    pytest.param({**OPENAI, "keepalive_timeout": 999}, "keepalive_timeout", id="keepalive"),
    pytest.param({**OPENAI, "keepalive_pool": 0}, "keepalive_pool", id="pool"),
    pytest.param({**OPENAI, "ssl_verify": "false"}, "ssl_verify", id="ssl-verify"),
    pytest.param(
        {**OPENAI, "override": {"llm_options": {"temperature": 1}}}, "temperature", id="llm-opt"
    ),
    pytest.param(
        {**OPENAI, "override": {"request_body": {"grpc": {}}}}, "request_body", id="protocol"
    ),
    pytest.param(
        {"provider": "bedrock", "auth": {"aws": {"access_key_id": "a", "secret_access_key": "s"}}},
        "bedrock requires provider_conf.region",
        id="bedrock-without-region",
    ),
    pytest.param(
        {"provider": "bedrock", "auth": {}, "provider_conf": {"region": "us-east-1"}},
        "bedrock requires auth.aws",
        id="bedrock-without-aws",
    ),
    pytest.param(
        {"provider": "vertex-ai", "auth": {}},
        "vertex-ai requires either provider_conf",
        id="vertex-without-project",
    ),
    pytest.param(
        {**OPENAI, "auth": {"gcp": {"service_account_json": "{not json"}}},
        "invalid gcp service_account_json",
        id="bad-gcp-json",
    ),
]


@pytest.mark.parametrize("conf", VALID)
def test_valid(conf: dict) -> None:
    AIProxy.Config.model_validate(conf)


@pytest.mark.parametrize(("conf", "error"), INVALID)
def test_invalid(conf: dict, error: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(error)):
        AIProxy.Config.model_validate(conf)


def test_typed_read() -> None:
    conf = AIProxy.Config.model_validate(OPENAI)
    assert conf.options is not None
    assert conf.options.model == "gpt-4o-mini"
    # Options other than model are kept for the body override.
    assert conf.options.model_extra == {"temperature": 0, "max_tokens": 100}
    assert (conf.timeout, conf.keepalive, conf.ssl_verify) == (30000, True, True)
