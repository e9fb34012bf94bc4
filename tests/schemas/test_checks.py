"""The upstream ``checks`` schema: APISIX's defaults, and refusals of what would not work."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from llmgate.schemas.checks import Checks
from llmgate.schemas.upstream import UpstreamSpec


def test_defaults_are_apisix_ones() -> None:
    checks = Checks.model_validate({"active": {}, "passive": {}})
    active, passive = checks.active, checks.passive
    assert passive is not None
    assert (active.type, active.timeout, active.concurrency, active.http_path) == (
        "http", 1, 10, "/",
    )  # fmt: skip
    assert active.https_verify_certificate is True
    assert (active.healthy.interval, active.healthy.successes) == (1, 2)
    assert active.healthy.http_statuses == [200, 302]
    unhealthy = active.unhealthy
    assert (unhealthy.http_failures, unhealthy.tcp_failures, unhealthy.timeouts) == (5, 2, 3)
    assert unhealthy.http_statuses == [429, 404, 500, 501, 502, 503, 504, 505]
    assert passive.healthy.successes == 5
    assert passive.unhealthy.http_statuses == [429, 500, 503]
    assert (passive.unhealthy.tcp_failures, passive.unhealthy.timeouts) == (2, 7)


@pytest.mark.parametrize(
    ("checks", "error"),
    [
        pytest.param({"passive": {}}, "active", id="passive-without-active"),
        pytest.param({"active": {}, "passive": {"type": "tcp"}}, "type", id="passive-tcp"),
        pytest.param({"active": {"typo": 1}}, "typo", id="unknown-field"),
        pytest.param({"active": {"type": "udp"}}, "type", id="unknown-type"),
        pytest.param({"active": {"http_path": "health"}}, "http_path", id="relative-path"),
        pytest.param({"active": {"http_path": "/a b"}}, "http_path", id="space-in-path"),
        pytest.param({"active": {"http_path": "/a\r\nX: y"}}, "http_path", id="crlf-in-path"),
        pytest.param({"active": {"req_headers": ["X-A: 1\r\nX-B: 2"]}}, "req_headers", id="crlf"),
        pytest.param({"active": {"req_headers": ["no colon"]}}, "req_headers", id="no-colon"),
        pytest.param({"active": {"req_headers": []}}, "req_headers", id="empty-headers"),
        pytest.param({"active": {"healthy": {"successes": 0}}}, "successes", id="zero"),
        pytest.param({"active": {"healthy": {"interval": 0}}}, "interval", id="interval-0"),
        pytest.param(
            {"active": {"unhealthy": {"http_statuses": [500, 500]}}}, "unique", id="repeated"
        ),
        pytest.param(
            {"active": {"unhealthy": {"http_statuses": [100]}}}, "http_statuses", id="status"
        ),
        pytest.param({"active": {"port": 0}}, "port", id="port-0"),
        pytest.param({"active": {"timeout": "1"}}, "timeout", id="string-timeout"),
    ],
)
def test_refused(checks: dict, error: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ValidationError) as caught:
        UpstreamSpec.model_validate({"nodes": {"127.0.0.1:1": 1}, "checks": checks})
    assert error in str(caught.value)


def test_passive_thresholds_may_be_zero() -> None:
    checks = Checks.model_validate(
        {"active": {}, "passive": {"healthy": {"successes": 0}, "unhealthy": {"timeouts": 0}}}
    )
    assert checks.passive is not None
    assert checks.passive.healthy.successes == 0
