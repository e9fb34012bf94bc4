"""``llmgate serve --workers N``: N data-plane processes sharing the proxy port.

    parent: llmgate serve                         worker 1..N (spawned processes)
      admin API (role all/admin)                    data plane on proxy_listen, SO_REUSEPORT
      CounterServer on a Unix socket  <----------   SharedCounters: one pipelined connection
      Supervisor: starts, watches, restarts,        SnapshotLoader polling the store revision
                  terminates the workers            exits when the parent is gone

The kernel spreads incoming connections over the workers' sockets.  Every ``policy: local``
limit is counted in the parent, so it is exact for the whole node; the socket lives in a
private (0700) temporary directory.  A worker that dies is started again; SIGTERM/SIGINT of
the parent terminates every worker, and a worker whose parent is gone stops by itself.
Workers poll the store revision (``reload_interval``), so a write is live on every worker
within that interval.  Each worker writes its metrics into the node's metrics directory (named
by ``PROMETHEUS_MULTIPROC_DIR``, inherited); ``on_worker_exit(pid)`` tells the exporter when one
is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess

from llmgate.runtime.counter_server import CounterServer
from llmgate.settings import Settings
from llmgate.tasks import cancel_and_wait

READY_TIMEOUT = 60.0  # seconds a worker may take to import, load the config and listen
PARENT_CHECK = 0.5  # seconds between a worker's checks that its parent is alive
STOP_TIMEOUT = 10.0  # seconds a worker gets to finish its requests before it is killed
RESTART_PAUSE = 1.0  # seconds at least between two starts of the same worker


class WorkerFailed(Exception):
    """A worker could not start (its message says why, e.g. the port is taken)."""


class Supervisor:
    """The parent's side: the counter service and the worker processes."""

    def __init__(
        self, settings: Settings, on_worker_exit: Callable[[int], None] | None = None
    ) -> None:
        self.settings = settings
        self._on_worker_exit = on_worker_exit
        self._dir = tempfile.mkdtemp(prefix="llmgate-")
        self.counters = CounterServer(os.path.join(self._dir, "counters.sock"))
        self._context = multiprocessing.get_context("spawn")
        self.processes: list[BaseProcess] = []
        self._started: list[float] = []
        self._watching: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start the counter service and every worker; ``WorkerFailed`` if one cannot start."""
        await self.counters.start()
        spawned = [self._spawn(index) for index in range(self.settings.workers)]
        self.processes = [process for process, _ in spawned]
        self._started = [time.monotonic()] * len(spawned)
        results = await asyncio.gather(
            *(self._wait_ready(process, pipe) for process, pipe in spawned),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result
        self._watching = asyncio.create_task(self._watch(), name="llmgate-workers-watch")

    def _spawn(self, index: int) -> tuple[BaseProcess, Connection]:
        receive, send = self._context.Pipe(duplex=False)
        process = self._context.Process(
            target=run_worker,
            args=(self.settings, self.counters.path, os.getpid(), send),
            name=f"llmgate-worker-{index}",
            daemon=True,
        )
        process.start()
        send.close()  # the worker holds the only writer: EOF means it died
        return process, receive

    async def _wait_ready(self, process: BaseProcess, pipe: Connection) -> None:
        def wait() -> str:
            try:
                if pipe.poll(READY_TIMEOUT):
                    return str(pipe.recv())
                return f"not ready after {READY_TIMEOUT:.0f} s"
            except EOFError:
                process.join(1)
                return f"exited with code {process.exitcode} while starting"
            finally:
                pipe.close()

        message = await asyncio.get_running_loop().run_in_executor(None, wait)
        if message != "ready":
            raise WorkerFailed(f"{process.name}: {message}")

    async def _watch(self) -> None:
        """Start again any worker that died (at most once a ``RESTART_PAUSE``)."""
        from llmgate.observability.logs import say

        while True:
            await asyncio.sleep(PARENT_CHECK)
            for index, process in enumerate(self.processes):
                if process.is_alive() or time.monotonic() - self._started[index] < RESTART_PAUSE:
                    continue
                say(f"{process.name} exited with code {process.exitcode}; starting it again")
                self._exited(process)
                replacement, pipe = self._spawn(index)
                self.processes[index] = replacement
                self._started[index] = time.monotonic()
                try:
                    await self._wait_ready(replacement, pipe)
                except WorkerFailed as exc:
                    say(f"error: {exc}")

    def stopped(self) -> list[str]:
        """The names of the workers not running now (for ``/readyz``)."""
        return [process.name for process in self.processes if not process.is_alive()]

    def _exited(self, process: BaseProcess) -> None:
        if self._on_worker_exit is not None and process.pid is not None:
            self._on_worker_exit(process.pid)

    async def stop(self) -> None:
        """Terminate every worker (SIGTERM, then SIGKILL after ``STOP_TIMEOUT``)."""
        if self._watching is not None:
            await cancel_and_wait(self._watching)
        for process in self.processes:
            if process.is_alive():
                process.terminate()

        def reap() -> None:
            deadline = time.monotonic() + STOP_TIMEOUT
            for process in self.processes:
                process.join(max(0.0, deadline - time.monotonic()))
                if process.is_alive():
                    process.kill()
                    process.join()

        await asyncio.get_running_loop().run_in_executor(None, reap)
        for process in self.processes:
            self._exited(process)
        await self.counters.close()
        shutil.rmtree(self._dir, ignore_errors=True)


def run_worker(settings: Settings, socket_path: str, parent_pid: int, ready: Connection) -> None:
    """A worker process's entry point: serve the data plane until told to stop."""
    from llmgate.dataplane import use_uvloop
    from llmgate.observability import logs

    logs.configure(settings.log_level, settings.log_format)  # a spawned process starts bare
    # Ctrl-C reaches the whole process group: the parent alone decides, and sends SIGTERM.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    use_uvloop()
    try:
        asyncio.run(_worker(settings, socket_path, parent_pid, ready))
    except OSError as exc:
        with contextlib.suppress(OSError, ValueError):  # ValueError: the pipe is closed
            ready.send(str(exc.strerror or exc))
        raise SystemExit(1) from None


async def _worker(settings: Settings, socket_path: str, parent_pid: int, ready: Connection) -> None:
    from llmgate.dataplane import open_data_plane
    from llmgate.runtime.counter_server import SharedCounters
    from llmgate.store import Store, open_engine

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    store = Store(open_engine(settings.database_url))
    try:
        async with open_data_plane(settings, store, SharedCounters(socket_path)):
            ready.send("ready")
            ready.close()
            while not stop.is_set() and os.getppid() == parent_pid:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), PARENT_CHECK)
    finally:
        await store.close()
