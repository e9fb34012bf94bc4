import re

import pytest
from pydantic import ValidationError

from llmgate.plugins.limit_conn import LimitConn

SINGLE = {"conn": 1, "burst": 0, "default_conn_delay": 0.1, "key": "remote_addr"}
RULES = {"default_conn_delay": 0.1, "rules": [{"conn": 1, "burst": 0, "key": "a"}]}

VALID = [
    pytest.param(SINGLE, id="single"),
    pytest.param(RULES, id="rules"),
    pytest.param({**SINGLE, "conn": "$http_conn", "burst": "$http_burst"}, id="from-variables"),
    pytest.param({**SINGLE, "conn": "2", "burst": "0"}, id="numerals"),
    pytest.param({**SINGLE, "only_use_default_delay": True, "rejected_msg": "busy"}, id="opts"),
    pytest.param({**SINGLE, "policy": "redis", "redis_host": "r1", "key_ttl": 60}, id="redis"),
    pytest.param({**RULES, "conn": 3}, id="rules-with-partial-single"),
]

INVALID = [
    pytest.param({}, "default_conn_delay", id="empty"),
    pytest.param(
        {k: v for k, v in SINGLE.items() if k != "default_conn_delay"},
        "default_conn_delay",
        id="no-delay",
    ),
    pytest.param(
        {k: v for k, v in SINGLE.items() if k != "key"},
        "conn, burst and key are required unless rules is set",
        id="no-key",
    ),
    pytest.param({**SINGLE, **RULES}, "cannot be specified at the same time", id="both-forms"),
    pytest.param({**SINGLE, "conn": 0}, "conn", id="zero-conn"),
    pytest.param({**SINGLE, "burst": -1}, "burst", id="negative-burst"),
    pytest.param({**SINGLE, "conn": "many"}, "conn", id="string-conn"),
    pytest.param({**SINGLE, "burst": "-1"}, "burst", id="negative-numeral-burst"),
    pytest.param({**SINGLE, "default_conn_delay": 0}, "default_conn_delay", id="zero-delay"),
    pytest.param({**SINGLE, "key_type": "constant"}, "key_type", id="key-type"),
    pytest.param({**SINGLE, "policy": "redis-cluster"}, "redis_cluster_nodes", id="cluster"),
    pytest.param({**SINGLE, "policy": "redis-sentinel"}, "policy", id="sentinel"),
    pytest.param(
        {"default_conn_delay": 0.1, "rules": [{"conn": 1, "key": "a"}]}, "burst", id="rule-burst"
    ),
]


@pytest.mark.parametrize("conf", VALID)
def test_valid(conf: dict) -> None:
    LimitConn.Config.model_validate(conf)


@pytest.mark.parametrize(("conf", "error"), INVALID)
def test_invalid(conf: dict, error: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(error)):
        LimitConn.Config.model_validate(conf)
