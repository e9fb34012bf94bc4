"""A real llmgate and its fake upstream as processes, for your own tests (no pytest needed).

    with start_gateway({"routes": [...], "upstreams": [...]}, workdir=tmp) as gw:
        reply = gw.request("POST", "/v1/chat/completions", json={...})
        assert reply.status == 200
        status, body = gw.admin.get("routes")

The configuration is a dict in APISIX's standalone format, or the path of an ``apisix.yaml``
or ``apisix.json``.  ``${{LLMGATE_FAKE_UPSTREAM}}`` in it stands for the fake upstream's
``host:port``.  It is applied to a fresh SQLite store with ``llmgate config apply`` (so the
admin client can change it), or served with ``--standalone`` when asked.  Every process is
stopped on exit, whatever happened, and also dies if the test process itself is killed.

Only the standard library is imported here: pytest loads this module in every session of an
environment where llmgate is installed.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Config = Mapping[str, Any] | str | os.PathLike[str] | None

FAKE_UPSTREAM_VARIABLE = "LLMGATE_FAKE_UPSTREAM"
_LLMGATE = [sys.executable, "-m", "llmgate.cli"]
_START_TIMEOUT = 30.0


class GatewayError(RuntimeError):
    """The gateway could not be started; the message holds what it printed."""


@dataclass(frozen=True)
class Reply:
    """One HTTP answer."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode(errors="replace")

    def json(self) -> Any:
        return json.loads(self.body)


def http(
    method: str,
    url: str,
    *,
    json_body: Any = None,
    data: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 30.0,
) -> Reply:
    """One request with the standard library; any status is a Reply, never an exception."""
    all_headers = dict(headers or {})
    if json_body is not None:
        data = json.dumps(json_body).encode()
        all_headers.setdefault("Content-Type", "application/json")
    request = urllib.request.Request(url, data=data, method=method, headers=all_headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return Reply(response.status, dict(response.headers), response.read())
    except urllib.error.HTTPError as error:
        return Reply(error.code, dict(error.headers), error.read())


@dataclass(frozen=True)
class AdminClient:
    """The admin API (``/apisix/admin/...``) with the gateway's admin key.  Each call returns
    ``(status, decoded JSON body)``."""

    url: str
    key: str

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        reply = http(
            method,
            f"{self.url}/apisix/admin/{path.lstrip('/')}",
            json_body=body,
            headers={"X-API-KEY": self.key},
        )
        return reply.status, reply.json() if reply.body else None

    def get(self, path: str) -> tuple[int, Any]:
        return self.call("GET", path)

    def put(self, path: str, body: Any) -> tuple[int, Any]:
        return self.call("PUT", path, body)

    def post(self, path: str, body: Any) -> tuple[int, Any]:
        return self.call("POST", path, body)

    def patch(self, path: str, body: Any) -> tuple[int, Any]:
        return self.call("PATCH", path, body)

    def delete(self, path: str) -> tuple[int, Any]:
        return self.call("DELETE", path)


@dataclass
class Gateway:
    """A running gateway: its URLs, an admin client, and the fake upstream it may call."""

    proxy_url: str
    admin_url: str
    metrics_url: str
    upstream_address: str  # the fake upstream's host:port
    admin: AdminClient
    workdir: Path
    pids: list[int] = field(default_factory=list)

    @property
    def upstream_url(self) -> str:
        return f"http://{self.upstream_address}"

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        data: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Reply:
        """A request to the data plane."""
        return http(method, self.proxy_url + path, json_body=json, data=data, headers=headers)

    def upstream_requests(self) -> list[dict[str, Any]]:
        """What the fake upstream received, oldest first (method, path, headers, body...)."""
        return list(http("GET", f"{self.upstream_url}/__fake/requests").json()["requests"])

    def clear_upstream_requests(self) -> None:
        http("DELETE", f"{self.upstream_url}/__fake/requests")

    def log(self) -> str:
        """What the gateway printed so far (standard output and error)."""
        return (self.workdir / "llmgate.log").read_text(errors="replace")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> Callable[[], None] | None:
    """For the child, before exec: be killed when the test process dies (Linux's
    PR_SET_PDEATHSIG), so a killed test run leaves no gateway behind."""
    if sys.platform != "linux":
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return lambda: prctl(1, signal.SIGKILL)


@contextlib.contextmanager
def _process(
    args: Sequence[str], env: Mapping[str, str], log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("ab") as out:
        proc = subprocess.Popen(
            list(args),
            env=dict(env),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent(),
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _wait_until_up(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + _START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise GatewayError(f"exited with {proc.returncode}:\n{log.read_text(errors='replace')}")
        try:
            if http("GET", url, timeout=1).status == 200:
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise GatewayError(f"{url} did not answer within {_START_TIMEOUT} s")


def _config_file(config: Config, workdir: Path) -> Path | None:
    if config is None:
        return None
    if isinstance(config, Mapping):
        path = workdir / "apisix.json"
        path.write_text(json.dumps(config))
        return path
    return Path(config)


@contextlib.contextmanager
def start_gateway(
    config: Config = None,
    *,
    workdir: str | os.PathLike[str],
    standalone: bool = False,
    env: Mapping[str, str] | None = None,
    serve_args: Sequence[str] = (),
    fake_args: Sequence[str] = (),
) -> Iterator[Gateway]:
    """Start the fake upstream and ``llmgate serve`` on free loopback ports with ``config``;
    stop both on exit.  ``env`` and ``serve_args`` go to the gateway (``LLMGATE_*`` settings,
    ``--log-level``...), ``fake_args`` to ``llmgate fake-upstream`` (``--latency-ms``...).
    Raises GatewayError, with the gateway's own message, when the configuration is refused."""
    directory = Path(workdir)
    directory.mkdir(parents=True, exist_ok=True)
    log = directory / "llmgate.log"
    fake_port, admin_port, proxy_port, metrics_port = (_free_port() for _ in range(4))
    upstream = f"127.0.0.1:{fake_port}"
    key = secrets.token_hex(16)
    base = {k: v for k, v in os.environ.items() if not k.startswith("LLMGATE_")}
    gateway_env = {
        **base,
        "LLMGATE_DATABASE_URL": f"sqlite+aiosqlite:///{directory / 'llmgate.db'}",
        "LLMGATE_ADMIN_LISTEN": f"127.0.0.1:{admin_port}",
        "LLMGATE_PROXY_LISTEN": f"127.0.0.1:{proxy_port}",
        "LLMGATE_METRICS_LISTEN": f"127.0.0.1:{metrics_port}",
        "LLMGATE_PROXY_LISTEN_TLS": "off",  # no ssls in a test gateway unless env says so
        "LLMGATE_ADMIN_KEY": key,
        # The store is thrown away with the workdir: ssls in the configuration are sealed
        # under a passphrase of its own, so a test needs none.
        "LLMGATE_SSL_KEY": secrets.token_urlsafe(32),
        FAKE_UPSTREAM_VARIABLE: upstream,
        "PYTHONUNBUFFERED": "1",
        **(env or {}),
    }
    path = _config_file(config, directory)
    with contextlib.ExitStack() as stack:
        fake = stack.enter_context(
            _process([*_LLMGATE, "fake-upstream", "--port", str(fake_port), *fake_args], base, log)
        )
        _wait_until_up(f"http://{upstream}/__fake/health", fake, log)
        args = [*_LLMGATE, "serve", *serve_args]
        if path is not None and standalone:
            args += ["--standalone", str(path)]
        elif path is not None:
            applied = subprocess.run(
                [*_LLMGATE, "config", "apply", "-f", str(path)],
                env=gateway_env,
                capture_output=True,
                text=True,
                timeout=120,
            )
            if applied.returncode != 0:
                raise GatewayError(f"llmgate config apply failed: {applied.stderr.strip()}")
        gateway = stack.enter_context(_process(args, gateway_env, log))
        admin_url = f"http://127.0.0.1:{admin_port}"
        _wait_until_up(f"{admin_url}/readyz", gateway, log)
        yield Gateway(
            proxy_url=f"http://127.0.0.1:{proxy_port}",
            admin_url=admin_url,
            metrics_url=f"http://127.0.0.1:{metrics_port}",
            upstream_address=upstream,
            admin=AdminClient(admin_url, key),
            workdir=directory,
            pids=[fake.pid, gateway.pid],
        )
