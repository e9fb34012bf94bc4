"""Running llmgate: migrate the store, open it, start the listeners, stop cleanly on a signal.

With ``--workers 1`` (the default) one process runs everything its role asks for.  With more,
this process keeps the admin API, the metrics listener and the node's counter service, and
``workers.Supervisor`` runs the data plane in that many processes (see ``workers.py``).  The
metrics listener runs wherever the data plane does (roles proxy and all) and adds up the
metrics of every data-plane process (``observability/exporter.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import shutil
import signal
import sys
from collections.abc import AsyncIterator

from aiohttp import web

from llmgate.admin.keys import resolve_admin_keys
from llmgate.ai.pricing import load_prices
from llmgate.app import build_admin_app, build_proxy_server
from llmgate.config.document import DocumentError
from llmgate.config.standalone import StandaloneFile, private_store
from llmgate.http.limits import ClientLimits, raise_open_file_limit
from llmgate.http.protocol import EdgeServer
from llmgate.observability.exporter import build_metrics_app, mark_dead, prepare_multiprocess_dir
from llmgate.observability.health import Readiness
from llmgate.runtime.loader import SnapshotLoader
from llmgate.runtime.services import CacheCaps, Services
from llmgate.runtime.verified import VerifiedCredentials
from llmgate.schemas.envrefs import EnvPolicy
from llmgate.settings import Listen, Settings
from llmgate.store import Store, open_engine
from llmgate.store.migrate import upgrade
from llmgate.workers import Supervisor, WorkerFailed

# The admin listener's own connection budget: a flooded data plane never takes it, and an
# admin flood never takes the data plane's.
ADMIN_MAX_CONNECTIONS = 256


def say(line: str) -> None:
    print(f"llmgate: {line}", flush=True)


def use_uvloop() -> None:
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


class _EdgeAppRunner(web.AppRunner):
    """An ``AppRunner`` whose connections are held to client limits (``EdgeServer``), with a
    connection budget of their own."""

    def __init__(self, app: web.Application, limits: ClientLimits, max_connections: int) -> None:
        super().__init__(app, access_log=None, handle_signals=False)
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


async def start_site(
    app: web.Application | web.Server,
    listen: Listen,
    limits: ClientLimits | None = None,
    **kwargs: object,
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
    site = web.TCPSite(runner, listen.host, listen.port, **kwargs)  # type: ignore[arg-type]
    await site.start()
    return runner


@contextlib.asynccontextmanager
async def open_data_plane(
    settings: Settings, store: Store, services: Services
) -> AsyncIterator[SnapshotLoader]:
    """The data plane of this process: the config loaded, the proxy port listening (shared
    with the node's other workers through SO_REUSEPORT), metrics and token usage recorded."""
    # Imported here: prometheus_client must not be imported before ``serve`` has named the
    # metrics directory (see observability/exporter.py).
    from llmgate.observability.accounting import LlmAccounting
    from llmgate.observability.metrics import GaugeSampler, Metrics
    from llmgate.observability.upstream_status import StatusBoard
    from llmgate.observability.usage import UsageReporter

    metrics = Metrics(settings.metrics_prefix, max_models=settings.metrics_max_models)
    services.pools.listener = StatusBoard(settings.metrics_prefix).update
    usage = UsageReporter(store, calls_days=settings.usage_calls_days)
    if settings.prices is not None:
        # Checked when the settings were read; read again here, in each data-plane process.
        services.prices = load_prices(settings.prices)
    services.verified = VerifiedCredentials(settings.auth_failures_per_minute)
    services.cache_caps = CacheCaps(
        settings.cache_max_bytes, settings.cache_memory_max_bytes, settings.cache_max_entries
    )
    services.metrics = metrics
    services.env_policy = EnvPolicy(settings.env_allow)
    services.observers = (LlmAccounting(metrics, usage),)
    loader = SnapshotLoader(store, services, settings.reload_interval)
    await loader.start()
    await usage.start()
    runner: web.BaseRunner | None = None
    sampler: GaugeSampler | None = None
    try:
        runner = await start_site(
            build_proxy_server(loader, settings.client_limits()),
            settings.proxy_listen,
            reuse_port=True,
        )
        server = runner.server
        assert server is not None

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
        await loader.stop()


async def _serve(
    settings: Settings, metrics_dir: str | None, source: StandaloneFile | None = None
) -> int:
    store = Store(open_engine(settings.database_url))
    services = Services()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    loader: SnapshotLoader | None = None  # the data plane's, when it runs in this process
    readiness = Readiness(store)
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(store.close)
        stack.push_async_callback(services.close)
        if settings.role in ("proxy", "all"):
            assert metrics_dir is not None
            if settings.workers == 1:
                loader = await stack.enter_async_context(open_data_plane(settings, store, services))
                readiness = Readiness(store, loader)
                say(f"data plane listening on {settings.proxy_listen}")
            else:
                supervisor = Supervisor(
                    settings, functools.partial(mark_dead, directory=metrics_dir)
                )
                stack.push_async_callback(supervisor.stop)
                try:
                    await supervisor.start()
                except WorkerFailed as exc:
                    say(f"error: {exc}")
                    return 1
                readiness = Readiness(store, stopped_workers=supervisor.stopped)
                say(f"data plane listening on {settings.proxy_listen} ({settings.workers} workers)")
            exporter = await start_site(
                build_metrics_app(metrics_dir, readiness), settings.metrics_listen
            )
            stack.push_async_callback(exporter.cleanup)
            say(f"metrics listening on {settings.metrics_listen}")
        if settings.role in ("admin", "all"):
            keys, generated = await resolve_admin_keys(settings, store)
            if generated:
                say(f"generated admin key {generated} (kept in the store; shown only now)")
            # In-process, a write is answered once the data plane serves it; workers poll.
            read_only = source.read_only_reason if source is not None else None
            limits = settings.client_limits()
            admin = build_admin_app(
                store,
                keys,
                loader,
                readiness,
                read_only,
                limits,
                cors=settings.admin_cors,
                ui_dir=settings.ui_dir,
            )
            runner = await start_site(admin, settings.admin_listen, limits)
            stack.push_async_callback(runner.cleanup)
            say(f"admin API listening on {settings.admin_listen}")
            if settings.ui_dir is not None:
                say(f"admin UI from {settings.ui_dir} at http://{settings.admin_listen}/ui/")
        if source is not None:
            await stack.enter_async_context(
                source.watching(loader.notify if loader is not None else None)
            )
        await stop.wait()
    return 0


def serve(settings: Settings) -> int:
    """Run until SIGINT/SIGTERM. Returns the process exit code."""
    if settings.standalone is None:
        return _serve_store(settings)
    try:  # the configuration comes from a file, through a private store
        with private_store(settings) as (private, source):
            say(f"standalone: configuration from {source.path}; the admin API is read-only")
            return _serve_store(private, source)
    except DocumentError as exc:
        say(f"error: {exc}")
        return 1


def _serve_store(settings: Settings, source: StandaloneFile | None = None) -> int:
    try:
        upgrade(settings.database_url)
    except Exception as exc:  # any driver error: one clear line, not a traceback
        say(f"error: cannot open the store {settings.database_url}: {exc}")
        return 1
    use_uvloop()
    raise_open_file_limit()  # as nginx's worker_rlimit_nofile: the connection cap follows it
    # Before any metric exists, and before the workers are spawned (they inherit it).
    metrics_dir = prepare_multiprocess_dir() if settings.role != "admin" else None
    try:
        return asyncio.run(_serve(settings, metrics_dir, source))
    except OSError as exc:
        say(f"error: {exc.strerror or exc}")
        return 1
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def migrate(database_url: str) -> int:
    try:
        upgrade(database_url)
    except Exception as exc:
        print(f"llmgate: error: migration failed: {exc}", file=sys.stderr)
        return 1
    say(f"store {database_url} is at the newest schema")
    return 0
