"""Starting llmgate (and the fake upstream) as real processes for end-to-end tests."""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

LLMGATE = [sys.executable, "-m", "llmgate.cli"]


# Ports handed out recently by any test process on this machine (test runs may overlap): a port
# is free when the kernel says so, but a process started with it binds it only later, so another
# run could be handed the same one meanwhile.  A shared ledger keeps them apart.
_LEDGER = Path(tempfile.gettempdir()) / "llmgate-test-ports"
_LEDGER_TTL = 120.0


def free_port() -> int:
    """A loopback port that is free now and not handed to any other test in the last minutes."""
    with open(_LEDGER, "a+") as ledger:
        fcntl.flock(ledger, fcntl.LOCK_EX)
        ledger.seek(0)
        now = time.time()
        recent = {}
        for line in ledger.read().split():
            port, _, when = line.partition("@")
            with contextlib.suppress(ValueError):
                if now - float(when) < _LEDGER_TTL:
                    recent[int(port)] = float(when)
        for _ in range(100):
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                port = int(sock.getsockname()[1])
            if port not in recent:
                break
        recent[port] = now
        ledger.seek(0)
        ledger.truncate()
        ledger.write(" ".join(f"{p}@{w}" for p, w in recent.items()))
        return port


def wait_for_http(url: str, timeout: float = 20.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered")
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return
        except urllib.error.HTTPError:
            return  # it answered
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"{url} did not answer within {timeout} s")


@dataclass
class Running:
    proc: subprocess.Popen
    log: Path
    admin_port: int
    proxy_port: int
    metrics_port: int
    tls_port: int = 0  # the data plane's HTTPS listener

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    @property
    def proxy_url(self) -> str:
        return f"http://127.0.0.1:{self.proxy_port}"

    def output(self) -> str:
        return self.log.read_text()


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 10) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def llmgate_serve(
    workdir: Path,
    *args: str,
    env: dict[str, str] | None = None,
    database_url: str | None = None,
    admin_key: str | None = "edd1c9f034335f136f87ad84b625c8f1",
    wait: bool = True,
) -> Iterator[Running]:
    """``llmgate serve`` on free ports with its own SQLite file in ``workdir``."""
    admin_port, proxy_port, metrics_port = free_port(), free_port(), free_port()
    tls_port = free_port()
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("LLMGATE_")}
    full_env.update(
        LLMGATE_DATABASE_URL=database_url or f"sqlite+aiosqlite:///{workdir / 'llmgate.db'}",
        LLMGATE_ADMIN_LISTEN=f"127.0.0.1:{admin_port}",
        LLMGATE_PROXY_LISTEN=f"127.0.0.1:{proxy_port}",
        LLMGATE_METRICS_LISTEN=f"127.0.0.1:{metrics_port}",
        LLMGATE_PROXY_LISTEN_TLS=f"127.0.0.1:{tls_port}",
        # A PostgreSQL store's last-good snapshot stays in the test's directory.
        LLMGATE_SNAPSHOT_DIR=str(workdir / "snapshots"),
        PYTHONUNBUFFERED="1",
    )
    if admin_key:
        full_env["LLMGATE_ADMIN_KEY"] = admin_key
    full_env.update(env or {})
    log = workdir / f"llmgate-{admin_port}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*LLMGATE, "serve", *args], env=full_env, stdout=out, stderr=subprocess.STDOUT
        )
    running = Running(proc, log, admin_port, proxy_port, metrics_port, tls_port)
    try:
        if wait:
            url = running.admin_url if "--role=proxy" not in args else running.proxy_url
            try:
                wait_for_http(url + "/healthz" if "--role=proxy" not in args else url, proc=proc)
            except (RuntimeError, TimeoutError) as exc:
                tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
                raise RuntimeError(f"{exc}; the last lines of its log:\n{tail}") from None
        yield running
    finally:
        stop(proc)


@contextmanager
def fake_upstream_process(port: int | None = None, *args: str) -> Iterator[int]:
    """``llmgate fake-upstream`` as a process; yields its port."""
    port = port or free_port()
    proc = subprocess.Popen([*LLMGATE, "fake-upstream", "--port", str(port), *args])
    try:
        wait_for_http(f"http://127.0.0.1:{port}/__fake/health", proc=proc)
        yield port
    finally:
        stop(proc)


def worker_pids(parent: int) -> list[int]:
    """The data-plane worker processes of ``llmgate serve --workers N`` running as ``parent``
    (its spawned children, not multiprocessing's resource tracker)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue  # exited meanwhile
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == parent and b"spawn_main" in cmdline:
            found.append(int(entry.name))
    return sorted(found)


def connections_held(pid: int, port: int, *, remote: bool = False) -> int:
    """How many established TCP connections to local ``port`` process ``pid`` holds (with
    ``remote``: its connections to ``port`` elsewhere, e.g. to an upstream)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    held = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            address = fields[2] if remote else fields[1]
            if (
                int(address.rsplit(":", 1)[1], 16) == port
                and fields[3] == "01"
                and fields[9] in inodes
            ):
                held += 1
    return held


@contextmanager
def redis_sentinel(workdir: Path, master: str, master_port: int = 6379) -> Iterator[int]:
    """A real Redis sentinel (``redis-server --sentinel``) that knows the Redis on
    ``master_port`` as the master named ``master``; yields its port."""
    port = free_port()
    conf = workdir / f"sentinel-{port}.conf"
    conf.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {workdir}\n"
        f"sentinel monitor {master} 127.0.0.1 {master_port} 1\n"
    )
    proc = subprocess.Popen(
        ["redis-server", str(conf), "--sentinel"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis sentinel did not start on {port}")
            time.sleep(0.02)
        yield port
    finally:
        stop(proc)
