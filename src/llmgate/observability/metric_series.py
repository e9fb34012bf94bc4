"""The label children one label combination records into, looked up once per combination
(``.labels()`` validates its arguments on every call) and written in place (``cells.py``)."""

from __future__ import annotations

from llmgate.observability.cells import Cell, counter, histogram
from llmgate.observability.metric_families import MetricFamilies


class HttpSeries:
    """The label children one (route, consumer, node, code, ...) combination records into
    (their values written in place: ``cells.py``)."""

    __slots__ = ("apisix", "egress", "ingress", "request", "status", "upstream")

    def __init__(self, metrics: MetricFamilies, key: tuple[str, ...]) -> None:
        self.status = counter(metrics.http_status.labels(*key))
        _, route, _, _, *rest = key  # rest: service, consumer, node and REQUEST_LABELS
        latency, bandwidth = metrics.http_latency, metrics.bandwidth
        self.request = histogram(latency.labels("request", route, *rest))
        self.upstream = histogram(latency.labels("upstream", route, *rest))
        self.apisix = histogram(latency.labels("apisix", route, *rest))
        self.ingress = counter(bandwidth.labels("ingress", route, *rest))
        self.egress = counter(bandwidth.labels("egress", route, *rest))

    def record(
        self, latency: float, upstream: float | None, received: int, sent: int | None
    ) -> None:
        """One finished request: its latency and the upstream's (ms; None: not sent), the
        bytes received and sent."""
        self.status.inc(1)
        self.request.observe(latency)
        if upstream is not None:
            self.upstream.observe(upstream)
            self.apisix.observe(max(latency - upstream, 0.0))
        else:
            self.apisix.observe(latency)
        self.ingress.inc(received)
        if sent:
            self.egress.inc(sent)


class LlmSeries:
    __slots__ = (
        "cached_completion", "cached_prompt", "completion", "completion_dist", "cost", "prompt",
        "prompt_dist", "total", "ttft",
    )  # fmt: skip

    def __init__(self, metrics: MetricFamilies, key: tuple[str, ...]) -> None:
        self.cost = counter(metrics.llm_cost.labels(*key))
        self.cached_prompt = counter(metrics.llm_cache_hit_tokens.labels("prompt", *key))
        self.cached_completion = counter(metrics.llm_cache_hit_tokens.labels("completion", *key))
        self.prompt = counter(metrics.llm_prompt_tokens.labels(*key))
        self.completion = counter(metrics.llm_completion_tokens.labels(*key))
        self.prompt_dist = histogram(metrics.llm_prompt_tokens_dist.labels(*key))
        self.completion_dist = histogram(metrics.llm_completion_tokens_dist.labels(*key))
        self.total = histogram(metrics.llm_latency.labels("total", *key))
        self.ttft = histogram(metrics.llm_latency.labels("ttft", *key))

    def record_tokens(self, prompt: int, completion: int) -> None:
        """The tokens of one call the provider served, counted and observed."""
        self.prompt.inc(prompt)
        self.completion.inc(completion)
        self.prompt_dist.observe(prompt)
        self.completion_dist.observe(completion)


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
