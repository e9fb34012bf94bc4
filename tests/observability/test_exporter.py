"""The exporter: APISIX-style text, and one scrape adding up every data-plane process.

Values written in multiprocess mode come from subprocesses given ``PROMETHEUS_MULTIPROC_DIR``
in their own environment; this process only reads the directory, so the variable never leaks
into other tests.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

from prometheus_client import CollectorRegistry

from llmgate import __version__
from llmgate.observability.exporter import (
    CONTENT_TYPE,
    METRICS_PATH,
    build_metrics_app,
    collect,
    mark_dead,
    remove_orphaned_dirs,
    render,
)
from llmgate.observability.health import Readiness
from llmgate.observability.metrics import Metrics

WRITER = textwrap.dedent(
    """
    import os, sys
    from llmgate.observability.metrics import Metrics

    requests, revision, active = (int(a) for a in sys.argv[1:4])
    metrics = Metrics("llmgate_")
    llm = ("ai_chat", "gpt-4o", "gpt-4o")
    metrics.http_status.labels("200", "1", "/a", "", "", "jack", "10.0.0.1", *llm).inc(requests)
    metrics.http_latency.labels("request", "1", "", "jack", "10.0.0.1", *llm).observe(3.0)
    metrics.sample(requests, active, revision)
    print(os.getpid())
    """
)


def write_metrics(directory: Path, requests: int, revision: int, active: int) -> int:
    """Record some metrics in a separate process writing into ``directory``; its pid."""
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)}
    done = subprocess.run(
        [sys.executable, "-c", WRITER, str(requests), str(revision), str(active)],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return int(done.stdout)


def samples(text: str) -> dict[str, float]:
    """``{'name{labels}': value}`` of an exposition."""
    found = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, number = line.rpartition(" ")
            found[key] = float(number)
    return found


def test_render_uses_apisix_names_for_counters() -> None:
    metrics = Metrics("apisix_", CollectorRegistry())
    consumer = 'we"ird\\name\n'
    plain = ("traditional_http", "", "")
    metrics.http_status.labels("200", "1", "/a", "", "", consumer, "n", *plain).inc(2)
    metrics.http_latency.labels("request", "1", "", "", "n", *plain).observe(7)
    metrics.sample(11, 1, 3)

    text = render(metrics.registry.collect()).decode()
    assert "# TYPE apisix_http_status counter" in text
    assert "# HELP apisix_http_status HTTP status codes per route in llmgate" in text
    assert "_total{" not in text and "_created" not in text
    got = samples(text)
    labels = 'code="200",route="1",matched_uri="/a",matched_host="",service=""'
    plain = 'request_type="traditional_http",request_llm_model="",llm_model=""'
    status = f'{labels},consumer="we\\"ird\\\\name\\n",node="n",{plain}'
    assert got[f"apisix_http_status{{{status}}}"] == 2
    latency = f'type="request",route="1",service="",consumer="",node="n",{plain}'
    assert got[f'apisix_http_latency_bucket{{{latency},le="5.0"}}'] == 0
    assert got[f'apisix_http_latency_bucket{{{latency},le="10.0"}}'] == 1
    assert got[f"apisix_http_latency_count{{{latency}}}"] == 1
    assert got["apisix_http_requests_total"] == 11  # a gauge: its name is its own
    assert got['apisix_nginx_http_current_connections{state="active"}'] == 1
    assert got["apisix_config_revision"] == 3
    node = f'apisix_node_info{{hostname="{socket.gethostname()}",version="{__version__}"}}'
    assert got[node] == 1  # APISIX's node_info


def test_one_scrape_adds_up_every_process(tmp_path: Path) -> None:
    first = write_metrics(tmp_path, requests=3, revision=7, active=2)
    second = write_metrics(tmp_path, requests=4, revision=6, active=1)

    got = samples(render(collect(str(tmp_path))).decode())
    status = 'llmgate_http_status{code="200",consumer="jack",llm_model="gpt-4o",matched_host="",'
    status += 'matched_uri="/a",node="10.0.0.1",request_llm_model="gpt-4o",request_type="ai_chat",'
    status += 'route="1",service=""}'
    assert got[status] == 7
    latency = 'consumer="jack",llm_model="gpt-4o",node="10.0.0.1",request_llm_model="gpt-4o",'
    latency += 'request_type="ai_chat",route="1",service="",type="request"'
    assert got[f"llmgate_http_latency_count{{{latency}}}"] == 2
    assert got["llmgate_http_requests_total"] == 7
    assert got['llmgate_nginx_http_current_connections{state="active"}'] == 3
    assert got["llmgate_config_revision"] == 6  # the lowest any live worker serves

    mark_dead(second, str(tmp_path))  # the worker exited: its live gauges go, counts stay
    got = samples(render(collect(str(tmp_path))).decode())
    assert got[status] == 7
    assert got["llmgate_http_requests_total"] == 7
    assert got['llmgate_nginx_http_current_connections{state="active"}'] == 2
    assert got["llmgate_config_revision"] == 7
    assert first != second


def test_prepare_refuses_a_prometheus_client_imported_too_early(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import os, shutil, sys
        if sys.argv[1] == "late":
            import prometheus_client
        from llmgate.observability.exporter import prepare_multiprocess_dir
        try:
            directory = prepare_multiprocess_dir()
        except RuntimeError as exc:
            print("refused:", exc)
        else:
            print(os.path.isdir(directory), os.environ["PROMETHEUS_MULTIPROC_DIR"] == directory)
            shutil.rmtree(directory)
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    for mode, expected in (("early", "True True"), ("late", "refused: prometheus_client was")):
        done = subprocess.run(
            [sys.executable, "-c", script, "late" if mode == "late" else "fresh"],
            env=env, capture_output=True, text=True, check=True,
        )  # fmt: skip
        assert done.stdout.startswith(expected), done.stdout + done.stderr


async def test_metrics_listener_serves_metrics_and_health(
    aiohttp_client, sqlite_store, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    directory = tmp_path / "metrics"  # tmp_path also holds the SQLite store (a .db file)
    directory.mkdir()
    write_metrics(directory, requests=5, revision=1, active=0)
    client = await aiohttp_client(build_metrics_app(str(directory), Readiness(sqlite_store)))

    resp = await client.get(METRICS_PATH)
    assert resp.status == 200
    assert resp.headers["Content-Type"] == CONTENT_TYPE
    assert samples(await resp.text())["llmgate_http_requests_total"] == 5
    resp = await client.get("/healthz")
    assert (resp.status, await resp.json()) == (200, {"status": "ok"})
    resp = await client.get("/readyz")
    ready = await resp.json()
    assert (resp.status, ready["status"], ready["revision"]) == (200, "ready", 0)
    assert (await client.get("/other")).status == 404


def test_directories_of_killed_gateways_are_removed(tmp_path: Path) -> None:
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], check=True,
                          capture_output=True, text=True)  # fmt: skip
    orphan = tmp_path / f"llmgate-metrics-{int(gone.stdout)}-abc"
    live = tmp_path / f"llmgate-metrics-{os.getpid()}-def"
    others = [tmp_path / "llmgate-metrics-x-1", tmp_path / f"{int(gone.stdout)}-other"]
    for directory in (orphan, live, *others):
        directory.mkdir()
        (directory / "counter_1.db").write_bytes(b"")
    remove_orphaned_dirs(str(tmp_path))
    assert not orphan.exists()
    assert live.exists() and all(directory.exists() for directory in others)
