"""What is measured: the plugin sets, one ``llmgate serve`` configured through the admin API, the
pre-flight check of a target, and the shared processes of a run (upstreams, nginx reference).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import string
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchkit.constants import (
    ADMIN_KEY,
    API_KEY,
    BASIC_HEADER,
    BASIC_PASSWORD,
    BASIC_USER,
    BENCH,
    CHAT_PATH,
    CHAT_RESPONSE,
    REQUEST_BODY,
    SOAK_SET,
)
from benchkit.logs import BenchError
from benchkit.options import Options
from benchkit.procs import Proc, free_port, port_open, request, wait_for


@dataclass(frozen=True)
class PluginSet:
    label: str
    plugins: Callable[[str], dict[str, Any]]  # endpoint URL (for ai-proxy) -> route plugins
    consumer: dict[str, Any] | None
    headers: dict[str, str]
    cache: bool = False  # expect Apisix-Cache-Status: HIT after the first request
    sse: bool = True


LIMIT_COUNT = {"count": 100_000_000, "time_window": 60, "key_type": "constant", "key": "bench"}

PLUGIN_SETS = (
    PluginSet("none", lambda _: {}, None, {}),
    PluginSet(
        SOAK_SET,
        lambda _: {"basic-auth": {}, "limit-count": dict(LIMIT_COUNT), "prometheus": {}},
        {
            "username": BASIC_USER,
            "plugins": {"basic-auth": {"username": BASIC_USER, "password": BASIC_PASSWORD}},
        },
        {"Authorization": BASIC_HEADER},
    ),
    PluginSet(
        "key-auth + ai-proxy + ai-rate-limiting",
        lambda endpoint: {
            "key-auth": {},
            "ai-proxy": {
                "provider": "openai-compatible",
                "auth": {"header": {"Authorization": "Bearer bench-provider-key"}},
                "override": {"endpoint": endpoint},
            },
            "ai-rate-limiting": {"limit": 1_000_000_000, "time_window": 60},
        },
        {"username": "benchkey", "plugins": {"key-auth": {"key": API_KEY}}},
        {"apikey": API_KEY},
    ),
    PluginSet(
        "proxy-cache (memory, hit)",
        lambda _: {
            "proxy-cache": {
                "cache_strategy": "memory",
                "cache_method": ["POST"],
                "cache_http_status": [200],
            }
        },
        None,
        {},
        cache=True,
        sse=False,
    ),
)


class Llmgate:
    """One ``llmgate serve`` (admin API + data plane) with its own SQLite store."""

    def __init__(
        self,
        options: Options,
        run_dir: Path,
        name: str,
        workers: int = 1,
        cpus=None,
        wrap: list[str] | None = None,  # a command the server runs under (valgrind ...)
        env_extra: dict[str, str] | None = None,
    ):
        self.admin_port, self.proxy_port, self.metrics_port = free_port(), free_port(), free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("LLMGATE_")}
        db = run_dir / f"{name}.db"
        env.update(
            LLMGATE_ADMIN_KEY=ADMIN_KEY,
            LLMGATE_DATABASE_URL=f"sqlite+aiosqlite:///{db}",
            LLMGATE_ADMIN_LISTEN=f"127.0.0.1:{self.admin_port}",
            LLMGATE_PROXY_LISTEN=f"127.0.0.1:{self.proxy_port}",
            LLMGATE_METRICS_LISTEN=f"127.0.0.1:{self.metrics_port}",
            LLMGATE_ACCESS_LOG="off",  # as the nginx baselines (access_log off)
            LLMGATE_PROXY_LISTEN_TLS="off",  # no fixed port: never collides with a running one
        )
        env.update(env_extra or {})
        argv = [sys.executable, "-m", "llmgate.cli", "serve", "--workers", str(workers)]
        self.proc = Proc(name, [*(wrap or []), *argv], cpus or options.sut_cpu, run_dir, env)
        try:
            wait_for(self._admin_ready, "llmgate admin API", 90, self.proc)
        except BaseException:
            self.proc.stop()
            raise

    def _admin_ready(self) -> bool:
        status, _, _ = self.admin("GET", "/apisix/admin/routes")
        return status == 200

    def admin(self, method: str, path: str, payload: Any = None) -> tuple[int, dict, bytes]:
        body = None if payload is None else json.dumps(payload)
        return request(self.admin_port, method, path, body, {"X-API-KEY": ADMIN_KEY})

    def put(self, path: str, payload: Any) -> None:
        status, _, data = self.admin("PUT", path, payload)
        if status not in (200, 201):
            text = data.decode(errors="replace")[:300]
            raise BenchError(f"admin API rejected PUT {path}: {status} {text}")

    def configure(self, plugin_set: PluginSet, upstream_port: int, fake_port: int) -> None:
        """Route /v1/* to the load upstream, /sse/* and /fake/* to the fake upstream."""
        self.put("/apisix/admin/upstreams/1", {"nodes": {f"127.0.0.1:{upstream_port}": 1}})
        self.put("/apisix/admin/upstreams/2", {"nodes": {f"127.0.0.1:{fake_port}": 1}})
        if plugin_set.consumer:
            self.put("/apisix/admin/consumers", plugin_set.consumer)
        routes = [("1", "/v1/*", "1", upstream_port)]
        if plugin_set.sse:
            routes.append(("2", "/sse/*", "2", fake_port))
        if plugin_set.label == "none":
            routes.append(("3", "/fake/*", "2", fake_port))
        for route_id, uri, upstream_id, port in routes:
            route: dict[str, Any] = {"uri": uri, "upstream_id": upstream_id}
            plugins = plugin_set.plugins(f"http://127.0.0.1:{port}{CHAT_PATH}")
            if plugins:
                route["plugins"] = plugins
            self.put(f"/apisix/admin/routes/{route_id}", route)

    def stop(self) -> None:
        self.proc.stop()


def preflight(port: int, path: str, headers: dict[str, str], cache: bool, proc: Proc | None):
    """Wait for the route to answer, then check a few requests: 200 and a chat completion."""
    last: tuple[int, bytes] = (0, b"")

    def answered() -> bool:
        # Ten requests, each on its own connection: with several workers (SO_REUSEPORT) they
        # reach every worker, and each loads the new configuration on its own.
        nonlocal last
        for _ in range(10):
            status, _, data = request(port, "POST", path, REQUEST_BODY, headers)
            last = (status, data)
            if status == 404:
                return False
        return True

    try:
        wait_for(answered, "route", 15, proc)
    except BenchError:
        if last[0] == 0 or (proc is not None and not proc.alive()):
            raise
    for attempt in range(8):
        status, got, data = request(port, "POST", path, REQUEST_BODY, headers)
        if not 200 <= status < 300 or b"chat.completion" not in data:
            text = data.decode(errors="replace")[:200]
            raise BenchError(f"pre-flight {path}: {status} {text}")
        if cache and attempt > 0 and got.get("apisix-cache-status") != "HIT":
            cache_status = got.get("apisix-cache-status")
            raise BenchError(
                f"pre-flight: expected a cache HIT, got Apisix-Cache-Status {cache_status}"
            )


class Stack:
    """The shared processes of a run: upstreams and (optionally) the nginx reference."""

    def __init__(self, options: Options, run_dir: Path) -> None:
        self.options = options
        self.run_dir = run_dir
        self.procs: list[Proc] = []
        self.nginx = shutil.which("nginx") or "/usr/sbin/nginx"

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in reversed(self.procs):
            proc.stop()
        self.procs.clear()

    def _nginx(
        self, name: str, template: str, cpus: str, fields: dict[str, Any]
    ) -> tuple[Proc, int]:
        port = free_port()
        text = string.Template((BENCH / "nginx" / template).read_text())
        conf = self.run_dir / f"{name}.conf"
        conf.write_text(text.substitute(RUN=self.run_dir, PORT=port, **fields))
        argv = [self.nginx, "-p", str(self.run_dir), "-e", "stderr", "-c", str(conf)]
        proc = Proc(name, argv, cpus, self.run_dir)
        self.procs.append(proc)
        wait_for(port_open(port), name, 15, proc)
        return proc, port

    def start_fake(self) -> tuple[Proc, int]:
        port = free_port()
        argv = [sys.executable, "-m", "llmgate.cli", "fake-upstream", "--port", str(port)]
        argv += ["--stream-delay-ms", str(self.options.sse_delay_ms)]
        proc = Proc("fake-upstream", argv, self.options.load_cpu, self.run_dir)
        self.procs.append(proc)
        wait_for(lambda: request(port, "GET", "/__fake/health")[0] == 200, "fake", 30, proc)
        return proc, port

    def start_upstream(self) -> tuple[Proc, int]:
        fields = {"CHAT_BODY": CHAT_RESPONSE}
        return self._nginx("upstream", "upstream.conf", self.options.load_cpu, fields)

    def start_reference(self, upstream_port: int, fake_port: int) -> tuple[Proc, int]:
        (self.run_dir / "htpasswd").write_text(f"{BASIC_USER}:{{PLAIN}}{BASIC_PASSWORD}\n")
        fields = {"UPSTREAM_PORT": upstream_port, "FAKE_PORT": fake_port}
        return self._nginx("proxy", "proxy.conf", self.options.sut_cpu, fields)

    def stop(self, proc: Proc) -> None:
        proc.stop()
        with contextlib.suppress(ValueError):
            self.procs.remove(proc)
