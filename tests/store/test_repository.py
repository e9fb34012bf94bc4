"""The repository on SQLite and on PostgreSQL (each test runs on both)."""

from __future__ import annotations

import asyncio

import pytest

from llmgate.store import Store


async def test_put_get_list_delete(store: Store) -> None:
    async with store.write() as tx:
        item, created = await tx.put("routes", "1", {"uri": "/a"})
    assert created and item.created_index == item.modified_index == 1
    async with store.write() as tx:
        item, created = await tx.put("routes", "1", {"uri": "/b"})
        await tx.put("routes", "2", {"uri": "/c"})
    assert not created and (item.created_index, item.modified_index) == (1, 2)
    async with store.read() as reader:
        assert (await reader.get("routes", "1")).value == {"uri": "/b"}
        assert [i.id for i in await reader.list("routes")] == ["1", "2"]
        assert await reader.get("upstreams", "1") is None
        assert await reader.revision() == 2
    async with store.write() as tx:
        assert await tx.delete("routes", "1")
        assert not await tx.delete("routes", "404")
    async with store.read() as reader:
        assert [i.id for i in await reader.list("routes")] == ["2"]


async def test_list_by_prefix_is_literal(store: Store) -> None:
    async with store.write() as tx:
        await tx.put("credentials", "jack/a", {})
        await tx.put("credentials", "jack_x/b", {})
        await tx.put("credentials", "jac/c", {})
    async with store.read() as reader:
        assert [i.id for i in await reader.list("credentials", "jack/")] == ["jack/a"]
        # "_" and "%" are LIKE wildcards: they must be matched literally.
        assert [i.id for i in await reader.list("credentials", "jack_")] == ["jack_x/b"]
    async with store.write() as tx:
        assert await tx.delete_prefix("credentials", "jack/") == 1


async def test_failed_write_changes_nothing(store: Store) -> None:
    async with store.write() as tx:
        await tx.put("routes", "1", {"uri": "/a"})
    with pytest.raises(RuntimeError):
        async with store.write() as tx:
            await tx.put("routes", "1", {"uri": "/changed"})
            await tx.put("routes", "2", {"uri": "/new"})
            raise RuntimeError("validation failed")
    async with store.read() as reader:
        assert await reader.revision() == 1
        assert (await reader.get("routes", "1")).value == {"uri": "/a"}
        assert await reader.get("routes", "2") is None


async def test_concurrent_writers_never_lose_or_reuse_a_revision(store_url: str) -> None:
    from llmgate.store import open_engine

    # Several engines = several independent clients, like several admin processes.
    stores = [Store(open_engine(store_url)) for _ in range(4)]
    seen: list[int] = []

    async def writer(store: Store, n: int) -> None:
        for i in range(10):
            async with store.write() as tx:
                await tx.put("upstreams", f"{n}-{i}", {"n": n, "i": i})
                seen.append(tx.new_revision)

    try:
        await asyncio.gather(*(writer(s, n) for n, s in enumerate(stores)))
        async with stores[0].read() as reader:
            items = await reader.list("upstreams")
            revision = await reader.revision()
    finally:
        for s in stores:
            await s.close()
    assert len(items) == 40
    assert sorted(seen) == list(range(1, 41))  # every write got its own revision
    assert revision == 40
    assert sorted(i.modified_index for i in items) == list(range(1, 41))


async def test_concurrent_puts_of_one_new_id_create_it_once(store_url: str) -> None:
    """However writers interleave, one of them creates the item; the others replace it
    (the admin API's 201 and 200)."""
    from llmgate.store import open_engine

    stores = [Store(open_engine(store_url)) for _ in range(4)]

    async def put(store: Store, id: str) -> bool:
        async with store.write() as tx:
            existed = await tx.get("routes", id) is not None
            await asyncio.sleep(0)  # let the other writers in, if anything would
            _, created = await tx.put("routes", id, {"uri": "/a"})
            assert created is not existed
            return created

    try:
        for round in range(5):
            created = await asyncio.gather(
                *(put(store, f"new-{round}") for store in stores for _ in range(2))
            )
            assert sorted(created) == [False] * 7 + [True], round
    finally:
        for store in stores:
            await store.close()


async def test_commit_listeners_get_the_new_revision(store: Store) -> None:
    got: list[int] = []
    store.on_commit(got.append)
    async with store.write() as tx:
        await tx.put("routes", "1", {})
    with pytest.raises(ValueError):
        async with store.write():
            raise ValueError
    assert got == [1]


async def test_setting_or_default_keeps_the_first_value(store: Store) -> None:
    assert await store.setting_or_default("k", "first") == ("first", True)
    assert await store.setting_or_default("k", "second") == ("first", False)
    assert await store.revision() == 0  # settings are not configuration


async def test_setting_or_default_raced_gives_both_the_first_value(store: Store) -> None:
    # Two nodes (or workers) starting at once on a fresh store each generate a value (the admin
    # key, the ssl passphrase): both must end with the one stored, neither with an error.
    answers = await asyncio.gather(
        *(store.setting_or_default("raced", f"value-{n}") for n in range(8)),
        return_exceptions=True,
    )
    values = {answer[0] for answer in answers if isinstance(answer, tuple)}
    assert all(isinstance(answer, tuple) for answer in answers), answers
    assert len(values) == 1
    assert sum(created for _, created in answers) == 1  # type: ignore[misc]
