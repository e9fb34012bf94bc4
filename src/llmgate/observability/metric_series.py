"""The label children one label combination records into, looked up once per combination
(``.labels()`` validates its arguments on every call) and written in place (``cells.py``)."""

from __future__ import annotations

from bisect import bisect_left

from llmgate.observability.cells import Cell, counter, histogram
from llmgate.observability.metric_families import MetricFamilies


class HttpSeries:
    """The label children one (route, consumer, node, code, ...) combination records into
    (their values written in place: ``cells.py``)."""

    __slots__ = ("_bounds", "apisix", "egress", "ingress", "request", "status", "upstream")

    def __init__(self, metrics: MetricFamilies, key: tuple[str, ...]) -> None:
        self.status = counter(metrics.http_status.labels(*key))
        _, route, _, _, *rest = key  # rest: service, consumer, node and REQUEST_LABELS
        latency, bandwidth = metrics.http_latency, metrics.bandwidth
        self.request = histogram(latency.labels("request", route, *rest))
        self.upstream = histogram(latency.labels("upstream", route, *rest))
        self.apisix = histogram(latency.labels("apisix", route, *rest))
        self.ingress = counter(bandwidth.labels("ingress", route, *rest))
        self.egress = counter(bandwidth.labels("egress", route, *rest))
        self._bounds = self.request.bounds  # the three latencies' (one family's buckets)

    def record(
        self, latency: float, upstream: float | None, received: int, sent: int | None
    ) -> None:
        """One finished request: its latency and the upstream's (ms; None: not sent), the
        bytes received and sent.  The cells are written here rather than through their
        ``inc`` / ``observe`` (what they do, without a call per value: every request)."""
        view, index = self.status.view, self.status.index
        view[index] += 1
        bounds = self._bounds
        request = self.request
        view, index = request.doubles[bisect_left(bounds, latency)]  # first bound >= latency
        view[index] += 1
        view, index = request.total
        view[index] += latency
        if upstream is not None:
            cells = self.upstream
            view, index = cells.doubles[bisect_left(bounds, upstream)]
            view[index] += 1
            view, index = cells.total
            view[index] += upstream
            own = max(latency - upstream, 0.0)
        else:
            own = latency
        cells = self.apisix
        view, index = cells.doubles[bisect_left(bounds, own)]
        view[index] += 1
        view, index = cells.total
        view[index] += own
        view, index = self.ingress.view, self.ingress.index
        view[index] += received
        if sent:
            view, index = self.egress.view, self.egress.index
            view[index] += sent


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
        """The tokens of one call the provider served, counted and observed (the cells written
        here, as ``HttpSeries.record`` does: every LLM answer)."""
        view, index = self.prompt.view, self.prompt.index
        view[index] += prompt
        view, index = self.completion.view, self.completion.index
        view[index] += completion
        cells = self.prompt_dist
        view, index = cells.doubles[bisect_left(cells.bounds, prompt)]
        view[index] += 1
        view, index = cells.total
        view[index] += prompt
        cells = self.completion_dist
        view, index = cells.doubles[bisect_left(cells.bounds, completion)]
        view[index] += 1
        view, index = cells.total
        view[index] += completion


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
