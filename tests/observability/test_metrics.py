"""Metric recording in the data plane: the prometheus plugin's HTTP metrics (routes with the
plugin only) and the LLM metrics of every LLM call, in a private registry (one process)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from llmgate.errors import SettingsError
from llmgate.observability.accounting import LlmAccounting
from llmgate.observability.metrics import Metrics
from llmgate.settings import load_settings

CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Who is Pikachu?"}]}


@pytest.fixture
def metrics(gateway) -> Metrics:  # type: ignore[no-untyped-def]
    metrics = Metrics("llmgate_", CollectorRegistry())
    gateway.services.metrics = metrics
    gateway.services.observers = (LlmAccounting(metrics, None),)
    return metrics


def value(metrics: Metrics, sample: str, **labels: str) -> float:
    """The sum of the samples named ``sample`` whose labels include ``labels``."""
    return sum(
        s.value
        for family in metrics.registry.collect()
        for s in family.samples
        if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items())
    )


def series(metrics: Metrics, sample: str) -> list[dict[str, str]]:
    return [
        s.labels
        for family in metrics.registry.collect()
        for s in family.samples
        if s.name == sample
    ]


async def ai_route(gateway, plugins: dict[str, Any] | None = None, **route: Any) -> None:  # type: ignore[no-untyped-def]
    ai_proxy = {
        "provider": "openai-compatible",
        "auth": {"header": {"Authorization": "Bearer sk-test"}},
        "override": {"endpoint": f"http://{gateway.fake_address}/v1/chat/completions"},
    }
    await gateway.put(
        "routes/1", {"uri": "/chat", "plugins": {"ai-proxy": ai_proxy, **(plugins or {})}, **route}
    )


async def test_route_with_the_plugin_records_status_latency_and_bandwidth(gateway, metrics) -> None:  # type: ignore[no-untyped-def]
    await gateway.put(
        "routes/1", {"uri": "/p/*", "plugins": {"prometheus": {}}, "upstream": gateway.upstream()}
    )
    await gateway.put("routes/2", {"uri": "/q", "upstream": gateway.upstream()})
    sent = 0
    for _ in range(3):
        resp = await gateway.proxy.get("/p/x")
        assert resp.status == 200
        sent += len(await resp.read())
    resp = await gateway.proxy.get("/p/y", headers={"X-Fake-Status": "503"})
    assert resp.status == 503
    sent += len(await resp.read())
    assert (await gateway.proxy.get("/q")).status == 200

    labels = {"route": "1", "matched_uri": "/p/*", "matched_host": "", "service": ""}
    labels |= {"consumer": "", "node": "127.0.0.1"}
    assert value(metrics, "llmgate_http_status_total", code="200", **labels) == 3
    assert value(metrics, "llmgate_http_status_total", code="503", **labels) == 1
    # The route without the plugin records nothing.
    assert {s["route"] for s in series(metrics, "llmgate_http_status_total")} == {"1"}
    for kind in ("request", "upstream", "apisix"):
        assert value(metrics, "llmgate_http_latency_count", type=kind, route="1") == 4
    request_ms = value(metrics, "llmgate_http_latency_sum", type="request")
    upstream_ms = value(metrics, "llmgate_http_latency_sum", type="upstream")
    assert 0 < upstream_ms <= request_ms < 10_000
    # nginx's $bytes_sent: the bodies and the response heads.
    egress = value(metrics, "llmgate_bandwidth_total", type="egress", route="1")
    assert sent + 4 * 50 < egress < sent + 4 * 400
    ingress = value(metrics, "llmgate_bandwidth_total", type="ingress", route="1")
    assert ingress > 4 * len("GET /p/x HTTP/1.1\r\n")


async def test_plugin_replies_are_counted_with_consumer_and_no_node(gateway, metrics) -> None:  # type: ignore[no-untyped-def]
    await gateway.put(
        "consumers/jack", {"username": "jack", "plugins": {"key-auth": {"key": "k1"}}}
    )
    await gateway.put(
        "routes/1",
        {
            "name": "guarded",
            "uris": ["/a", "/b/*"],
            "hosts": ["example.com", "*.example.org"],
            "plugins": {"key-auth": {}, "prometheus": {"prefer_name": True}},
            "upstream": gateway.upstream(),
        },
    )
    host = {"Host": "api.example.org"}
    assert (await gateway.proxy.get("/b/c", headers=host)).status == 401
    assert (await gateway.proxy.get("/a", headers={**host, "apikey": "k1"})).status == 200

    common = {"route": "guarded", "matched_host": "*.example.org"}
    refused = {"code": "401", "matched_uri": "/b/*", "consumer": "", "node": ""}
    assert value(metrics, "llmgate_http_status_total", **refused, **common) == 1
    served = {"code": "200", "matched_uri": "/a", "consumer": "jack", "node": "127.0.0.1"}
    assert value(metrics, "llmgate_http_status_total", **served, **common) == 1
    # No upstream answered the 401: no "upstream" latency for it.
    assert value(metrics, "llmgate_http_latency_count", type="upstream") == 1
    assert value(metrics, "llmgate_http_latency_count", type="apisix") == 2


async def test_label_children_are_looked_up_once(gateway, metrics) -> None:  # type: ignore[no-untyped-def]
    await gateway.put(
        "routes/1", {"uri": "/p", "plugins": {"prometheus": {}}, "upstream": gateway.upstream()}
    )
    for _ in range(5):
        assert (await gateway.proxy.get("/p")).status == 200
    assert len(metrics._http) == 1
    assert value(metrics, "llmgate_http_status_total") == 5


async def test_llm_tokens_are_recorded_without_the_plugin(gateway, metrics) -> None:  # type: ignore[no-untyped-def]
    await gateway.put(
        "consumers/jack", {"username": "jack", "plugins": {"key-auth": {"key": "k1"}}}
    )
    await ai_route(gateway, {"key-auth": {}})
    headers = {"apikey": "k1"}
    prompt = completion = 0
    for _ in range(2):
        resp = await gateway.proxy.post("/chat", json=CHAT, headers=headers)
        usage = (await resp.json())["usage"]
        prompt, completion = (
            prompt + usage["prompt_tokens"],
            completion + usage["completion_tokens"],
        )
    # A stream whose client did not ask for its usage: the gateway did, and counts it (the
    # fake's stream uses what the same answer unstreamed did).
    resp = await gateway.proxy.post("/chat", json={**CHAT, "stream": True}, headers=headers)
    assert resp.status == 200
    assert b'"usage"' not in await resp.read()
    prompt, completion = prompt + usage["prompt_tokens"], completion + usage["completion_tokens"]

    labels = {"route_id": "1", "service_id": "", "consumer": "jack"}
    labels |= {"node": "ai-proxy-openai-compatible", "llm_model": "gpt-4o"}
    assert value(metrics, "llmgate_llm_prompt_tokens_total", **labels) == prompt > 0
    assert value(metrics, "llmgate_llm_completion_tokens_total", **labels) == completion > 0
    streamed = value(metrics, "llmgate_llm_completion_tokens_total", request_type="ai_stream")
    assert streamed == usage["completion_tokens"]
    assert value(metrics, "llmgate_llm_prompt_tokens_dist_count", request_type="ai_chat") == 2
    assert value(metrics, "llmgate_llm_completion_tokens_dist_sum") == completion
    assert value(metrics, "llmgate_llm_latency_count", type="total") == 3
    assert value(metrics, "llmgate_llm_latency_count", type="ttft") == 1  # streams only
    assert value(metrics, "llmgate_llm_active_connections") == 0
    assert series(metrics, "llmgate_http_status_total") == []  # no prometheus plugin


async def test_http_metrics_carry_request_type_and_models(gateway, metrics) -> None:  # type: ignore[no-untyped-def]
    """APISIX's http_status, http_latency and bandwidth have request_type (traditional_http,
    ai_chat, ai_stream), request_llm_model and llm_model labels."""
    await ai_route(gateway, {"prometheus": {}})
    await gateway.put(
        "routes/2", {"uri": "/p", "plugins": {"prometheus": {}}, "upstream": gateway.upstream()}
    )
    assert (await gateway.proxy.get("/p")).status == 200
    assert (await gateway.proxy.post("/chat", json=CHAT)).status == 200
    resp = await gateway.proxy.post("/chat", json={**CHAT, "stream": True})
    assert resp.status == 200
    await resp.read()
    resp = await gateway.proxy.post(
        "/chat", json={**CHAT, "model": "made-up"}, headers={"X-Fake-Status": "500"}
    )
    assert resp.status == 500

    plain = {"request_type": "traditional_http", "request_llm_model": "", "llm_model": ""}
    chat = {"request_type": "ai_chat", "request_llm_model": "gpt-4o", "llm_model": "gpt-4o"}
    stream = {**chat, "request_type": "ai_stream"}
    # A refused call's client-chosen model is no label value (as in the LLM metrics).
    failed = {**chat, "request_llm_model": "other", "llm_model": "other"}
    status = "llmgate_http_status_total"
    assert value(metrics, status, route="2", code="200", **plain) == 1
    assert value(metrics, status, route="1", code="200", **chat) == 1
    assert value(metrics, status, route="1", code="200", **stream) == 1
    assert value(metrics, status, route="1", code="500", **failed) == 1
    for labels in (plain, chat, stream, failed):
        assert value(metrics, "llmgate_http_latency_count", type="request", **labels) == 1
        assert value(metrics, "llmgate_bandwidth_total", type="egress", **labels) > 0
    names = list(series(metrics, "llmgate_http_latency_count")[0])
    assert names[-3:] == ["request_type", "request_llm_model", "llm_model"]
    # An LLM call's node is the instance ai-proxy picked ("ai-proxy-<provider>"), as APISIX's.
    instance = "ai-proxy-openai-compatible"
    assert value(metrics, status, route="1", node=instance) == 3
    assert value(metrics, status, route="2", node="127.0.0.1") == 1
    assert value(metrics, "llmgate_llm_prompt_tokens_total", node=instance) > 0
    assert {s["node"] for s in series(metrics, "llmgate_llm_active_connections")} == {instance}
    # The LLM metrics name the model asked for too, as APISIX's.
    assert value(metrics, "llmgate_llm_prompt_tokens_total", request_llm_model="gpt-4o") > 0
    for name in ("llm_latency_count", "llm_completion_tokens_total", "llm_active_connections"):
        labels = list(series(metrics, f"llmgate_{name}")[0])
        assert labels[-3:] == ["request_type", "request_llm_model", "llm_model"], name


async def test_failed_llm_calls_record_no_tokens(gateway, metrics) -> None:  # type: ignore[no-untyped-def]
    await ai_route(gateway, {"prometheus": {}})
    resp = await gateway.proxy.post(
        "/chat", json={**CHAT, "model": "made-up"}, headers={"X-Fake-Status": "500"}
    )
    assert resp.status == 500
    assert value(metrics, "llmgate_http_status_total", code="500") == 1
    assert series(metrics, "llmgate_llm_prompt_tokens_total") == []
    assert series(metrics, "llmgate_llm_latency_count") == []
    assert value(metrics, "llmgate_llm_active_connections") == 0


async def test_llm_active_connections_while_a_call_is_in_flight(gateway, metrics) -> None:  # type: ignore[no-untyped-def]
    await ai_route(gateway)
    # A model gets its own series once a call of it was served (until then: "other").
    assert (await gateway.proxy.post("/chat", json=CHAT)).status == 200
    call = asyncio.create_task(
        gateway.proxy.post("/chat", json=CHAT, headers={"X-Fake-Latency-Ms": "400"})
    )
    labels = {"route": "", "route_id": "1", "matched_uri": "/chat", "request_type": "ai_chat"}
    labels |= {"llm_model": "gpt-4o", "node": "ai-proxy-openai-compatible", "consumer": ""}
    for _ in range(100):
        if value(metrics, "llmgate_llm_active_connections", **labels) == 1:
            break
        await asyncio.sleep(0.01)
    else:
        pytest.fail("the call never showed as active")
    resp = await call
    assert resp.status == 200
    assert value(metrics, "llmgate_llm_active_connections", **labels) == 0


async def test_refused_calls_create_no_model_series(gateway, metrics) -> None:  # type: ignore[no-untyped-def]
    """The attacker's side: made-up model names the provider refuses leave no trace."""
    await ai_route(gateway, {"prometheus": {}})
    for i in range(50):
        body = {**CHAT, "model": f"made-up-{i}"}
        resp = await gateway.proxy.post("/chat", json=body, headers={"X-Fake-Status": "404"})
        assert resp.status == 404
    models = {labels["llm_model"] for labels in series(metrics, "llmgate_llm_active_connections")}
    assert models == {"other"}
    assert value(metrics, "llmgate_llm_active_connections") == 0


async def test_model_label_values_are_capped(gateway) -> None:  # type: ignore[no-untyped-def]
    """Served calls with 30 distinct models, at most 5 series each metric: then "other"."""
    metrics = Metrics("llmgate_", CollectorRegistry(), max_models=5)
    gateway.services.metrics = metrics
    gateway.services.observers = (LlmAccounting(metrics, None),)
    await ai_route(gateway)
    for i in range(30):
        resp = await gateway.proxy.post("/chat", json={**CHAT, "model": f"m-{i}"})
        assert resp.status == 200
    for name in ("llmgate_llm_prompt_tokens_total", "llmgate_llm_active_connections"):
        models = {labels["llm_model"] for labels in series(metrics, name)}
        assert models <= {"m-0", "m-1", "m-2", "m-3", "m-4", "other"}, name
    assert {
        labels["llm_model"] for labels in series(metrics, "llmgate_llm_prompt_tokens_total")
    } == {"m-0", "m-1", "m-2", "m-3", "m-4", "other"}
    assert value(metrics, "llmgate_llm_prompt_tokens_total", llm_model="other") > 0


def test_metrics_max_models_setting() -> None:
    assert load_settings({}, {}).metrics_max_models == 100
    environ = {"LLMGATE_METRICS_MAX_MODELS": "7"}
    assert load_settings({}, environ).metrics_max_models == 7
    for bad in ("0", "x", "1000001"):
        with pytest.raises(SettingsError, match="invalid metrics_max_models"):
            load_settings({}, {"LLMGATE_METRICS_MAX_MODELS": bad})


@pytest.mark.parametrize("prefix", ["9x_", "llm-gate_", "a b"])
def test_a_bad_metrics_prefix_stops_start_up(prefix: str) -> None:
    with pytest.raises(SettingsError, match="invalid metrics_prefix"):
        load_settings({}, {"LLMGATE_METRICS_PREFIX": prefix})


def test_metrics_prefix_setting() -> None:
    assert load_settings({}, {}).metrics_prefix == "llmgate_"
    assert load_settings({}, {"LLMGATE_METRICS_PREFIX": "apisix_"}).metrics_prefix == "apisix_"
