"""Liveness and readiness, on the admin and the metrics listeners (no key needed).

    GET /healthz   200 {"status": "ok"}: the process answers
    GET /readyz    200 {"status": "ready", "revision": N}
                   (+ "config_errors": ["routes/1", ...] naming the stored resources that do
                   not compile: served at their last good version or as a 503; details in
                   the log)
                   503 {"status": "not ready", "reason": "..."} when
                     - the store does not answer within ``STORE_TIMEOUT``;
                     - this process runs a data plane that has not loaded a snapshot yet;
                     - a data-plane worker of ``--workers N`` is not running.

``revision`` is the one this process's data plane serves, or (an admin-only process, or the
parent of the workers) the store's current one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from llmgate.errors import json_response

if TYPE_CHECKING:
    from llmgate.runtime.loader import SnapshotLoader
    from llmgate.store import Store

log = logging.getLogger("llmgate.health")

STORE_TIMEOUT = 2.0  # seconds


class Readiness:
    """What ``/readyz`` checks: the ``store``, and the data plane's ``loader`` when this process
    runs one; ``stopped_workers()`` names the data-plane workers not running (``--workers N``)."""

    def __init__(
        self,
        store: Store,
        loader: SnapshotLoader | None = None,
        stopped_workers: Callable[[], list[str]] | None = None,
    ) -> None:
        self.store = store
        self.loader = loader
        self.stopped_workers = stopped_workers

    async def check(self) -> tuple[int, dict[str, Any]]:
        """The status and JSON body of ``/readyz``."""
        try:
            stored = await asyncio.wait_for(self.store.revision(), STORE_TIMEOUT)
        except Exception as exc:  # any driver error, or the timeout
            log.warning("readiness: the store is unreachable: %r", exc)
            return _not_ready(f"store unreachable ({type(exc).__name__})")
        revision = stored
        problems: list[str] = []
        if self.loader is not None:
            snapshot = self.loader.current
            if snapshot is None:
                return _not_ready("configuration not loaded yet")
            revision = snapshot.revision
            problems = sorted(snapshot.problems)
        if self.stopped_workers is not None:
            stopped = self.stopped_workers()
            if stopped:
                return _not_ready(f"worker not running: {', '.join(stopped)}")
        body: dict[str, Any] = {"status": "ready", "revision": revision}
        if problems:
            body["config_errors"] = problems
        return 200, body


def _not_ready(reason: str) -> tuple[int, dict[str, Any]]:
    return 503, {"status": "not ready", "reason": reason}


READINESS_KEY = web.AppKey("readiness", Readiness)


async def healthz(_request: web.Request) -> web.Response:
    return json_response(200, {"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    status, body = await request.app[READINESS_KEY].check()
    return json_response(status, body)


def add_health_routes(app: web.Application, readiness: Readiness) -> None:
    app[READINESS_KEY] = readiness
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
