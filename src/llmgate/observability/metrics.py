"""llmgate's Prometheus metrics, cheaply recorded (APISIX's names, labels and buckets are in
``metric_families.py``).

    Metrics(prefix)                           one per data-plane process, in its own registry
      .record_http(ctx, prefer_name)          the prometheus plugin's log phase
      .llm_started(ctx, call) -> LlmActive    llm_active_connections + 1 (every LLM call)
      .record_llm(ctx, call, ...)             tokens and latency (every LLM call)
      .sample(requests, connections, revision)   process-wide gauges (``gauge_sampler.py``:
                                                 every second)

``node`` of a request that called an LLM through ai-proxy / ai-proxy-multi is the instance
picked (``ai-proxy-<provider>``, or the instance's name), as APISIX's (its ``balancer_ip``);
other requests name the upstream node's host.

Recording never parses config: the label children of each label combination are looked up
once and kept (``metric_series.py``; ``.labels()`` validates its arguments on every call), and
their values are written in place (``cells.py``: a scrape sees every update at once, as with
prometheus_client's own ``inc``, for a tenth of its cost).  The label values a request gives
(matched URI and host, node, request length, model) are derived in ``metric_labels.py``.

``llm_model`` and ``request_llm_model`` are the labels a client chooses (the request's
``model``, as asked and as the provider echoed it), so their values are bounded per process
(``ModelLabels``): the first ``max_models`` models of calls the provider served get their own
series, later ones fold into ``other``.  A call is counted in ``llm_active_connections`` under
its model only once that model has been admitted (under ``other`` until then), so calls the
provider refuses create no series.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry

from llmgate.ai.call import CACHE_HIT, LlmCall
from llmgate.ai.call import STATE_KEY as LLM_CALL
from llmgate.ai.pricing import amount
from llmgate.observability.cells import Cell
from llmgate.observability.cells import gauge as gauge_cell
from llmgate.observability.metric_families import MetricFamilies
from llmgate.observability.metric_labels import (
    ModelLabels,
    matched_host,
    matched_uri,
    node_of,
    request_length,
    single_node,
)
from llmgate.observability.metric_series import HttpSeries, LlmActive, LlmSeries

if TYPE_CHECKING:
    from llmgate.http.context import RequestContext

# Distinct llm_model values per process, by default (settings.metrics_max_models).
DEFAULT_MAX_MODELS = 100
TRADITIONAL_HTTP = "traditional_http"  # $request_type of a request that called no LLM


class Metrics(MetricFamilies):
    """Every metric of a data-plane process (``metric_families.py``) and the label children
    recorded into, per label combination."""

    def __init__(
        self,
        prefix: str = "llmgate_",
        registry: CollectorRegistry | None = None,
        max_models: int = DEFAULT_MAX_MODELS,
    ):
        super().__init__(prefix, registry)
        self.models = ModelLabels(max_models)
        self._active_connections = self.connections.labels("active")
        self._http: dict[tuple[str, ...], HttpSeries] = {}
        self._llm: dict[tuple[str, ...], LlmSeries] = {}
        self._llm_active: dict[tuple[str, ...], Cell] = {}

    def record_http(self, ctx: RequestContext, prefer_name: bool = False) -> None:
        """Status, latencies and bandwidth of a finished request (APISIX's prometheus log)."""
        route = ctx.route
        node, request_type, request_model, model = self._request_labels(ctx)
        # What matched_uri / matched_host find, without a call, for a route of one URI and at
        # most one host (the usual).
        uris, hosts = route.uris, route.hosts
        key = (
            str(ctx.status) if ctx.status else "499",  # nginx's code for "client went away"
            (route.name or route.id) if prefer_name else route.id,
            uris[0] if len(uris) == 1 else matched_uri(route, ctx.target.uri),
            matched_host(route, ctx.target.host) if len(hosts) > 1 else hosts[0] if hosts else "",
            # The route's service (by name with prefer_name, as APISIX's exporter).
            ((route.service_name or route.service_id) if prefer_name else route.service_id) or "",
            ctx.consumer.username if ctx.consumer is not None else "",
            node,
            request_type,
            request_model,
            model,
        )
        series = self._http.get(key)
        if series is None:
            series = self._http[key] = HttpSeries(self, key)
        upstream = ctx.upstream_latency
        series.record(
            (time.perf_counter() - ctx.started) * 1000,
            upstream * 1000 if upstream is not None else None,
            request_length(ctx.inbound),
            ctx.bytes_sent,
        )

    def _request_labels(self, ctx: RequestContext) -> tuple[str, str, str, str]:
        """node, request_type, request_llm_model and llm_model of a finished request: a call
        the provider served admits its models, as ``record_llm`` does (``ModelLabels``)."""
        call = ctx.state.get(LLM_CALL)
        if call is None:
            return node_of(ctx.upstream_addr), TRADITIONAL_HTTP, "", ""
        status = ctx.upstream_status
        asked, model = self.models.pair(
            call, (status is not None and status < 400) or call.cache == CACHE_HIT
        )
        return call.instance or node_of(ctx.upstream_addr), call.request_type, asked, model

    def llm_started(self, ctx: RequestContext, call: LlmCall) -> LlmActive:
        """Count an LLM call about to be sent in ``llm_active_connections`` (under ``other``
        while its model has not been admitted: nothing the provider may refuse adds series)."""
        route = ctx.route
        key = (
            route.name or "",
            route.id,
            matched_uri(route, ctx.target.uri),
            matched_host(route, ctx.target.host),
            route.service_name or "",
            route.service_id or "",
            ctx.consumer.username if ctx.consumer is not None else "",
            call.instance or single_node(ctx),
            call.request_type,
            self.models.known(call.asked_model),
            self.models.known(call.model),
        )
        gauge = self._llm_active.get(key)
        if gauge is None:
            gauge = self._llm_active[key] = gauge_cell(self.llm_active_connections.labels(*key))
        return LlmActive(gauge)

    def record_llm(
        self, ctx: RequestContext, call: LlmCall, served: bool, cost: int | None = None
    ) -> None:
        """Tokens of ``call`` (when its response carried ``usage``), its ``cost`` (``PICO``
        units) and, when ``served`` (the provider answered below 400), its latencies: total,
        and time to first token (streams).  A cache hit's tokens go to ``llm_cache_hit_tokens``,
        not to the tokens a provider consumed.  A served call admits its model as a label value
        (``ModelLabels``)."""
        route = ctx.route
        key = (
            route.id,
            route.service_id or "",
            ctx.consumer.username if ctx.consumer is not None else "",
            call.instance or node_of(ctx.upstream_addr),
            call.request_type,
            *self.models.pair(call, served),
        )
        series = self._llm.get(key)
        if series is None:
            series = self._llm[key] = LlmSeries(self, key)
        usage = call.usage
        if call.cache == CACHE_HIT:
            if usage is not None:
                series.cached_prompt.inc(usage.prompt_tokens)
                series.cached_completion.inc(usage.completion_tokens)
            return
        if cost:
            series.cost.inc(amount(cost))
        if usage is not None:
            series.record_tokens(usage.prompt_tokens, usage.completion_tokens)
        if served and call.started is not None:
            if call.finished is not None:
                series.total.observe((call.finished - call.started) * 1000)
            if call.stream and call.first_token is not None:
                series.ttft.observe((call.first_token - call.started) * 1000)

    def sample(self, requests: int, connections: int, revision: int | None) -> None:
        """The process-wide gauges, read from the HTTP server and the snapshot loader."""
        self.http_requests.set(requests)
        self._active_connections.set(connections)
        if revision is not None:
            self.config_revision.set(revision)
