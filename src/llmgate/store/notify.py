"""PostgreSQL's LISTEN/NOTIFY: a committed write wakes every data-plane process at once.

Each write ``pg_notify``s the new revision on ``NOTIFY_CHANNEL`` in its transaction (delivered
at commit).  ``RevisionListener`` holds one plain asyncpg connection per process that listens
and calls ``wake()``; the loader's poll stays as the fallback (a lost notification, a listener
that is reconnecting), so a missed wake-up costs at most one poll interval.  Other databases
have no listener (``listener_for`` gives None).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy.engine import make_url

from llmgate.store.engine import CONNECT_TIMEOUT, is_sqlite
from llmgate.store.repository import NOTIFY_CHANNEL, Store
from llmgate.tasks import cancel_and_wait

log = logging.getLogger("llmgate.store")

RECONNECT_PAUSE = 1.0  # seconds between two attempts to listen again


class RevisionListener:
    def __init__(self, dsn: str, wake: Callable[[], None]) -> None:
        self._dsn = dsn
        self._wake = wake
        self._task: asyncio.Task[None] | None = None
        self.listening = asyncio.Event()  # set while a connection listens

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="llmgate-store-listen")

    def _notified(self, *_args: Any) -> None:
        self._wake()

    async def _run(self) -> None:
        import asyncpg

        while True:
            lost = asyncio.Event()
            conn = None
            try:
                conn = await asyncpg.connect(self._dsn, timeout=CONNECT_TIMEOUT)
                conn.add_termination_listener(lambda _conn, lost=lost: lost.set())
                await conn.add_listener(NOTIFY_CHANNEL, self._notified)
                self.listening.set()
                self._wake()  # a write may have committed while nobody listened
                await lost.wait()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the store's state is the watcher's to log
                log.debug("listening for revisions failed: %r", exc)
            finally:
                self.listening.clear()
                if conn is not None:
                    with contextlib.suppress(Exception):
                        conn.terminate()
            await asyncio.sleep(RECONNECT_PAUSE)

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None


def listener_for(store: Store, wake: Callable[[], None]) -> RevisionListener | None:
    """A listener waking ``wake`` on every committed write, when the store is PostgreSQL."""
    url = store.engine.url.render_as_string(hide_password=False)
    if is_sqlite(url):
        return None
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    return RevisionListener(dsn, wake)
