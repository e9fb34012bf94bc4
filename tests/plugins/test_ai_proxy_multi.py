import re

import pytest
from pydantic import ValidationError

from llmgate.plugins.ai_proxy_multi import AIProxyMulti


def instance(name: str = "a", **extra: object) -> dict:
    return {
        "name": name,
        "provider": "openai",
        "weight": 1,
        "auth": {"header": {"Authorization": "Bearer $env://KEY"}},
        **extra,
    }


VALID = [
    pytest.param({"instances": [instance()]}, id="one"),
    pytest.param(
        {
            "instances": [instance("a", priority=1), instance("b", weight=0, priority=0)],
            "fallback_strategy": "instance_health_and_rate_limiting",
        },
        id="priorities",
    ),
    pytest.param(
        {
            "instances": [instance()],
            "fallback_strategy": ["http_429", "http_5xx"],
            "fallback_http_statuses": [401, 402],
            "max_retries": 1,
            "retry_on_failure_within_ms": 500,
        },
        id="fallback",
    ),
    pytest.param(
        {
            "instances": [
                instance(
                    provider="openai-compatible",
                    override={"endpoint": "http://127.0.0.1:9000"},
                    options={"model": "m"},
                )
            ]
        },
        id="compatible",
    ),
    pytest.param(
        {"instances": [instance()], "balancer": {"algorithm": "chash", "hash_on": "consumer"}},
        id="chash-consumer",
    ),
    pytest.param(
        {
            "instances": [instance()],
            "balancer": {"algorithm": "chash", "hash_on": "header", "key": "x-user"},
        },
        id="chash-header",
    ),
    pytest.param(
        {"instances": [instance(checks={"active": {"type": "https", "http_path": "/"}})]},
        id="checks",
    ),
]

INVALID = [
    pytest.param({}, "instances", id="no-instances"),
    pytest.param({"instances": []}, "instances", id="empty-instances"),
    pytest.param(
        {"instances": [{k: v for k, v in instance().items() if k != "weight"}]},
        "weight",
        id="no-weight",
    ),
    pytest.param({"instances": [instance(weight=-1)]}, "weight", id="negative-weight"),
    pytest.param({"instances": [instance(name="")]}, "name", id="empty-name"),
    pytest.param({"instances": [instance(provider="x")]}, "provider", id="unknown-provider"),
    pytest.param(
        {"instances": [instance("a"), instance("a")]},
        "duplicate instance name 'a' at instances[1] and instances[2]",
        id="duplicate-names",
    ),
    pytest.param(
        {"instances": [instance(override={"endpoint": "localhost:9000"})]},
        "endpoint",
        id="bad-endpoint",
    ),
    pytest.param(
        {"instances": [instance(provider="openai-compatible")]},
        "openai-compatible requires override.endpoint",
        id="compatible-without-endpoint",
    ),
    pytest.param(
        {"instances": [instance()], "balancer": {"algorithm": "chash"}},
        "must configure `balancer.key`",
        id="chash-without-key",
    ),
    pytest.param(
        {"instances": [instance()], "balancer": {"algorithm": "least_conn"}},
        "algorithm",
        id="algorithm",
    ),
    pytest.param(
        {"instances": [instance()], "fallback_strategy": "rate_limiting"},
        "fallback_strategy",
        id="strategy-string",
    ),
    pytest.param(
        {"instances": [instance()], "fallback_strategy": ["instance_health_and_rate_limiting"]},
        "fallback_strategy",
        id="strategy-list",
    ),
    pytest.param(
        {"instances": [instance()], "fallback_http_statuses": [399]},
        "fallback_http_statuses",
        id="fallback-status",
    ),
    pytest.param(
        {"instances": [instance()], "fallback_http_statuses": [429, 429]},
        "unique",
        id="fallback-status-repeated",
    ),
    pytest.param({"instances": [instance(checks={})]}, "active", id="checks-without-active"),
]


@pytest.mark.parametrize("conf", VALID)
def test_valid(conf: dict) -> None:
    AIProxyMulti.Config.model_validate(conf)


@pytest.mark.parametrize(("conf", "error"), INVALID)
def test_invalid(conf: dict, error: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(error)):
        AIProxyMulti.Config.model_validate(conf)


def test_defaults() -> None:
    conf = AIProxyMulti.Config.model_validate({"instances": [instance()]})
    assert conf.balancer.algorithm == "roundrobin"
    assert conf.instances[0].priority == 0
    assert conf.fallback_strategy is None
