"""llmgate's Prometheus metric families: APISIX's names, labels and buckets, in one registry.

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

Counters are exposed as APISIX names them, without ``_total`` (``exporter.render``).  With
``PROMETHEUS_MULTIPROC_DIR`` set (``llmgate serve`` always sets it, see ``exporter.py``) every
value lands in this process's mmap file and the exporter adds up the processes.
``metrics.Metrics`` records into these families.
"""

from __future__ import annotations

import socket

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from llmgate import __version__

# APISIX's default latency buckets (ms) and LLM token buckets.
DEFAULT_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 30000, 60000)
TOKEN_BUCKETS = (
    1, 10, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000, 100000, 200000, 500000,
    1000000,
)  # fmt: skip

# What every HTTP series ends with, as APISIX's: traditional_http / ai_chat / ai_stream, the
# model asked for and the model that answered ("" when no LLM was called).
REQUEST_LABELS = ("request_type", "request_llm_model", "llm_model")
HTTP_STATUS_LABELS = (
    "code", "route", "matched_uri", "matched_host", "service", "consumer", "node", *REQUEST_LABELS,
)  # fmt: skip
HTTP_LABELS = ("type", "route", "service", "consumer", "node", *REQUEST_LABELS)
LLM_LABELS = ("route_id", "service_id", "consumer", "node", *REQUEST_LABELS)
LLM_ACTIVE_LABELS = (
    "route", "route_id", "matched_uri", "matched_host", "service", "service_id", "consumer",
    "node", *REQUEST_LABELS,
)  # fmt: skip


class MetricFamilies:
    """Every metric family of a data-plane process, registered in ``registry`` (a private one by
    default, so two instances never clash)."""

    def __init__(self, prefix: str = "llmgate_", registry: CollectorRegistry | None = None):
        self.registry = registry = registry if registry is not None else CollectorRegistry()
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
