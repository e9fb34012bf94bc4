import re

import pytest
from pydantic import ValidationError

from llmgate.plugins.limit_count import LimitCount

SEED = {
    "count": 2,
    "time_window": 60,
    "rejected_code": 403,
    "rejected_msg": "Las solicitudes son demasiado frecuentes, por favor inténtalo más tarde.",
    "key_type": "var",
    "key": "remote_addr",
}

SENTINEL = {
    "count": 2,
    "time_window": 60,
    "policy": "redis-sentinel",
    "redis_sentinels": [{"host": "127.0.0.1", "port": 26379}],
    "redis_master_name": "mymaster",
}

VALID = [
    pytest.param(SEED, id="seed-001"),
    pytest.param({"count": 1, "time_window": 1}, id="minimal"),
    pytest.param({"count": "$http_x_count", "time_window": 60}, id="count-from-variable"),
    pytest.param({"count": "10", "time_window": "$env://WINDOW"}, id="numeral-and-env-ref"),
    pytest.param({"count": 5, "time_window": 10, "key_type": "constant"}, id="constant-key"),
    pytest.param(
        {
            "count": 5,
            "time_window": 10,
            "key": "$remote_addr $consumer_name",
            "key_type": "var_combination",
        },
        id="var-combination",
    ),
    pytest.param(
        {"count": 5, "time_window": 10, "policy": "redis", "redis_host": "127.0.0.1"}, id="redis"
    ),
    # Without redis_host: the node's default Redis (LLMGATE_REDIS_URL).
    pytest.param({"count": 2, "time_window": 60, "policy": "redis"}, id="redis-without-host"),
    pytest.param(SENTINEL, id="redis-sentinel"),
    pytest.param(
        {
            "count": 5,
            "time_window": 10,
            "policy": "redis-cluster",
            "redis_cluster_nodes": ["127.0.0.1:7000"],
            "redis_cluster_name": "c",
        },
        id="redis-cluster",
    ),
    pytest.param(
        {
            "rules": [
                {"count": 1, "time_window": 1, "key": "a"},
                {"count": 9, "time_window": 60, "key": "b", "header_prefix": "m"},
            ]
        },
        id="rules",
    ),
    pytest.param(
        {"count": 5, "time_window": 10, "policy": "redis", "redis_host": "r1", "sync_interval": 1},
        id="sync-interval",
    ),
    pytest.param({"count": 5, "time_window": 10, "window_type": "sliding"}, id="sliding"),
    pytest.param({"count": 5, "time_window": 10, "group": "g"}, id="group"),
]

INVALID = [
    pytest.param({}, "count and time_window are required", id="empty"),
    # header_prefix goes into header names: a space or ":" broke them, a CR/LF every response.
    *(
        pytest.param(
            {"rules": [{"count": 1, "time_window": 60, "key": "k", "header_prefix": prefix}]},
            "header_prefix",
            id=f"header-prefix-{name}",
        )
        for name, prefix in (("space", "a b"), ("colon", "a:b"), ("crlf", "a\r\nb"))
    ),
    pytest.param({"count": 2}, "count and time_window are required", id="no-window"),
    pytest.param({"count": 0, "time_window": 60}, "count", id="zero-count"),
    pytest.param({"count": "x", "time_window": 60}, "reference a $variable", id="string-count"),
    pytest.param({"count": "0", "time_window": 60}, "count", id="zero-numeral"),
    pytest.param({"count": 2, "time_window": -1}, "time_window", id="negative-window"),
    pytest.param({"count": 2.5, "time_window": 60}, "count", id="float-count"),
    pytest.param({"count": True, "time_window": 60}, "count", id="bool-count"),
    pytest.param({"count": 2, "time_window": 60, "rejected_code": 600}, "rejected_code", id="600"),
    pytest.param({"count": 2, "time_window": 60, "rejected_msg": ""}, "rejected_msg", id="no-msg"),
    pytest.param({"count": 2, "time_window": 60, "key_type": "ip"}, "key_type", id="key-type"),
    pytest.param({"count": 2, "time_window": 60, "policy": "memcached"}, "policy", id="policy"),
    pytest.param(
        {"count": 2, "time_window": 60, "policy": "redis-sentinel", "redis_master_name": "m"},
        'property "redis_sentinels" is required when policy is redis-sentinel',
        id="sentinel-without-sentinels",
    ),
    pytest.param(
        {**SENTINEL, "redis_sentinels": [{"host": "127.0.0.1", "port": 70000}]},
        "port",
        id="sentinel-port",
    ),
    pytest.param(
        {**SENTINEL, "redis_sentinels": [{"host": "127.0.0.1", "port": 1, "x": 1}]},
        "x",
        id="sentinel-extra-field",
    ),
    pytest.param(
        {**SENTINEL, "redis_role": "slave"}, "a replica is read-only", id="sentinel-replica"
    ),
    pytest.param(
        {"count": 2, "time_window": 60, "policy": "redis-cluster", "redis_cluster_name": "c"},
        'property "redis_cluster_nodes" is required',
        id="cluster-without-nodes",
    ),
    pytest.param(
        {
            "count": 2,
            "time_window": 60,
            "policy": "redis-cluster",
            "redis_cluster_name": "c",
            "redis_cluster_nodes": ["127.0.0.1:\u0663"],
        },
        "invalid port",
        id="cluster-node-arabic-indic-port",
    ),
    pytest.param(
        {"count": 2, "time_window": 60, "policy": "redis", "redis_host": "r1", "redis_port": 0},
        "redis_port",
        id="redis-port",
    ),
    pytest.param(
        {"count": 2, "time_window": 60, "rules": [{"count": 1, "time_window": 1, "key": "a"}]},
        "count/time_window and rules cannot be specified at the same time",
        id="count-and-rules",
    ),
    pytest.param(
        {"group": "g", "rules": [{"count": 1, "time_window": 1, "key": "a"}]},
        "group and rules cannot be specified at the same time",
        id="group-and-rules",
    ),
    pytest.param(
        {
            "rules": [
                {"count": 1, "time_window": 1, "key": "a"},
                {"count": 2, "time_window": 2, "key": "a"},
            ]
        },
        "duplicate key 'a' in rules",
        id="duplicate-rule-key",
    ),
    pytest.param({"rules": [{"count": 1, "key": "a"}]}, "time_window", id="rule-no-window"),
    pytest.param(
        {
            "count": 5,
            "time_window": 10,
            "policy": "redis",
            "redis_host": "r1",
            "sync_interval": 0.01,
        },
        "sync_interval should not be smaller than 0.1",
        id="sync-interval-small",
    ),
    pytest.param(
        {"count": 5, "time_window": 10, "policy": "redis", "redis_host": "r1", "sync_interval": 10},
        "sync_interval should be smaller than time_window",
        id="sync-interval-large",
    ),
]


@pytest.mark.parametrize("conf", VALID)
def test_valid(conf: dict) -> None:
    LimitCount.Config.model_validate(conf)


@pytest.mark.parametrize(("conf", "error"), INVALID)
def test_invalid(conf: dict, error: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(error)):
        LimitCount.Config.model_validate(conf)


def test_defaults() -> None:
    conf = LimitCount.Config.model_validate({"count": 2, "time_window": 60})
    assert (conf.rejected_code, conf.policy, conf.key, conf.key_type) == (
        503,
        "local",
        "remote_addr",
        "var",
    )
    assert conf.show_limit_quota_header is True
