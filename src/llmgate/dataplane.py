"""What every data-plane process runs, whoever starts it (``server.py`` with one worker, each
``workers.py`` process with more): its listener, its config loader, its metrics and usage.

Here, not in ``server.py``: ``server`` starts the ``workers.Supervisor``, whose processes run
this; with it in ``server`` the two modules would import each other.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from llmgate.ai.pricing import NO_PRICES, load_prices
from llmgate.app import build_proxy_server
from llmgate.http.answers import name_connection, plain_http_on_tls_port
from llmgate.http.limits import ClientLimits
from llmgate.http.server import EdgeServer
from llmgate.http.sniffing import SniffingListener
from llmgate.http.tls import EMPTY_INDEX, SniIndex, sni_listener_context
from llmgate.proxy.upstream import PoolRegistry
from llmgate.runtime.counters import Counters
from llmgate.runtime.last_good import SnapshotFile, snapshot_path
from llmgate.runtime.loader import SnapshotLoader
from llmgate.runtime.redis_counters import target_from_url
from llmgate.runtime.services import CacheCaps, Services
from llmgate.runtime.verified import VerifiedCredentials
from llmgate.schemas.envrefs import EnvPolicy
from llmgate.settings import Listen, Settings
from llmgate.store import Store

# The admin listener's own connection budget: a flooded data plane never takes it, and an
# admin flood never takes the data plane's.
ADMIN_MAX_CONNECTIONS = 256


def use_uvloop() -> None:
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


class _EdgeAppRunner(web.AppRunner):
    """An ``AppRunner`` whose connections are held to client limits (``EdgeServer``), with a
    connection budget of their own."""

    def __init__(self, app: web.Application, limits: ClientLimits, max_connections: int) -> None:
        super().__init__(app, access_log=None, handle_signals=False)
        app.on_response_prepare.append(_name_connection)
        self._limits = limits
        self._max_connections = max_connections

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        return EdgeServer(
            server.request_handler,
            self._limits,
            max_connections=self._max_connections,
            request_factory=server.request_factory,
        )


async def _name_connection(request: web.Request, response: web.StreamResponse) -> None:
    name_connection(request, response)


async def start_site(
    app: web.Application | web.Server,
    listen: Listen,
    limits: ClientLimits | None = None,
    reuse_port: bool = False,
) -> web.BaseRunner:
    """Listen on ``listen``; an application's connections are held to ``limits`` when given
    (a ``web.Server`` brings its own)."""
    runner: web.BaseRunner
    if isinstance(app, web.Server):
        runner = web.ServerRunner(app, handle_signals=False)
    elif limits is not None:
        runner = _EdgeAppRunner(app, limits, ADMIN_MAX_CONNECTIONS)
    else:
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, listen.host, listen.port, reuse_port=reuse_port or None)
    await site.start()
    return runner


class _TlsSite(web.TCPSite):
    """The HTTPS listener: each connection is sniffed (``http.sniffing``); a TLS handshake goes
    to ``runner``'s server and must finish within ``limits.header_timeout`` (a client that opens
    a connection and never completes its handshake holds nothing for longer, nor one that
    sends nothing); anything else is plain HTTP, answered as nginx does (400 "The plain HTTP
    request was sent to HTTPS port") and closed."""

    def __init__(
        self,
        runner: web.BaseRunner,
        listen: Listen,
        context: ssl.SSLContext,
        limits: ClientLimits,
    ) -> None:
        super().__init__(runner, listen.host, listen.port, ssl_context=context, reuse_port=True)
        self._timeout = limits.header_timeout
        self._plain = EdgeServer(plain_http_on_tls_port, limits)
        self._listener: SniffingListener | None = None

    async def start(self) -> None:
        await web.BaseSite.start(self)
        server = self._runner.server
        assert isinstance(server, EdgeServer)
        # Every connection counts toward the data plane's cap from its accept (TLS or not).
        listener = SniffingListener(
            server, self._ssl_context, self._plain, timeout=self._timeout, budget=server.budget
        )
        self._listener = listener
        await listener.start(self._host or "", self._port, reuse_port=True)
        self._bound_port = listener.sockets[0].getsockname()[1] if listener.sockets else None

    async def stop(self) -> None:
        if self._listener is not None:
            await self._listener.close()
        await self._plain.shutdown(1.0)
        await super().stop()


async def start_tls_site(
    runner: web.BaseRunner, listen: Listen, loader: SnapshotLoader, settings: Settings
) -> None:
    """The data plane's HTTPS listener on ``runner``'s server: each handshake takes the
    certificate the current snapshot holds for its SNI (a replaced certificate is served from
    the next handshake on).  The handshake is bounded by the client header timeout; plain HTTP
    is answered 400 and closed."""

    def current() -> SniIndex:
        snapshot = loader.current
        return snapshot.certificates if snapshot is not None else EMPTY_INDEX

    context = sni_listener_context(current)
    site = _TlsSite(runner, listen, context, settings.client_limits())
    await site.start()


@contextlib.asynccontextmanager
async def open_data_plane(
    settings: Settings, store: Store, counters: Counters
) -> AsyncIterator[SnapshotLoader]:
    """The data plane of this process: the config loaded, the proxy port listening (shared
    with the node's other workers through SO_REUSEPORT), metrics and token usage recorded.
    ``counters``: the node's (this process's, or the parent's counter service)."""
    # Imported here: prometheus_client must not be imported before ``serve`` has named the
    # metrics directory (see observability/exporter.py).
    from llmgate.observability.accounting import LlmAccounting
    from llmgate.observability.gauge_sampler import GaugeSampler
    from llmgate.observability.metrics import Metrics
    from llmgate.observability.upstream_status import StatusBoard
    from llmgate.observability.usage import UsageReporter
    from llmgate.observability.usage_spool import Spool, default_directory

    metrics = Metrics(settings.metrics_prefix, max_models=settings.metrics_max_models)
    spool = None
    if settings.spool_dir != "off":
        directory = settings.spool_dir or default_directory(settings.database_url)
        spool = Spool(Path(directory))
    usage = UsageReporter(store, calls_days=settings.usage_calls_days, spool=spool)
    # Built whole, once per process: what every snapshot of this process shares.
    services = Services(
        counters=counters,
        verified=VerifiedCredentials(settings.auth_failures_per_minute),
        pools=PoolRegistry(listener=StatusBoard(settings.metrics_prefix).update),
        cache_caps=CacheCaps(
            settings.cache_max_bytes, settings.cache_memory_max_bytes, settings.cache_max_entries
        ),
        metrics=metrics,
        observers=(LlmAccounting(metrics, usage),),
        # Checked when the settings were read; read again here, in each data-plane process.
        prices=load_prices(settings.prices) if settings.prices is not None else NO_PRICES,
        env_policy=EnvPolicy(settings.env_allow),
        # Checked when the settings were read.
        redis_default=target_from_url(settings.redis_url) if settings.redis_url else None,
    )
    path = snapshot_path(settings.database_url, settings.snapshot_dir)
    last_good = SnapshotFile(path, settings.database_url) if path is not None else None
    loader = SnapshotLoader(store, services, settings.reload_interval, last_good, freeze=True)
    runner: web.BaseRunner | None = None
    sampler: GaugeSampler | None = None
    started = False
    try:
        await loader.start()  # freezes what it compiled (the loader says why)
        started = True
        await usage.start()
        runner = await start_site(
            build_proxy_server(
                loader,
                settings.client_limits(),
                settings.log_format if settings.access_log else None,
            ),
            settings.proxy_listen,
            reuse_port=True,
        )
        server = runner.server
        assert server is not None
        if settings.proxy_listen_tls is not None:
            await start_tls_site(runner, settings.proxy_listen_tls, loader, settings)

        def read() -> tuple[int, int, int | None]:
            snapshot = loader.current
            revision = snapshot.revision if snapshot is not None else None
            return server.requests_count, len(server.connections), revision

        sampler = GaugeSampler(metrics, read)
        sampler.start()
        yield loader
    finally:
        if runner is not None:
            await runner.cleanup()  # in-flight requests finish (and are accounted) first
        if sampler is not None:
            await sampler.stop()
        await usage.stop()
        if started:
            await loader.stop()
        await services.close()
