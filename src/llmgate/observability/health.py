"""Liveness and readiness, on the admin and the metrics listeners (no key needed).

    GET /healthz        200 {"status": "ok"}: the process answers
    GET /readyz         200 {"status": "ready", "revision": N, "store": {...}, ...}
                        (+ "snapshot_age": seconds since the store last confirmed that the
                        served snapshot is its newest; "source": "store", or "disk" while it
                        serves the node's last-good snapshot; "last_good": the revision in
                        that file (a parent of workers); "config_errors": ["routes/1", ...]
                        naming the stored resources that do not compile: served at their last
                        good version or as a 503; details in the log; with
                        ``serve --standalone``: "source": "file" and "file": {"path": ...,
                        "state": "ok" | "invalid" | "unreadable" | "failed", "since": unix
                        seconds, "revision": N, "error": "..."}, the file's last version: a
                        file that fails keeps the last good configuration serving, ready)
                        503 {"status": "not ready", "reason": "...", "store": {...}} when
                          - this process runs a data plane that has not loaded a snapshot yet;
                          - a data-plane worker of ``--workers N`` is not running;
                          - an admin-only process cannot reach the store.
    GET /readyz?strict=1
    GET /healthz/store  as /readyz, but also 503 while the store does not answer (asked now,
                        within ``STORE_TIMEOUT``), or while the standalone file fails
                        (``"reason": "configuration file invalid: ..."``, with "file").

A process that serves a loaded snapshot is ready whether or not the store answers: its data
plane goes on serving the last configuration it saw (a load balancer that drained every node
during a database blip would turn the blip into an outage).  ``store`` is this process's view:
``{"state": "ok" | "unavailable" | "unknown", "since": unix seconds, "error": "..."}``, kept
current by the data plane's watcher (or, without one, by a probe every ``reload_interval``), so
``/readyz`` itself never waits for the database.

``revision`` is the one this process's data plane serves, or (an admin-only process, or the
parent of the workers) the store's current one as last seen.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from aiohttp import web

from llmgate.errors import json_response
from llmgate.runtime.last_good import read_header
from llmgate.store.health import StoreState, probe
from llmgate.tasks import cancel_and_wait

if TYPE_CHECKING:
    from llmgate.runtime.loader import SnapshotLoader
    from llmgate.store import Store

log = logging.getLogger("llmgate.health")

STORE_TIMEOUT = 2.0  # seconds
QUICK_TIMEOUT = 0.5  # seconds a plain /readyz waits for the store's revision
PROBE_INTERVAL = 0.1  # seconds between two probes of a process without a data plane


class ConfigFile(Protocol):
    """The file a standalone process serves instead of the store (``config.standalone``)."""

    def report(self) -> dict[str, Any]:
        """Its ``path``, ``state`` ("ok" when its last version is what is served), ``since``,
        ``revision`` and ``error``, for ``/readyz``."""


class Readiness:
    """What ``/readyz`` checks: the ``store``, and the data plane's ``loader`` when this process
    runs one; ``stopped_workers()`` names the data-plane workers not running (``--workers N``).

    ``serving``: whether this process is ready while the store is unreachable (the parent of
    data-plane workers is; an admin-only process is not: it has nothing to serve).
    ``file``: the standalone file the store is kept equal to (``serve --standalone``).
    """

    def __init__(
        self,
        store: Store,
        loader: SnapshotLoader | None = None,
        stopped_workers: Callable[[], list[str]] | None = None,
        serving: bool | None = None,
        interval: float = PROBE_INTERVAL,
        last_good: Path | None = None,
        file: ConfigFile | None = None,
    ) -> None:
        self.store = store
        self.file = file
        self.loader = loader
        self.stopped_workers = stopped_workers
        self.serving = serving if serving is not None else stopped_workers is not None
        self.state = loader.store_state if loader is not None else StoreState()
        self.revision: int | None = None  # the store's, as the probe last saw it
        self._probing: asyncio.Task[None] | None = None
        self.interval = interval
        self.last_good = last_good  # the node's last-good snapshot file (a parent of workers)

    def start(self) -> None:
        """Without a data plane in this process: probe the store in the background."""
        if self.loader is None and self._probing is None:
            self._probing = asyncio.create_task(self._probe_loop(), name="llmgate-store-probe")

    async def stop(self) -> None:
        if self._probing is not None:
            await cancel_and_wait(self._probing)
            self._probing = None

    async def _probe_loop(self) -> None:
        while True:
            try:
                await self.probe()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # not a driver error: say so, count it as one, go on
                if self.state.available:
                    log.exception("probing the store failed")
                self.state.failed(exc)
            await asyncio.sleep(self.interval)

    async def probe(self, within: float = STORE_TIMEOUT) -> bool:
        """Ask the store now (within ``within`` seconds); whether it answered."""

        async def read() -> None:
            self.revision = await self.store.revision()

        return await probe(read, self.state, within)

    async def check(self, strict: bool = False) -> tuple[int, dict[str, Any]]:
        """The status and JSON body of ``/readyz`` (``strict``: of ``/readyz?strict=1``)."""
        if strict:
            await self.probe()
        elif self.loader is None and self.state.available:
            # The store's current revision, unless the store is known to be gone (then the
            # background probe's view, without waiting on the database).
            await self.probe(QUICK_TIMEOUT)
        store = self.state.report()
        # Where the configuration comes from, beside the store: the standalone file.
        source = {"file": self.file.report()} if self.file is not None else {}
        problems: list[str] = []
        body: dict[str, Any] = {"status": "ready", "revision": self.revision, "store": store}
        if self.loader is not None:
            snapshot = self.loader.current
            if snapshot is None:
                return _not_ready("configuration not loaded yet", store, source)
            body["revision"] = snapshot.revision
            body["source"] = self.loader.source
            age = self.loader.snapshot_age()
            if age is not None:
                body["snapshot_age"] = round(age, 3)
            problems = sorted(snapshot.problems)
        elif not self.serving and not self.state.available:
            return _not_ready(f"store unavailable: {self.state.error}", store, source)
        if self.file is not None:
            body["source"] = "file"
            body.update(source)
        if self.last_good is not None:
            header = read_header(self.last_good)
            if header is not None:
                body["last_good"] = {
                    "revision": header.get("revision"),
                    "written": header.get("written"),
                }
        if self.stopped_workers is not None:
            stopped = self.stopped_workers()
            if stopped:
                return _not_ready(f"worker not running: {', '.join(stopped)}", store, source)
        if strict and not self.state.available:
            return _not_ready(f"store unavailable: {self.state.error}", store, source)
        file = source.get("file")
        if strict and file is not None and file["state"] != "ok":
            reason = f"configuration file {file['state']}: {file.get('error')}"
            return _not_ready(reason, store, source)
        if problems:
            body["config_errors"] = problems
        return 200, body


def _not_ready(
    reason: str, store: dict[str, Any], source: dict[str, Any] | None = None
) -> tuple[int, dict[str, Any]]:
    return 503, {"status": "not ready", "reason": reason, "store": store, **(source or {})}


READINESS_KEY = web.AppKey("readiness", Readiness)


async def healthz(_request: web.Request) -> web.Response:
    return json_response(200, {"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    strict = request.query.get("strict", "") not in ("", "0", "false")
    status, body = await request.app[READINESS_KEY].check(strict=strict)
    return json_response(status, body)


async def store_health(request: web.Request) -> web.Response:
    status, body = await request.app[READINESS_KEY].check(strict=True)
    return json_response(status, body)


def add_health_routes(app: web.Application, readiness: Readiness) -> None:
    app[READINESS_KEY] = readiness
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/healthz/store", store_health)
