"""Running llmgate: migrate the store, open it, start the listeners, stop cleanly on a signal."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys

from aiohttp import web

from llmgate.admin.keys import resolve_admin_keys
from llmgate.app import build_admin_app, build_proxy_app
from llmgate.runtime.loader import SnapshotLoader
from llmgate.runtime.services import Services
from llmgate.settings import Listen, Settings
from llmgate.store import Store, open_engine
from llmgate.store.migrate import upgrade


def say(line: str) -> None:
    print(f"llmgate: {line}", flush=True)


async def start_site(app: web.Application, listen: Listen, **kwargs: object) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, listen.host, listen.port, **kwargs)  # type: ignore[arg-type]
    await site.start()
    return runner


async def _serve(settings: Settings) -> None:
    store = Store(open_engine(settings.database_url))
    runners: list[web.AppRunner] = []
    loader: SnapshotLoader | None = None
    services = Services()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        if settings.role in ("proxy", "all"):
            loader = SnapshotLoader(store, services, settings.reload_interval)
            await loader.start()
            runners.append(
                await start_site(build_proxy_app(loader), settings.proxy_listen, reuse_port=True)
            )
            say(f"data plane listening on {settings.proxy_listen}")
        if settings.role in ("admin", "all"):
            keys, generated = await resolve_admin_keys(settings, store)
            if generated:
                say(f"generated admin key {generated} (kept in the store; shown only now)")
            runners.append(await start_site(build_admin_app(store, keys), settings.admin_listen))
            say(f"admin API listening on {settings.admin_listen}")
        await stop.wait()
    finally:
        for runner in reversed(runners):
            await runner.cleanup()
        if loader is not None:
            await loader.stop()
        await services.close()
        await store.close()


def serve(settings: Settings) -> int:
    """Run until SIGINT/SIGTERM. Returns the process exit code."""
    try:
        upgrade(settings.database_url)
    except Exception as exc:  # any driver error: one clear line, not a traceback
        say(f"error: cannot open the store {settings.database_url}: {exc}")
        return 1
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    try:
        asyncio.run(_serve(settings))
    except OSError as exc:
        say(f"error: {exc.strerror or exc}")
        return 1
    return 0


def migrate(database_url: str) -> int:
    try:
        upgrade(database_url)
    except Exception as exc:
        print(f"llmgate: error: migration failed: {exc}", file=sys.stderr)
        return 1
    say(f"store {database_url} is at the newest schema")
    return 0
