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

from sqlalchemy.engine import make_url

from llmgate.admin.keys import resolve_admin_keys, rotate_admin_key
from llmgate.app import build_admin_app
from llmgate.config.document import DocumentError
from llmgate.config.standalone import StandaloneFile, private_store
from llmgate.dataplane import open_data_plane, start_site, use_uvloop
from llmgate.http.limits import raise_open_file_limit
from llmgate.observability.exporter import build_metrics_app, mark_dead, prepare_multiprocess_dir
from llmgate.observability.health import Readiness
from llmgate.observability.logs import say
from llmgate.runtime.counters import LocalCounters
from llmgate.runtime.last_good import snapshot_path
from llmgate.runtime.loader import SnapshotLoader
from llmgate.settings import ListenerBusy, Settings, check_listeners
from llmgate.store import Store, open_engine
from llmgate.store.health import describe, is_store_error
from llmgate.store.migrate import upgrade
from llmgate.store.ssl_passphrase import use_stored_ssl_passphrase
from llmgate.workers import Supervisor, WorkerFailed


async def _serve(
    settings: Settings, metrics_dir: str | None, source: StandaloneFile | None = None
) -> int:
    store = Store(open_engine(settings.database_url))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    loader: SnapshotLoader | None = None  # the data plane's, when it runs in this process
    announce: list[str] = []
    readiness = Readiness(store, interval=settings.reload_interval, file=source)
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(store.close)
        try:  # before any data plane compiles (or worker inherits the environment)
            await use_stored_ssl_passphrase(store)
        except Exception as exc:
            if not is_store_error(exc):
                raise
            # Started from the last-good snapshot while the store does not answer: sealed
            # keys stay sealed (those ssls do not compile) until a restart reaches the store.
            say(f"warning: cannot read the store's ssl passphrase ({describe(exc)})")
        if settings.role in ("proxy", "all"):
            assert metrics_dir is not None
            if settings.workers == 1:
                loader = await stack.enter_async_context(
                    open_data_plane(settings, store, LocalCounters())
                )
                readiness = Readiness(store, loader, file=source)
                announce.append(f"data plane listening on {settings.proxy_listen}")
                if settings.proxy_listen_tls is not None:
                    announce.append(f"data plane listening for TLS on {settings.proxy_listen_tls}")
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
                readiness = Readiness(
                    store,
                    stopped_workers=supervisor.stopped,
                    serving=True,
                    interval=settings.reload_interval,
                    last_good=snapshot_path(settings.database_url, settings.snapshot_dir),
                    file=source,
                )
                announce.append(
                    f"data plane listening on {settings.proxy_listen} ({settings.workers} workers)"
                )
            exporter = await start_site(
                build_metrics_app(metrics_dir, readiness), settings.metrics_listen
            )
            stack.push_async_callback(exporter.cleanup)
            announce.append(f"metrics listening on {settings.metrics_listen}")
        readiness.start()  # without a data plane here: probe the store in the background
        stack.push_async_callback(readiness.stop)
        if settings.role in ("admin", "all"):
            try:
                keys, generated = await resolve_admin_keys(settings, store)
            except Exception as exc:
                if not is_store_error(exc):
                    raise
                say(
                    f"error: the generated admin key is in the store, which does not answer: "
                    f"{describe(exc)} (set LLMGATE_ADMIN_KEY to start without it)"
                )
                return 1
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
            announce.append(f"admin API listening on {settings.admin_listen}")
            if settings.ui_dir is not None:
                announce.append(
                    f"admin UI from {settings.ui_dir} at http://{settings.admin_listen}/ui/"
                )
            if generated:
                announce.append(generated_key_line(generated, settings))
        if source is not None:
            await stack.enter_async_context(
                source.watching(loader.notify if loader is not None else None)
            )
        for line in announce:  # every listener is up: only now is any announced
            say(line)
        await stop.wait()
    return 0


def store_label(database_url: str) -> str:
    """The store's URL without its password, for messages."""
    return make_url(database_url).render_as_string(hide_password=True)


def generated_key_line(key: str, settings: Settings) -> str:
    return (
        f"generated admin key {key} (send it as X-API-KEY; shown only now: the store "
        f"{store_label(settings.database_url)} keeps its digest only; a lost key is replaced "
        "with `llmgate admin-key rotate`)"
    )


def serve(settings: Settings) -> int:
    """Run until SIGINT/SIGTERM. Returns the process exit code."""
    try:
        check_listeners(settings)
    except ListenerBusy as exc:
        say(f"error: {exc}")
        return 1
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
        path = snapshot_path(settings.database_url, settings.snapshot_dir)
        if settings.role == "admin" or path is None or not path.exists():
            store = store_label(settings.database_url)
            say(f"error: cannot open the store {store}: {describe(exc)}")
            return 1
        # The data plane serves the node's last-good snapshot until the store answers.
        say(f"warning: cannot open the store ({describe(exc)}); starting from {path}")
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
        print(f"llmgate: error: migration failed: {describe(exc)}", file=sys.stderr)
        return 1
    say(f"store {store_label(database_url)} is at the newest schema")
    return 0


def rotate_admin_key_command(settings: Settings) -> int:
    """``llmgate admin-key rotate``: a new generated admin key, printed once."""
    try:
        upgrade(settings.database_url)
        key = asyncio.run(_rotate(settings.database_url))
    except Exception as exc:
        print(f"llmgate: error: cannot rotate the admin key: {describe(exc)}", file=sys.stderr)
        return 1
    say(
        f"new admin key {key} (send it as X-API-KEY; shown only now: the store "
        f"{store_label(settings.database_url)} keeps its digest only; the old key works until "
        "`llmgate serve` restarts)"
    )
    if settings.admin_key:
        print(
            "llmgate: note: LLMGATE_ADMIN_KEY (or admin_key in the config file) is set: "
            "`llmgate serve` uses that key, not the generated one",
            file=sys.stderr,
        )
    return 0


async def _rotate(database_url: str) -> str:
    store = Store(open_engine(database_url))
    try:
        return await rotate_admin_key(store)
    finally:
        await store.close()
