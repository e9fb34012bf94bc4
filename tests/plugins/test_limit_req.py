import re

import pytest
from pydantic import ValidationError

from llmgate.plugins.limit_req import LimitReq

VALID = [
    pytest.param({"rate": 1, "burst": 0, "key": "remote_addr"}, id="minimal"),
    pytest.param({"rate": 0.5, "burst": 2.5, "key": "consumer_name", "nodelay": True}, id="float"),
    pytest.param(
        {"rate": 1, "burst": 1, "key": "$remote_addr $http_x", "key_type": "var_combination"},
        id="var-combination",
    ),
    pytest.param(
        {"rate": 1, "burst": 1, "key": "k", "policy": "redis", "redis_host": "localhost"},
        id="redis",
    ),
]

INVALID = [
    pytest.param({"burst": 0, "key": "k"}, "rate", id="no-rate"),
    pytest.param({"rate": 1, "key": "k"}, "burst", id="no-burst"),
    pytest.param({"rate": 1, "burst": 0}, "key", id="no-key"),
    pytest.param({"rate": 0, "burst": 0, "key": "k"}, "rate", id="zero-rate"),
    pytest.param({"rate": 1, "burst": -1, "key": "k"}, "burst", id="negative-burst"),
    pytest.param({"rate": "1", "burst": 0, "key": "k"}, "rate", id="string-rate"),
    pytest.param({"rate": 1, "burst": 0, "key": "k", "key_type": "constant"}, "key_type", id="kt"),
    pytest.param(
        {"rate": 1, "burst": 0, "key": "k", "rejected_code": 100}, "rejected_code", id="code"
    ),
    # APISIX has redis-sentinel for limit-count and ai-rate-limiting only.
    pytest.param(
        {"rate": 1, "burst": 0, "key": "k", "policy": "redis-sentinel"}, "policy", id="sentinel"
    ),
]


@pytest.mark.parametrize("conf", VALID)
def test_valid(conf: dict) -> None:
    LimitReq.Config.model_validate(conf)


@pytest.mark.parametrize(("conf", "error"), INVALID)
def test_invalid(conf: dict, error: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(error)):
        LimitReq.Config.model_validate(conf)


def test_defaults() -> None:
    conf = LimitReq.Config.model_validate({"rate": 1, "burst": 0, "key": "k"})
    assert (conf.rejected_code, conf.nodelay, conf.policy) == (503, False, "local")
