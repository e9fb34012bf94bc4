"""llmgate's Prometheus metrics: APISIX's names, labels and buckets, and cheap recording.

    Metrics(prefix)                           one per data-plane process, in its own registry
      .record_http(ctx, prefer_name)          the prometheus plugin's log phase
      .llm_started(ctx, call) -> LlmActive    llm_active_connections + 1 (every LLM call)
      .record_llm(ctx, call, ...)             tokens and latency (every LLM call)
      .sample(requests, connections, revision)   process-wide gauges (GaugeSampler: every
                                                 second)

Names carry ``settings.metrics_prefix`` (``llmgate_``; ``apisix_`` gives APISIX's names):

    http_status                counter    code, route, matched_uri, matched_host, service,
                                          consumer, node, request_type, request_llm_model,
                                          llm_model
    http_latency               histogram  type=request|upstream|apisix, route, service,
                                          consumer, node, request_type, request_llm_model,
                                          llm_model (ms)
    bandwidth                  counter    type=ingress|egress, route, service, consumer, node,
                                          request_type, request_llm_model, llm_model
    http_requests_total        gauge      requests the data plane received (404s too)
    nginx_http_current_connections gauge  state=active: open client connections (APISIX's name)
    config_revision            gauge      the store revision served (the lowest of the workers)
    node_info                  gauge      hostname, version: 1 (as APISIX's)
    config_errors              gauge      stored resources that do not compile (runtime/compiler.py)
    llm_prompt_tokens          counter    route_id, service_id, consumer, node, request_type,
    llm_completion_tokens      counter    request_llm_model, llm_model
    llm_prompt_tokens_dist     histogram  (the same labels; token buckets)
    llm_completion_tokens_dist histogram
    llm_latency                histogram  type=total|ttft + the same labels (ms)
    llm_cost                   counter    the same labels: what the calls cost, in the price
                                          table's currency (``ai/pricing.py``; llmgate's)
    llm_cache_hit_tokens       counter    type=prompt|completion + the same labels: tokens
                                          proxy-cache served instead of a provider (llmgate's)
    llm_active_connections     gauge      route, route_id, matched_uri, matched_host, service,
                                          service_id, consumer, node, request_type,
                                          request_llm_model, llm_model

``node`` of a request that called an LLM through ai-proxy / ai-proxy-multi is the instance
picked (``ai-proxy-<provider>``, or the instance's name), as APISIX's (its ``balancer_ip``);
other requests name the upstream node's host.

Counters are exposed as APISIX names them, without ``_total`` (``exporter.render``).  With
``PROMETHEUS_MULTIPROC_DIR`` set (``llmgate serve`` always sets it, see ``exporter.py``) every
value lands in this process's mmap file and the exporter adds up the processes.

Recording never parses config: the label children of each label combination are looked up
once and kept (``.labels()`` validates its arguments on every call), and their values are
written in place (``cells.py``: a scrape sees every update at once, as with prometheus_client's
own ``inc``, for a tenth of its cost).  The label values a request gives (matched URI and
host, node, request length, model) are derived in ``metric_labels.py``.

``llm_model`` and ``request_llm_model`` are the labels a client chooses (the request's
``model``, as asked and as the provider echoed it), so their values are bounded per process
(``ModelLabels``): the first ``max_models`` models of calls the provider served get their own
series, later ones fold into ``other``.  A call is counted in ``llm_active_connections`` under
its model only once that model has been admitted (under ``other`` until then), so calls the
provider refuses create no series.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from llmgate import __version__
from llmgate.ai.call import STATE_KEY as LLM_CALL
from llmgate.ai.call import LlmCall
from llmgate.ai.pricing import amount
from llmgate.observability.cells import Cell, counter, histogram
from llmgate.observability.cells import gauge as gauge_cell
from llmgate.observability.metric_labels import (
    ModelLabels,
    matched_host,
    matched_uri,
    node_of,
    request_length,
    single_node,
)

if TYPE_CHECKING:
    from llmgate.http.context import RequestContext

# APISIX's default latency buckets (ms) and LLM token buckets.
DEFAULT_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 30000, 60000)
TOKEN_BUCKETS = (
    1, 10, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000, 100000, 200000, 500000,
    1000000,
)  # fmt: skip
# Distinct llm_model values per process, by default (settings.metrics_max_models).
DEFAULT_MAX_MODELS = 100
SAMPLE_INTERVAL = 1.0  # seconds between two samples of the process-wide gauges

# What every HTTP series ends with, as APISIX's: traditional_http / ai_chat / ai_stream, the
# model asked for and the model that answered ("" when no LLM was called).
REQUEST_LABELS = ("request_type", "request_llm_model", "llm_model")
HTTP_STATUS_LABELS = (
    "code", "route", "matched_uri", "matched_host", "service", "consumer", "node", *REQUEST_LABELS,
)  # fmt: skip
HTTP_LABELS = ("type", "route", "service", "consumer", "node", *REQUEST_LABELS)
TRADITIONAL_HTTP = "traditional_http"  # $request_type of a request that called no LLM
LLM_LABELS = ("route_id", "service_id", "consumer", "node", *REQUEST_LABELS)
LLM_ACTIVE_LABELS = (
    "route", "route_id", "matched_uri", "matched_host", "service", "service_id", "consumer",
    "node", *REQUEST_LABELS,
)  # fmt: skip


class _HttpSeries:
    """The label children one (route, consumer, node, code, ...) combination records into
    (their values written in place: ``cells.py``)."""

    __slots__ = ("apisix", "egress", "ingress", "request", "status", "upstream")

    def __init__(self, metrics: Metrics, key: tuple[str, ...]) -> None:
        self.status = counter(metrics.http_status.labels(*key))
        _, route, _, _, *rest = key  # rest: service, consumer, node and REQUEST_LABELS
        latency, bandwidth = metrics.http_latency, metrics.bandwidth
        self.request = histogram(latency.labels("request", route, *rest))
        self.upstream = histogram(latency.labels("upstream", route, *rest))
        self.apisix = histogram(latency.labels("apisix", route, *rest))
        self.ingress = counter(bandwidth.labels("ingress", route, *rest))
        self.egress = counter(bandwidth.labels("egress", route, *rest))


class _LlmSeries:
    __slots__ = (
        "cached_completion", "cached_prompt", "completion", "completion_dist", "cost", "prompt",
        "prompt_dist", "total", "ttft",
    )  # fmt: skip

    def __init__(self, metrics: Metrics, key: tuple[str, ...]) -> None:
        self.cost = counter(metrics.llm_cost.labels(*key))
        self.cached_prompt = counter(metrics.llm_cache_hit_tokens.labels("prompt", *key))
        self.cached_completion = counter(metrics.llm_cache_hit_tokens.labels("completion", *key))
        self.prompt = counter(metrics.llm_prompt_tokens.labels(*key))
        self.completion = counter(metrics.llm_completion_tokens.labels(*key))
        self.prompt_dist = histogram(metrics.llm_prompt_tokens_dist.labels(*key))
        self.completion_dist = histogram(metrics.llm_completion_tokens_dist.labels(*key))
        self.total = histogram(metrics.llm_latency.labels("total", *key))
        self.ttft = histogram(metrics.llm_latency.labels("ttft", *key))


class LlmActive:
    """One LLM call counted in ``llm_active_connections``; ``done()`` takes it out (once)."""

    __slots__ = ("_gauge",)

    def __init__(self, gauge: Cell) -> None:
        self._gauge: Cell | None = gauge
        gauge.inc(1)

    def done(self) -> None:
        if self._gauge is not None:
            self._gauge.inc(-1)
            self._gauge = None


class Metrics:
    """Every metric of a data-plane process, registered in ``registry`` (a private one by
    default, so two instances never clash)."""

    def __init__(
        self,
        prefix: str = "llmgate_",
        registry: CollectorRegistry | None = None,
        max_models: int = DEFAULT_MAX_MODELS,
    ):
        self.registry = registry = registry if registry is not None else CollectorRegistry()
        self.models = ModelLabels(max_models)
        p = prefix
        self.http_status = Counter(
            p + "http_status", "HTTP status codes per route in llmgate", HTTP_STATUS_LABELS,
            registry=registry,
        )  # fmt: skip
        self.http_latency = Histogram(
            p + "http_latency", "HTTP request latency in milliseconds per route in llmgate",
            HTTP_LABELS, buckets=DEFAULT_BUCKETS, registry=registry,
        )  # fmt: skip
        self.bandwidth = Counter(
            p + "bandwidth", "Total bandwidth in bytes consumed per route in llmgate",
            HTTP_LABELS, registry=registry,
        )  # fmt: skip
        # Sampled from each process's HTTP server: "sum" keeps a dead worker's requests counted.
        self.http_requests = Gauge(
            p + "http_requests_total", "The total number of client requests since llmgate started",
            registry=registry, multiprocess_mode="sum",
        )  # fmt: skip
        self.connections = Gauge(
            p + "nginx_http_current_connections", "Number of HTTP connections", ("state",),
            registry=registry, multiprocess_mode="livesum",
        )  # fmt: skip
        self.config_revision = Gauge(
            p + "config_revision",
            "The configuration revision served (with several workers: the lowest one)",
            registry=registry, multiprocess_mode="livemin",
        )  # fmt: skip
        self.config_errors = Gauge(
            p + "config_errors",
            "Stored resources whose config does not compile: served at their last good "
            "version, or answering 503 (with several workers: the most any worker has)",
            registry=registry, multiprocess_mode="livemax",
        )  # fmt: skip
        self.llm_latency = Histogram(
            p + "llm_latency", "LLM request latency in milliseconds", ("type", *LLM_LABELS),
            buckets=DEFAULT_BUCKETS, registry=registry,
        )  # fmt: skip
        self.llm_prompt_tokens = Counter(
            p + "llm_prompt_tokens", "LLM service consumed prompt tokens", LLM_LABELS,
            registry=registry,
        )  # fmt: skip
        self.llm_completion_tokens = Counter(
            p + "llm_completion_tokens", "LLM service consumed completion tokens", LLM_LABELS,
            registry=registry,
        )  # fmt: skip
        self.llm_prompt_tokens_dist = Histogram(
            p + "llm_prompt_tokens_dist", "LLM prompt tokens distribution per request",
            LLM_LABELS, buckets=TOKEN_BUCKETS, registry=registry,
        )  # fmt: skip
        self.llm_completion_tokens_dist = Histogram(
            p + "llm_completion_tokens_dist", "LLM completion tokens distribution per request",
            LLM_LABELS, buckets=TOKEN_BUCKETS, registry=registry,
        )  # fmt: skip
        self.llm_cost = Counter(
            p + "llm_cost", "LLM service cost, in the price table's currency", LLM_LABELS,
            registry=registry,
        )  # fmt: skip
        self.llm_cache_hit_tokens = Counter(
            p + "llm_cache_hit_tokens", "LLM tokens served from proxy-cache instead of a provider",
            ("type", *LLM_LABELS), registry=registry,
        )  # fmt: skip
        self.llm_active_connections = Gauge(
            p + "llm_active_connections", "Number of active connections to LLM service",
            LLM_ACTIVE_LABELS, registry=registry, multiprocess_mode="livesum",
        )  # fmt: skip
        # APISIX's node_info: 1, labelled with this node's host name and version.
        self.node_info = Gauge(
            p + "node_info", "Info of llmgate node", ("hostname", "version"),
            registry=registry, multiprocess_mode="max",
        )  # fmt: skip
        self.node_info.labels(socket.gethostname(), __version__).set(1)
        self._active_connections = self.connections.labels("active")
        self._http: dict[tuple[str, ...], _HttpSeries] = {}
        self._llm: dict[tuple[str, ...], _LlmSeries] = {}
        self._llm_active: dict[tuple[str, ...], Cell] = {}

    def record_http(self, ctx: RequestContext, prefer_name: bool = False) -> None:
        """Status, latencies and bandwidth of a finished request (APISIX's prometheus log)."""
        route = ctx.route
        inbound = ctx.inbound
        node, request_type, request_model, model = self._request_labels(ctx)
        key = (
            str(ctx.status) if ctx.status else "499",  # nginx's code for "client went away"
            (route.name or route.id) if prefer_name else route.id,
            matched_uri(route, ctx.target.uri),
            matched_host(route, ctx.target.host),
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
            series = self._http[key] = _HttpSeries(self, key)
        series.status.inc(1)
        latency = (time.perf_counter() - ctx.started) * 1000
        series.request.observe(latency)
        if ctx.upstream_latency is not None:
            upstream = ctx.upstream_latency * 1000
            series.upstream.observe(upstream)
            series.apisix.observe(max(latency - upstream, 0.0))
        else:
            series.apisix.observe(latency)
        series.ingress.inc(request_length(inbound))
        sent = ctx.bytes_sent
        if sent:
            series.egress.inc(sent)

    def _request_labels(self, ctx: RequestContext) -> tuple[str, str, str, str]:
        """node, request_type, request_llm_model and llm_model of a finished request: a call
        the provider served admits its models, as ``record_llm`` does (``ModelLabels``)."""
        call = ctx.state.get(LLM_CALL)
        if call is None:
            return node_of(ctx.upstream_addr), TRADITIONAL_HTTP, "", ""
        status = ctx.upstream_status
        label = (
            self.models.admit
            if (status is not None and status < 400) or call.cache_hit
            else self.models.known
        )
        return (
            call.instance or node_of(ctx.upstream_addr),
            call.request_type,
            label(call.request_model or call.model),
            label(call.model),
        )

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
            self.models.known(call.request_model or call.model),
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
        label = self.models.admit if served else self.models.known
        key = (
            ctx.route.id,
            ctx.route.service_id or "",
            ctx.consumer.username if ctx.consumer is not None else "",
            call.instance or node_of(ctx.upstream_addr),
            call.request_type,
            label(call.request_model or call.model),
            label(call.model),
        )
        series = self._llm.get(key)
        if series is None:
            series = self._llm[key] = _LlmSeries(self, key)
        usage = call.usage
        if call.cache_hit:
            if usage is not None:
                series.cached_prompt.inc(usage.prompt_tokens)
                series.cached_completion.inc(usage.completion_tokens)
            return
        if cost:
            series.cost.inc(amount(cost))
        if usage is not None:
            series.prompt.inc(usage.prompt_tokens)
            series.completion.inc(usage.completion_tokens)
            series.prompt_dist.observe(usage.prompt_tokens)
            series.completion_dist.observe(usage.completion_tokens)
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


class GaugeSampler:
    """Sets the process-wide gauges every ``interval`` seconds (and once more at ``stop``) from
    ``read() -> (requests received, open connections, revision served)``."""

    def __init__(
        self,
        metrics: Metrics,
        read: Callable[[], tuple[int, int, int | None]],
        interval: float = SAMPLE_INTERVAL,
    ) -> None:
        self.metrics = metrics
        self.read = read
        self.interval = interval
        self._task: asyncio.Task[None] | None = None

    def sample(self) -> None:
        self.metrics.sample(*self.read())

    def start(self) -> None:
        self.sample()
        self._task = asyncio.create_task(self._run(), name="llmgate-metrics-sample")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            self.sample()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.sample()
