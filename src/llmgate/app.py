"""Builds the aiohttp applications (admin API, data plane): wiring only."""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from llmgate.admin.auth import AdminKeys, auth_middleware
from llmgate.admin.cors import cors_middleware
from llmgate.admin.handlers import MAX_BODY, add_admin_routes
from llmgate.admin.read_only import read_only_middleware
from llmgate.admin.store_errors import store_errors_middleware
from llmgate.admin.ui import add_ui_routes
from llmgate.http.limits import ClientLimits
from llmgate.http.server import EdgeServer
from llmgate.observability.health import Readiness, add_health_routes
from llmgate.observability.request_log import access_logger_class
from llmgate.proxy.handler import make_handler
from llmgate.runtime.loader import SnapshotLoader
from llmgate.store import Store


def build_admin_app(
    store: Store,
    keys: AdminKeys,
    loader: SnapshotLoader | None = None,
    readiness: Readiness | None = None,
    read_only: str | None = None,
    limits: ClientLimits | None = None,
    *,
    cors: bool = True,
    ui_dir: str | None = None,
) -> web.Application:
    """The admin API (``/apisix/admin``) over ``store``, behind ``keys``, with ``/healthz`` and
    ``/readyz`` (``readiness``: by default the store, and ``loader`` when given).

    With the data plane's ``loader`` in the same process, a write is answered only once the
    data plane serves it.  With ``read_only`` (the reason), every write answers 405.  With
    ``cors`` (APISIX's ``enable_admin_cors``) admin answers carry CORS headers and preflights
    need no key; with ``ui_dir`` that static UI build is served at ``/ui/``.  A database error
    answers 503 ``{"error_msg": "store unavailable: …"}``.
    """
    readiness = readiness or Readiness(store, loader)
    middlewares = [cors_middleware()] if cors else []
    middlewares += [store_errors_middleware(readiness.state), auth_middleware(keys)]
    if read_only is not None:
        middlewares.append(read_only_middleware(read_only))
    app = web.Application(middlewares=middlewares, client_max_size=MAX_BODY + 1)
    add_health_routes(app, readiness)
    add_admin_routes(app, store, loader.sync if loader is not None else None, limits)
    if ui_dir is not None:
        add_ui_routes(app, ui_dir)
    return app


def build_proxy_server(
    loader: SnapshotLoader,
    limits: ClientLimits | None = None,
    access_log: str | None = None,
) -> EdgeServer:
    """The data plane: aiohttp's low-level server with the one proxy handler (no router, no
    middlewares: every request goes to ``handle``), held to the client ``limits``.  A client
    that leaves cancels its request (and so the upstream call).  ``access_log``: the format
    (``text`` or ``json``) of the access log on standard output, None for none."""
    limits = limits or ClientLimits()
    logging_options: dict[str, Any] = {}
    if access_log is not None:
        logging_options = {
            "access_log": logging.getLogger("llmgate.access"),
            "access_log_class": access_logger_class(access_log),
        }
    return EdgeServer(
        make_handler(loader, limits), limits, handler_cancellation=True, **logging_options
    )
