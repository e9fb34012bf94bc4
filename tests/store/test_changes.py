"""What each revision changed (for incremental reload) and the credential index."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import sqlalchemy as sa
from alembic import command

from llmgate.credentials import key_digest
from llmgate.store import Store, open_engine
from llmgate.store.migrate import alembic_config
from llmgate.store.notify import listener_for


async def test_each_revision_records_what_it_changed(store: Store) -> None:
    async with store.write() as writer:
        await writer.put("routes", "1", {"uri": "/a"})
        await writer.put("routes", "2", {"uri": "/b"})
    async with store.write() as writer:
        await writer.put("consumers", "jack", {"username": "jack"})
        await writer.put("credentials", "jack/c1", {"plugins": {}})
        await writer.put("credentials", "jack/c2", {"plugins": {}})
    async with store.write() as writer:
        await writer.delete_prefix("credentials", "jack/")
        await writer.delete("routes", "1")
        await writer.delete("routes", "nothing")
    async with store.write():
        pass  # a revision that changed nothing
    async with store.read() as reader:
        assert await reader.changed_since(0, 1) == [("routes", "1"), ("routes", "2")]
        assert sorted(await reader.changed_since(1, 3) or []) == [
            ("consumers", "jack"),
            ("credentials", "jack/c1"),
            ("credentials", "jack/c2"),
            ("routes", "1"),
        ]
        assert await reader.changed_since(3, 4) == []
        items = await reader.get_many([("routes", "1"), ("routes", "2"), ("consumers", "jack")])
        assert sorted((i.kind, i.id) for i in items) == [("consumers", "jack"), ("routes", "2")]


async def test_a_revision_without_change_rows_means_read_everything(store: Store) -> None:
    async with store.write() as writer:
        await writer.put("routes", "1", {"uri": "/a"})
    async with store.engine.begin() as conn:  # an older llmgate's write: no change rows
        await conn.execute(sa.text("UPDATE revision SET value = value + 1 WHERE id = 1"))
    async with store.write() as writer:
        await writer.put("routes", "2", {"uri": "/b"})
    async with store.read() as reader:
        assert await reader.changed_since(0, 1) == [("routes", "1")]
        assert await reader.changed_since(1, 3) is None
        assert await reader.changed_since(2, 3) == [("routes", "2")]


async def test_the_credential_index_follows_writes(store: Store) -> None:
    key = key_digest("secret")
    async with store.write() as writer:
        await writer.put("consumers", "jack", {"plugins": {"key-auth": {"key": key}}})
        await writer.put(
            "credentials",
            "jack/c1",
            {"plugins": {"basic-auth": {"username": "j", "password": "x"}}},
        )
    async with store.read() as reader:
        assert await reader.credential_owners("key-auth", key) == [("consumers", "jack")]
        assert await reader.credential_owners("basic-auth", "j") == [("credentials", "jack/c1")]
        assert await reader.credential_owners("key-auth", key_digest("other")) == []
    async with store.write() as writer:
        await writer.put("consumers", "jack", {"plugins": {}})
        await writer.delete_prefix("credentials", "jack/")
        await writer.put("consumers", "rose", {"plugins": {"key-auth": {"key": key}}})
    async with store.read() as reader:
        assert await reader.credential_owners("key-auth", key) == [("consumers", "rose")]
        assert await reader.credential_owners("basic-auth", "j") == []


def test_the_migration_indexes_stored_credentials(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"
    config = alembic_config(url)
    command.upgrade(config, "0003")
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'old.db'}")
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO resources VALUES ('consumers', 'jack', :v, 1, 1), "
                "('credentials', 'jack/c', :w, 2, 2), ('routes', '1', '{}', 3, 3)"
            ),
            {
                "v": '{"plugins": {"key-auth": {"key": "plain-old-key"}}}',
                "w": '{"plugins": {"basic-auth": {"username": "jj", "password": "h"}}}',
            },
        )
    command.upgrade(config, "head")
    with engine.connect() as conn:
        rows = sorted(conn.execute(sa.text("SELECT * FROM credential_keys")).all())
    engine.dispose()
    assert rows == [
        ("basic-auth", "jj", "credentials", "jack/c"),
        ("key-auth", key_digest("plain-old-key"), "consumers", "jack"),
    ]


def test_the_index_knows_every_auth_plugins_unique_field() -> None:
    """The store (below the plugins) lists the unique attributes itself; it must say what the
    auth plugins declare, in the same stored form."""
    from llmgate.credentials import UNIQUE_ATTRS, unique_form
    from llmgate.plugin_api.auth_consumer import AuthPlugin
    from llmgate.plugins import REGISTRY

    declared = {
        name: cls.unique_field
        for name, cls in REGISTRY.items()
        if issubclass(cls, AuthPlugin) and cls.unique_field is not None
    }
    assert declared == UNIQUE_ATTRS
    for name, attr in declared.items():
        cls = REGISTRY[name]
        assert issubclass(cls, AuthPlugin)
        store = cls.stored_as.get(attr)
        for value in ("plain", "x" * 300):
            stored = store(value) if store is not None else value
            assert unique_form(name, value) == unique_form(name, stored)


async def test_postgresql_notifies_each_committed_write(postgres_url: str) -> None:
    store = Store(open_engine(postgres_url))
    woken = asyncio.Event()
    listener = listener_for(store, woken.set)
    assert listener is not None
    listener.start()
    try:
        await asyncio.wait_for(listener.listening.wait(), 10)
        woken.clear()
        async with store.write() as writer:
            await writer.put("routes", "1", {"uri": "/a"})
        await asyncio.wait_for(woken.wait(), 2)
        woken.clear()
        with contextlib.suppress(RuntimeError):
            async with store.write() as writer:  # a rolled-back write notifies nobody
                await writer.put("routes", "2", {"uri": "/b"})
                raise RuntimeError
        await asyncio.sleep(0.3)
        assert not woken.is_set()
    finally:
        await listener.stop()
        await store.close()
    sqlite = Store(open_engine("sqlite+aiosqlite:///:memory:"))
    assert listener_for(sqlite, woken.set) is None
    await sqlite.close()
