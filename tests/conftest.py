"""Shared fixtures: stores on SQLite and on the real PostgreSQL, and admin API clients.

PostgreSQL tests use the server at LLMGATE_TEST_POSTGRES_URL (default: the local one, database
``test``); they fail, never skip, when it is not there.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from llmgate.admin.auth import AdminKeys
from llmgate.app import build_admin_app
from llmgate.store import Store, open_engine
from llmgate.store.migrate import upgrade
from tests.support import ADMIN_KEY, POSTGRES_URL, VIEWER_KEY


def _asyncpg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file, copied for each test (migrating once keeps the suite fast)."""
    path = tmp_path_factory.mktemp("template") / "llmgate.db"
    upgrade(f"sqlite+aiosqlite:///{path}")
    return path


@pytest.fixture
def sqlite_url(sqlite_template: Path, tmp_path: Path) -> str:
    path = tmp_path / "llmgate.db"
    shutil.copy(sqlite_template, path)
    return f"sqlite+aiosqlite:///{path}"


@contextmanager
def _new_postgres_database() -> Iterator[str]:
    """The URL of a new, empty PostgreSQL database, dropped on leaving."""
    import asyncio

    name = f"llmgate_test_{uuid.uuid4().hex[:12]}"
    admin_dsn = _asyncpg_dsn(POSTGRES_URL)

    async def run(sql: str) -> None:
        conn = await asyncpg.connect(admin_dsn)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, migrated once, dropped at the end."""
    with _new_postgres_database() as url:
        upgrade(url)
        yield url


@pytest.fixture
def empty_postgres_url() -> Iterator[str]:
    """A PostgreSQL database of this test alone, not migrated (migration tests)."""
    with _new_postgres_database() as url:
        yield url


@pytest.fixture
async def postgres_url(postgres_database: str) -> str:
    conn = await asyncpg.connect(_asyncpg_dsn(postgres_database))
    try:
        await conn.execute(
            "TRUNCATE resources, system_settings, changes, credential_keys, usage, llm_calls; "
            "UPDATE revision SET value = 0 WHERE id = 1"
        )
    finally:
        await conn.close()
    return postgres_database


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest) -> str:
    """Each test using this runs twice: on SQLite and on PostgreSQL."""
    name = "sqlite_url" if request.param == "sqlite" else "postgres_url"
    return request.getfixturevalue(name)


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    store = Store(open_engine(store_url))
    yield store
    await store.close()


@pytest.fixture
async def sqlite_store(sqlite_url: str) -> AsyncIterator[Store]:
    store = Store(open_engine(sqlite_url))
    yield store
    await store.close()


@pytest.fixture
async def admin(aiohttp_client, store: Store):  # type: ignore[no-untyped-def]
    """An admin API client (on SQLite, then on PostgreSQL) sending the admin key."""
    app = build_admin_app(store, AdminKeys(ADMIN_KEY, VIEWER_KEY))
    return await aiohttp_client(app, headers={"X-API-KEY": ADMIN_KEY})


@pytest.fixture
async def gateway(aiohttp_client, aiohttp_server, aiohttp_raw_server, sqlite_store: Store):  # type: ignore[no-untyped-def]
    """Admin API + data plane + fake upstream in this process (see tests/harness.py)."""
    from llmgate.fake_upstream import FakeSettings, build_app
    from llmgate.proxy.handler import make_handler
    from llmgate.runtime.loader import SnapshotLoader
    from llmgate.runtime.services import Services
    from tests.harness import Gateway

    fake = await aiohttp_server(build_app(FakeSettings()))
    services = Services()
    loader = SnapshotLoader(sqlite_store, services, interval=0.05)
    await loader.start()
    admin = await aiohttp_client(
        build_admin_app(sqlite_store, AdminKeys(ADMIN_KEY, VIEWER_KEY)),
        headers={"X-API-KEY": ADMIN_KEY},
    )
    proxy = await aiohttp_client(await aiohttp_raw_server(make_handler(loader)))
    yield Gateway(admin, proxy, fake, loader, services, sqlite_store)
    await loader.stop()
    await services.close()
