import re

import pytest
from pydantic import ValidationError

from llmgate.plugins.proxy_cache import ProxyCache

SEED = {
    "cache_key": ["$uri", "-cache-id"],
    "cache_method": ["POST"],
    "cache_http_status": [200],
    "hide_cache_headers": True,
}

VALID = [
    pytest.param(SEED, id="seed-001"),
    pytest.param({}, id="empty"),
    pytest.param({"cache_strategy": "memory"}, id="memory"),
    pytest.param({"cache_strategy": "memory", "cache_zone": "memory_cache"}, id="memory-zone"),
    pytest.param({"cache_strategy": "disk", "cache_zone": "disk_cache_one"}, id="disk-zone"),
    pytest.param(
        {"cache_ttl": 10, "cache_bypass": ["$arg_bypass"], "no_cache": ["$arg_x"]}, id="x"
    ),
    pytest.param({"cache_control": True, "consumer_isolation": False}, id="flags"),
]

INVALID = [
    pytest.param({"cache_zone": "other"}, "cache_zone other not found", id="unknown-zone"),
    pytest.param(
        {"cache_strategy": "memory", "cache_zone": "nope"}, "cache_zone nope not found", id="mem"
    ),
    pytest.param(
        {"cache_strategy": "memory", "cache_zone": "disk_cache_one"},
        "invalid or empty cache_zone for cache_strategy: memory",
        id="memory-with-disk-zone",
    ),
    pytest.param(
        {"cache_zone": "memory_cache"},
        "invalid or empty cache_zone for cache_strategy: disk",
        id="disk-with-memory-zone",
    ),
    pytest.param({"cache_strategy": "redis"}, "cache_strategy", id="strategy"),
    pytest.param({"cache_key": []}, "cache_key", id="empty-key"),
    pytest.param({"cache_key": ["$uri-x"]}, "cache_key", id="bad-var"),
    pytest.param({"cache_key": ["a"]}, "cache_key", id="one-char-literal"),
    pytest.param(
        {"cache_key": ["$host", "$request_method"]},
        "cache_key variable $request_method unsupported",
        id="request-method",
    ),
    pytest.param({"cache_method": ["PUT"]}, "cache_method", id="method"),
    pytest.param({"cache_method": ["GET", "GET"]}, "unique", id="duplicate-method"),
    pytest.param({"cache_http_status": [199]}, "cache_http_status", id="status"),
    pytest.param({"cache_http_status": [200, 200]}, "unique", id="duplicate-status"),
    pytest.param({"cache_ttl": 0}, "cache_ttl", id="ttl"),
    pytest.param({"hide_cache_headers": "true"}, "hide_cache_headers", id="bool-as-string"),
]


@pytest.mark.parametrize("conf", VALID)
def test_valid(conf: dict) -> None:
    ProxyCache.Config.model_validate(conf)


@pytest.mark.parametrize(("conf", "error"), INVALID)
def test_invalid(conf: dict, error: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(error)):
        ProxyCache.Config.model_validate(conf)


@pytest.mark.parametrize(
    ("conf", "zone"),
    [
        ({}, "disk_cache_one"),
        ({"cache_strategy": "disk"}, "disk_cache_one"),
        ({"cache_strategy": "memory"}, "memory_cache"),
    ],
)
def test_zone_defaults_to_the_strategys(conf: dict, zone: str) -> None:
    assert ProxyCache.Config.model_validate(conf).cache_zone == zone


def test_defaults() -> None:
    conf = ProxyCache.Config.model_validate({})
    assert conf.cache_key == ["$host", "$request_uri"]
    assert conf.cache_method == ["GET", "HEAD"]
    assert (conf.cache_ttl, conf.cache_strategy) == (300, "disk")
