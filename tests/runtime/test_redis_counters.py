"""``LLMGATE_REDIS_URL`` -> the default ``RedisTarget`` of ``policy: redis``."""

from __future__ import annotations

import pytest

from llmgate.runtime.redis_counters import RedisTarget, target_from_url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://127.0.0.1:6379/0", RedisTarget()),
        ("redis://r1", RedisTarget(host="r1")),
        ("redis://r1:6380/3", RedisTarget(host="r1", port=6380, database=3)),
        (
            "redis://user:p%40ss@r1/2",
            RedisTarget(host="r1", database=2, username="user", password="p@ss"),
        ),
        ("redis://:pw@r1", RedisTarget(host="r1", password="pw")),
        ("rediss://r1", RedisTarget(host="r1", ssl=True, ssl_verify=True)),
        ("unix:///run/redis.sock?db=4", RedisTarget(path="/run/redis.sock", database=4)),
    ],
)
def test_target_from_url(url: str, expected: RedisTarget) -> None:
    assert target_from_url(url) == expected


@pytest.mark.parametrize("url", ["localhost:6379", "http://r1", "redis://r1:x/0", "unix://"])
def test_bad_urls(url: str) -> None:
    with pytest.raises(ValueError):
        target_from_url(url)


def test_labels_never_show_the_password() -> None:
    assert "pw" not in target_from_url("redis://u:pw@r1:1/2").label()
