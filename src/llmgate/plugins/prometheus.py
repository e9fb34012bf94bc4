"""prometheus: records request, latency and bandwidth metrics of the routes that enable it.

As in APISIX, ``http_status``, ``http_latency`` and ``bandwidth`` are recorded in the log phase
of routes (or plugin_configs, consumers) with this plugin; ``prefer_name`` labels the route by
its name.  LLM token metrics are recorded for every LLM call whether or not the route has the
plugin (``observability/accounting.py``); the metrics themselves are defined in
``observability/metrics.py`` and served by ``observability/exporter.py``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from llmgate.plugin_api.config import PluginConfig
from llmgate.plugin_api.plugin import Plugin

if TYPE_CHECKING:
    from llmgate.http.context import RequestContext


class PrometheusConfig(PluginConfig):
    # Label the route and service by name instead of id.
    prefer_name: bool = False


class Prometheus(Plugin[PrometheusConfig]):
    name = "prometheus"
    priority = 500
    Config = PrometheusConfig

    async def log(self, ctx: RequestContext) -> None:
        metrics = self.services.metrics
        if metrics is not None:
            metrics.record_http(ctx, self.config.prefer_name)
