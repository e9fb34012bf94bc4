import re

import pytest
from pydantic import ValidationError

from llmgate.plugins.ai_rate_limiting import AIRateLimiting

VALID = [
    pytest.param({"limit": 1000, "time_window": 60}, id="budget"),
    pytest.param(
        {
            "limit": 300,
            "time_window": 30,
            "limit_strategy": "prompt_tokens",
            "rejected_code": 429,
            "rejected_msg": "Too many tokens",
            "show_limit_quota_header": False,
        },
        id="options",
    ),
    pytest.param({"instances": [{"name": "a", "limit": 10, "time_window": 60}]}, id="instances"),
    pytest.param(
        {
            "limit": 10,
            "time_window": 60,
            "instances": [{"name": "a", "limit": 5, "time_window": 1}],
        },
        id="budget-and-instances",
    ),
    pytest.param({"rules": [{"count": 100, "time_window": 60, "key": "$consumer_name"}]}, id="r"),
    pytest.param(
        {"limit": 10, "time_window": 60, "policy": "redis", "redis_host": "127.0.0.1"}, id="redis"
    ),
    pytest.param({"limit": "$http_budget", "time_window": 60}, id="limit-from-variable"),
    pytest.param({"limit": 10, "time_window": 60, "policy": "redis"}, id="redis-default"),
    pytest.param(
        {
            "limit": 10,
            "time_window": 60,
            "policy": "redis-sentinel",
            "redis_sentinels": [{"host": "s1", "port": 26379}],
            "redis_master_name": "m",
        },
        id="redis-sentinel",
    ),
]

INVALID = [
    pytest.param({}, "one of limit and time_window, instances or rules is required", id="empty"),
    pytest.param({"limit": 10}, "limit and time_window must be specified together", id="no-win"),
    pytest.param({"time_window": 10}, "must be specified together", id="no-limit"),
    pytest.param({"limit": 0, "time_window": 60}, "limit", id="zero-limit"),
    pytest.param({"limit": "lots", "time_window": 60}, "limit", id="string-limit"),
    pytest.param({"limit": 10, "time_window": 0}, "time_window", id="zero-window"),
    pytest.param(
        {"limit": 10, "time_window": 60, "limit_strategy": "requests"}, "limit_strategy", id="ls"
    ),
    pytest.param({"limit": 10, "time_window": 60, "rejected_code": 700}, "rejected_code", id="rc"),
    pytest.param({"limit": 10, "time_window": 60, "rejected_msg": ""}, "rejected_msg", id="msg"),
    pytest.param({"instances": []}, "instances", id="empty-instances"),
    pytest.param({"instances": [{"name": "a", "limit": 10}]}, "time_window", id="instance-window"),
    pytest.param(
        {"limit": 10, "time_window": 60, "rules": [{"count": 1, "time_window": 1, "key": "k"}]},
        "cannot be specified together",
        id="budget-and-rules",
    ),
    pytest.param(
        {"limit": 10, "time_window": 60, "policy": "redis-sentinel"},
        'property "redis_sentinels" is required',
        id="sentinel-without-sentinels",
    ),
]


@pytest.mark.parametrize("conf", VALID)
def test_valid(conf: dict) -> None:
    AIRateLimiting.Config.model_validate(conf)


@pytest.mark.parametrize(("conf", "error"), INVALID)
def test_invalid(conf: dict, error: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(error)):
        AIRateLimiting.Config.model_validate(conf)


def test_defaults() -> None:
    conf = AIRateLimiting.Config.model_validate({"limit": 10, "time_window": 60})
    assert (conf.rejected_code, conf.limit_strategy, conf.policy) == (503, "total_tokens", "local")
    assert conf.show_limit_quota_header is True
