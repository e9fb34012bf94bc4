"""The process-wide gauges, sampled from the HTTP server's counts and the revision served."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from llmgate.observability.gauge_sampler import GaugeSampler
from llmgate.observability.metrics import Metrics


async def test_gauge_sampler_sets_the_process_gauges() -> None:
    registry = CollectorRegistry()
    metrics = Metrics("apisix_", registry)
    readings = iter([(5, 2, 7), (9, 0, None)])
    sampler = GaugeSampler(metrics, lambda: next(readings), interval=60)
    sampler.start()
    active = {"state": "active"}
    assert registry.get_sample_value("apisix_http_requests_total") == 5
    assert registry.get_sample_value("apisix_nginx_http_current_connections", active) == 2
    assert registry.get_sample_value("apisix_config_revision") == 7
    await sampler.stop()  # samples once more
    assert registry.get_sample_value("apisix_http_requests_total") == 9
    assert registry.get_sample_value("apisix_nginx_http_current_connections", active) == 0
    assert registry.get_sample_value("apisix_config_revision") == 7  # unknown revision: kept
