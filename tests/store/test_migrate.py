"""The migrations on SQLite and on PostgreSQL: 0006 widens the store ids of a store in use."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from alembic import command

from llmgate.credentials import key_digest
from llmgate.store import Store, open_engine
from llmgate.store.migrate import alembic_config
from llmgate.store.tables import ID_LENGTH

USERNAME = "u" * 256  # the longest username
CREDENTIAL = f"{USERNAME}/{'c' * 64}"  # and its credential with the longest id


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
    return str(request.getfixturevalue("empty_postgres_url"))


async def _migrate(url: str, to: str, down: bool = False) -> None:
    step = command.downgrade if down else command.upgrade
    await asyncio.to_thread(step, alembic_config(url), to)


async def test_0006_keeps_what_was_stored_and_takes_the_longest_ids(empty_url: str) -> None:
    assert len(CREDENTIAL) == ID_LENGTH
    await _migrate(empty_url, "0005")
    store = Store(open_engine(empty_url))
    async with store.write() as writer:
        await writer.put("consumers", "jack", {"plugins": {"key-auth": {"key": key_digest("k")}}})
        await writer.put(
            "credentials",
            "jack/c1",
            {"plugins": {"basic-auth": {"username": "j", "password": "x"}}},
        )
    await store.close()

    await _migrate(empty_url, "head")
    store = Store(open_engine(empty_url))
    try:
        async with store.read() as reader:
            assert [(i.kind, i.id) for i in await reader.all()] == [
                ("consumers", "jack"),
                ("credentials", "jack/c1"),
            ]
            assert await reader.credential_owners("basic-auth", "j") == [("credentials", "jack/c1")]
            assert await reader.revision() == 1
        async with store.write() as writer:
            await writer.put("consumers", USERNAME, {"plugins": {}})
            await writer.put(
                "credentials", CREDENTIAL, {"plugins": {"basic-auth": {"username": "long"}}}
            )
        async with store.read() as reader:
            assert (await reader.get("consumers", USERNAME)) is not None
            assert (await reader.get("credentials", CREDENTIAL)) is not None
            assert await reader.credential_owners("basic-auth", "long") == [
                ("credentials", CREDENTIAL)
            ]
            assert await reader.changed_since(1, 2) == [
                ("consumers", USERNAME),
                ("credentials", CREDENTIAL),
            ]
        async with store.write() as writer:
            await writer.delete_prefix("credentials", f"{USERNAME}/")
            await writer.delete("consumers", USERNAME)
    finally:
        await store.close()
    await _migrate(empty_url, "0005", down=True)
    await _migrate(empty_url, "head")
