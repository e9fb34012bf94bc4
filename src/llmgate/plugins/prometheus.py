"""prometheus: records request, latency, bandwidth and LLM token metrics."""

from __future__ import annotations

from llmgate.plugins.base import Plugin, PluginConfig


class PrometheusConfig(PluginConfig):
    # Label the route and service by name instead of id.
    prefer_name: bool = False


class Prometheus(Plugin):
    name = "prometheus"
    priority = 500
    Config = PrometheusConfig
