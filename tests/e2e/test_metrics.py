"""Metrics, token usage and health of a real ``llmgate serve``: one scrape of the exporter shows
the sum of every data-plane worker, and the usage endpoint agrees with it."""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.processes import Running, fake_upstream_process, llmgate_serve, stop, worker_pids
from tests.support import ADMIN_KEY

NON_STREAM, STREAM = 16, 4  # requests on fresh connections: both workers get some


def http(
    url: str, body: Any = None, method: str = "GET", headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    """One request on its own connection: (status, body)."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def put(node: Running, path: str, body: dict[str, Any]) -> None:
    status, answer = http(
        f"{node.admin_url}/apisix/admin/{path}", body, "PUT", {"X-API-KEY": ADMIN_KEY}
    )
    assert status in (200, 201), answer


def scrape(node: Running) -> dict[str, float]:
    """``{'name{labels}': value}`` of one scrape."""
    status, body = http(f"http://127.0.0.1:{node.metrics_port}/apisix/prometheus/metrics")
    assert status == 200
    found = {}
    for line in body.decode().splitlines():
        if line and not line.startswith("#"):
            key, _, number = line.rpartition(" ")
            found[key] = float(number)
    return found


def total(metrics: dict[str, float], name: str, **labels: str) -> float:
    """The sum of the series of ``name`` carrying ``labels``."""
    wanted = [f'{k}="{v}"' for k, v in labels.items()]
    return sum(
        number
        for key, number in metrics.items()
        if key.partition("{")[0] == name and all(w in key for w in wanted)
    )


def wait_for(check: Callable[[], Any], what: str, timeout: float = 5.0) -> Any:
    """Poll ``check()`` until it returns something truthy (the metrics are sampled and the
    usage flushed about every second)."""
    deadline = time.monotonic() + timeout
    while not (result := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
    return result


def stream_usage(body: bytes) -> dict[str, int]:
    events = [line[6:] for line in body.split(b"\n") if line.startswith(b"data: {")]
    usages = [json.loads(event)["usage"] for event in events if b'"usage":{' in event]
    assert len(usages) == 1
    return usages[0]


@pytest.fixture(scope="module")
def fake_port() -> Iterator[int]:
    with fake_upstream_process() as port:
        yield port


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory, fake_port: int) -> Iterator[Running]:
    with llmgate_serve(tmp_path_factory.mktemp("metrics"), "--workers", "2") as running:
        put(running, "consumers/jack", {"username": "jack", "plugins": {"key-auth": {"key": "jk"}}})
        ai_proxy = {
            "provider": "openai-compatible",
            "auth": {"header": {"Authorization": "Bearer sk-test"}},
            "override": {"endpoint": f"http://127.0.0.1:{fake_port}/v1/chat/completions"},
        }
        plugins = {"key-auth": {}, "prometheus": {}, "ai-proxy": ai_proxy}
        put(running, "routes/1", {"uri": "/v1/chat/completions", "plugins": plugins})
        directory = metrics_dir(running)
        yield running
        stop(running.proc)
    assert running.proc.returncode == 0, running.output()
    assert not directory.exists()  # the node's metrics directory goes with it


def test_one_scrape_sums_every_worker_and_usage_agrees(node: Running) -> None:
    # Every worker serves the newest revision before any traffic (config_revision is the
    # lowest revision a live worker serves).
    status, ready = http(f"{node.admin_url}/readyz")
    assert status == 200
    revision = json.loads(ready)["revision"]
    assert revision == 2
    wait_for(
        lambda: scrape(node).get("llmgate_config_revision") == revision, "every worker to load"
    )

    url = f"{node.proxy_url}/v1/chat/completions"
    jack = {"apikey": "jk", "Content-Type": "application/json"}
    prompt = completion = 0
    streamed_prompt = 0
    for i in range(NON_STREAM + STREAM):
        stream = i >= NON_STREAM
        body = {"model": "gpt-4o", "messages": [{"role": "user", "content": f"question {i}"}]}
        if stream:  # its usage chunk comes only when asked for, as from OpenAI
            body["stream_options"] = {"include_usage": True}
        status, answer = http(url, {**body, "stream": stream}, "POST", jack)
        assert status == 200, answer
        usage = stream_usage(answer) if stream else json.loads(answer)["usage"]
        prompt += usage["prompt_tokens"]
        completion += usage["completion_tokens"]
        streamed_prompt += usage["prompt_tokens"] if stream else 0
    assert http(url, {}, "POST")[0] == 401  # no key: refused by key-auth, before the LLM
    assert http(f"{node.proxy_url}/nowhere")[0] == 404  # no route: counted in requests only
    sent = NON_STREAM + STREAM + 2

    metrics = wait_for(
        lambda: (
            (m := scrape(node)).get("llmgate_http_requests_total") == sent
            and m.get('llmgate_nginx_http_current_connections{state="active"}') == 0
            and m
        ),
        "the sampled gauges",
    )
    route = {"route": "1", "matched_uri": "/v1/chat/completions", "service": ""}
    ok = total(
        metrics,
        "llmgate_http_status",
        code="200",
        consumer="jack",
        node="ai-proxy-openai-compatible",
        **route,
    )
    assert ok == NON_STREAM + STREAM
    assert total(metrics, "llmgate_http_status", code="401", consumer="", node="", **route) == 1
    assert total(metrics, "llmgate_http_status") == NON_STREAM + STREAM + 1
    assert total(metrics, "llmgate_http_latency_count", type="request") == NON_STREAM + STREAM + 1
    llm = {
        "route_id": "1",
        "consumer": "jack",
        "llm_model": "gpt-4o",
        "node": "ai-proxy-openai-compatible",
    }
    assert total(metrics, "llmgate_llm_prompt_tokens", **llm) == prompt
    assert total(metrics, "llmgate_llm_completion_tokens", **llm) == completion
    assert total(metrics, "llmgate_llm_prompt_tokens", request_type="ai_stream") == streamed_prompt
    assert total(metrics, "llmgate_llm_latency_count", type="ttft") == STREAM
    assert total(metrics, "llmgate_llm_active_connections") == 0

    # Each worker wrote its own share, and the scrape is their sum.
    per_worker = worker_counts(node)
    assert len(per_worker) == 2 and all(count > 0 for count in per_worker), per_worker
    assert sum(per_worker) == NON_STREAM + STREAM + 1

    def usage() -> dict[str, Any] | None:
        status, body = http(
            f"{node.admin_url}/apisix/admin/usage?consumer=jack&route=1",
            headers={"X-API-KEY": ADMIN_KEY},
        )
        assert status == 200, body
        summary = json.loads(body)
        return summary if summary["total"]["requests"] == NON_STREAM + STREAM else None

    summary = wait_for(usage, "the usage flush")
    assert summary["total"] == {
        "requests": NON_STREAM + STREAM,
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "cached_tokens": 0,
        "cost": 0.0,  # no price table
    }
    assert [(e["consumer"], e["route"], e["model"]) for e in summary["list"]] == [
        ("jack", "1", "gpt-4o")
    ]


def metrics_dir(node: Running) -> Path:
    """The node's metrics directory, named in the environment its workers were started with."""
    environ = Path(f"/proc/{worker_pids(node.proc.pid)[0]}/environ").read_bytes().split(b"\0")
    name = b"PROMETHEUS_MULTIPROC_DIR="
    return Path(next(e[len(name) :].decode() for e in environ if e.startswith(name)))


def worker_counts(node: Running) -> list[float]:
    """``http_status`` as each worker recorded it, from its own file in the metrics directory."""
    from prometheus_client.multiprocess import MultiProcessCollector

    directory = metrics_dir(node)
    counts = []
    for pid in worker_pids(node.proc.pid):
        families = MultiProcessCollector.merge([f"{directory}/counter_{pid}.db"])
        status = [f for f in families if f.name == "llmgate_http_status"]
        counts.append(sum(sample.value for family in status for sample in family.samples))
    return counts


@pytest.mark.parametrize("listener", ["admin", "metrics"])
def test_health_on_both_listeners(node: Running, listener: str) -> None:
    port = node.admin_port if listener == "admin" else node.metrics_port
    status, body = http(f"http://127.0.0.1:{port}/healthz")
    assert (status, json.loads(body)) == (200, {"status": "ok"})
    status, body = http(f"http://127.0.0.1:{port}/readyz")
    ready = json.loads(body)
    assert (status, ready["status"], ready["revision"]) == (200, "ready", 2)
    assert ready["store"]["state"] == "ok"


def test_a_dead_workers_counts_stay_and_its_live_gauges_go(node: Running) -> None:
    before = scrape(node)
    directory = metrics_dir(node)
    victim = worker_pids(node.proc.pid)[0]
    assert (directory / f"gauge_livesum_{victim}.db").exists()
    os.kill(victim, signal.SIGKILL)
    wait_for(
        lambda: len(pids := worker_pids(node.proc.pid)) == 2 and victim not in pids,
        "the worker to be started again",
    )
    wait_for(lambda: http(f"http://127.0.0.1:{node.metrics_port}/readyz")[0] == 200, "ready")
    assert not (directory / f"gauge_livesum_{victim}.db").exists()
    after = scrape(node)
    for name in ("llmgate_http_status", "llmgate_llm_prompt_tokens", "llmgate_http_latency_count"):
        assert total(after, name) == total(before, name) > 0
    assert after["llmgate_http_requests_total"] == before["llmgate_http_requests_total"]


def test_one_process_uses_the_same_exporter(tmp_path: Path, fake_port: int) -> None:
    """``--workers 1``: the data plane in the serve process, scraped the same way."""
    with llmgate_serve(tmp_path, env={"LLMGATE_METRICS_PREFIX": "apisix_"}) as single:
        upstream = {"type": "roundrobin", "nodes": {f"127.0.0.1:{fake_port}": 1}}
        put(
            single,
            "routes/7",
            {"uri": "/echo", "plugins": {"prometheus": {}}, "upstream": upstream},
        )
        for _ in range(3):
            assert http(f"{single.proxy_url}/echo")[0] == 200
        metrics = wait_for(
            lambda: (m := scrape(single)).get("apisix_http_requests_total") == 3 and m,
            "the sampled gauges",
        )
        assert total(metrics, "apisix_http_status", code="200", route="7") == 3
        assert metrics["apisix_config_revision"] == 1
        status, body = http(f"http://127.0.0.1:{single.metrics_port}/readyz")
        ready = json.loads(body)
        assert (status, ready["status"], ready["revision"]) == (200, "ready", 1)
