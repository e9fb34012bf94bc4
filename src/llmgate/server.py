"""Running llmgate: migrate the store, open it, start the listeners, stop cleanly on a signal.

With ``--workers 1`` (the default) one process runs everything its role asks for.  With more,
this process keeps the admin API and the node's counter service, and ``workers.Supervisor``
runs the data plane in that many processes (see ``workers.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import AsyncIterator

from aiohttp import web

from llmgate.admin.keys import resolve_admin_keys
from llmgate.app import build_admin_app, build_proxy_app
from llmgate.runtime.loader import SnapshotLoader
from llmgate.runtime.services import Services
from llmgate.settings import Listen, Settings
from llmgate.store import Store, open_engine
from llmgate.store.migrate import upgrade
from llmgate.workers import Supervisor, WorkerFailed


def say(line: str) -> None:
    print(f"llmgate: {line}", flush=True)


def use_uvloop() -> None:
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


async def start_site(app: web.Application, listen: Listen, **kwargs: object) -> web.AppRunner:
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
    with the node's other workers through SO_REUSEPORT)."""
    loader = SnapshotLoader(store, services, settings.reload_interval)
    await loader.start()
    runner: web.AppRunner | None = None
    try:
        runner = await start_site(build_proxy_app(loader), settings.proxy_listen, reuse_port=True)
        yield loader
    finally:
        if runner is not None:
            await runner.cleanup()
        await loader.stop()


async def _serve(settings: Settings) -> int:
    store = Store(open_engine(settings.database_url))
    services = Services()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    loader: SnapshotLoader | None = None  # the data plane's, when it runs in this process
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(store.close)
        stack.push_async_callback(services.close)
        if settings.role in ("proxy", "all"):
            if settings.workers == 1:
                loader = await stack.enter_async_context(open_data_plane(settings, store, services))
                say(f"data plane listening on {settings.proxy_listen}")
            else:
                supervisor = Supervisor(settings)
                stack.push_async_callback(supervisor.stop)
                try:
                    await supervisor.start()
                except WorkerFailed as exc:
                    say(f"error: {exc}")
                    return 1
                say(f"data plane listening on {settings.proxy_listen} ({settings.workers} workers)")
        if settings.role in ("admin", "all"):
            keys, generated = await resolve_admin_keys(settings, store)
            if generated:
                say(f"generated admin key {generated} (kept in the store; shown only now)")
            # In-process, a write is answered once the data plane serves it; workers poll.
            admin = build_admin_app(store, keys, loader)
            runner = await start_site(admin, settings.admin_listen)
            stack.push_async_callback(runner.cleanup)
            say(f"admin API listening on {settings.admin_listen}")
        await stop.wait()
    return 0


def serve(settings: Settings) -> int:
    """Run until SIGINT/SIGTERM. Returns the process exit code."""
    try:
        upgrade(settings.database_url)
    except Exception as exc:  # any driver error: one clear line, not a traceback
        say(f"error: cannot open the store {settings.database_url}: {exc}")
        return 1
    use_uvloop()
    try:
        return asyncio.run(_serve(settings))
    except OSError as exc:
        say(f"error: {exc.strerror or exc}")
        return 1


def migrate(database_url: str) -> int:
    try:
        upgrade(database_url)
    except Exception as exc:
        print(f"llmgate: error: migration failed: {exc}", file=sys.stderr)
        return 1
    say(f"store {database_url} is at the newest schema")
    return 0
