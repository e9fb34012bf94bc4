"""The etcd-style repository: resources as JSON values under one global revision.

Reads happen in plain transactions.  A write happens inside ``Store.write()``: the transaction
first bumps the global revision (which also takes the database's write lock, so writers are
serialised and never reuse a revision), then the caller validates against what is stored and
puts or deletes rows.  If anything raises, the whole transaction (revision bump included) is
rolled back, so a rejected write changes nothing.
"""

from __future__ import annotations

import asyncio
import builtins
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import and_, delete, insert, select, text, tuple_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from llmgate.credentials import unique_credentials
from llmgate.store.engine import IMMEDIATE
from llmgate.store.tables import changes, credential_keys, resources, revision, system_settings

# The channel a PostgreSQL store notifies (with the new revision) when a write commits.
NOTIFY_CHANNEL = "llmgate_revision"
# Revisions whose change rows are kept; a process further behind reloads everything.
CHANGES_KEPT = 10_000
_PRUNE_EVERY = 100  # revisions between two prunings of the change rows
_INDEXED = frozenset({"consumers", "credentials"})  # kinds whose credentials are indexed
_BATCH = 500  # keys per IN (...) query


@dataclass(frozen=True, slots=True)
class Item:
    """One stored resource."""

    kind: str
    id: str
    value: dict[str, Any]
    created_index: int
    modified_index: int


def _item(row: Any) -> Item:
    return Item(row.kind, row.id, orjson.loads(row.value), row.created_index, row.modified_index)


class Reader:
    """Read access inside one transaction."""

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def revision(self) -> int:
        result = await self._conn.execute(select(revision.c.value).where(revision.c.id == 1))
        return int(result.scalar_one())

    async def get(self, kind: str, id: str) -> Item | None:
        query = select(resources).where(and_(resources.c.kind == kind, resources.c.id == id))
        row = (await self._conn.execute(query)).first()
        return _item(row) if row is not None else None

    async def list(self, kind: str, id_prefix: str | None = None) -> list[Item]:
        """Items of ``kind`` in creation order, optionally only those whose id starts so."""
        query = select(resources).where(resources.c.kind == kind)
        if id_prefix is not None:
            query = query.where(resources.c.id.startswith(id_prefix, autoescape=True))
        query = query.order_by(resources.c.created_index, resources.c.id)
        return [_item(row) for row in await self._conn.execute(query)]

    # ``builtins.list``: inside this class body a bare ``list`` names the method above.
    async def all(self) -> builtins.list[Item]:
        query = select(resources).order_by(resources.c.created_index, resources.c.id)
        return [_item(row) for row in await self._conn.execute(query)]

    async def setting(self, key: str) -> str | None:
        query = select(system_settings.c.value).where(system_settings.c.key == key)
        return (await self._conn.execute(query)).scalar_one_or_none()

    async def changed_since(self, since: int, upto: int) -> builtins.list[tuple[str, str]] | None:
        """The (kind, id) of every resource written or deleted by revisions ``since`` + 1 to
        ``upto``; None when the store cannot say (pruned, or a revision written by an older
        llmgate that recorded no changes): then read everything."""
        if upto - since > CHANGES_KEPT // 2:
            return None
        query = select(changes.c.revision, changes.c.kind, changes.c.id).where(
            and_(changes.c.revision > since, changes.c.revision <= upto)
        )
        revisions: set[int] = set()
        found: dict[tuple[str, str], None] = {}
        for row in await self._conn.execute(query):
            revisions.add(int(row.revision))
            if row.kind:
                found[(row.kind, row.id)] = None
        if len(revisions) != upto - since:
            return None
        return builtins.list(found)

    async def get_many(self, keys: builtins.list[tuple[str, str]]) -> builtins.list[Item]:
        """The stored items among ``keys`` ((kind, id) pairs); gone ones are left out."""
        found: builtins.list[Item] = []
        for start in range(0, len(keys), _BATCH):
            batch = keys[start : start + _BATCH]
            query = select(resources).where(tuple_(resources.c.kind, resources.c.id).in_(batch))
            found.extend(_item(row) for row in await self._conn.execute(query))
        return found

    async def credential_owners(self, plugin: str, value: str) -> builtins.list[tuple[str, str]]:
        """(kind, store id) of each consumer or credential whose ``plugin`` has the unique
        attribute ``value`` (``credentials.unique_form``): one indexed lookup."""
        query = select(credential_keys.c.kind, credential_keys.c.owner).where(
            and_(credential_keys.c.plugin == plugin, credential_keys.c.value == value)
        )
        return [(row.kind, row.owner) for row in await self._conn.execute(query)]


class Writer(Reader):
    """Write access inside one transaction whose revision is already bumped."""

    def __init__(self, conn: AsyncConnection, new_revision: int) -> None:
        super().__init__(conn)
        self.new_revision = new_revision
        self._changed: dict[tuple[str, str], None] = {}
        # (kind, id) -> its unique credential attributes now (reindexed when the write ends).
        self._keys: dict[tuple[str, str], builtins.list[tuple[str, str]]] = {}

    def _touched(self, kind: str, id: str, value: dict[str, Any] | None) -> None:
        self._changed[(kind, id)] = None
        if kind in _INDEXED:
            plugins = value.get("plugins") if value is not None else None
            self._keys[(kind, id)] = [(p, v) for p, _, v in unique_credentials(plugins)]

    async def finish(self) -> None:
        """Record what this revision changed, keep the credential index, prune old change
        rows, and (PostgreSQL) notify the data plane: in the write's transaction."""
        rows = [{"revision": self.new_revision, "kind": "", "id": ""}]
        rows += [{"revision": self.new_revision, "kind": k, "id": i} for k, i in self._changed]
        await self._conn.execute(insert(changes), rows)
        if self._keys:
            owners = builtins.list(self._keys)
            for start in range(0, len(owners), _BATCH):
                batch = owners[start : start + _BATCH]
                await self._conn.execute(
                    delete(credential_keys).where(
                        tuple_(credential_keys.c.kind, credential_keys.c.owner).in_(batch)
                    )
                )
            indexed = {
                (plugin, value, kind, id)
                for (kind, id), keys in self._keys.items()
                for plugin, value in keys
            }
            if indexed:
                await self._conn.execute(
                    insert(credential_keys),
                    [{"plugin": p, "value": v, "kind": k, "owner": o} for p, v, k, o in indexed],
                )
        if self.new_revision % _PRUNE_EVERY == 0:
            await self._conn.execute(
                delete(changes).where(changes.c.revision <= self.new_revision - CHANGES_KEPT)
            )
        if self._conn.dialect.name == "postgresql":
            await self._conn.execute(
                text("SELECT pg_notify(:channel, :revision)"),
                {"channel": NOTIFY_CHANNEL, "revision": str(self.new_revision)},
            )

    async def put(self, kind: str, id: str, value: dict[str, Any]) -> tuple[Item, bool]:
        """Create or replace; returns the stored item and whether it is new."""
        data = orjson.dumps(value).decode()
        self._touched(kind, id, value)
        old = await self.get(kind, id)
        if old is None:
            await self._conn.execute(
                insert(resources).values(
                    kind=kind,
                    id=id,
                    value=data,
                    created_index=self.new_revision,
                    modified_index=self.new_revision,
                )
            )
            return Item(kind, id, value, self.new_revision, self.new_revision), True
        await self._conn.execute(
            update(resources)
            .where(and_(resources.c.kind == kind, resources.c.id == id))
            .values(value=data, modified_index=self.new_revision)
        )
        return Item(kind, id, value, old.created_index, self.new_revision), False

    async def delete(self, kind: str, id: str) -> bool:
        query = delete(resources).where(and_(resources.c.kind == kind, resources.c.id == id))
        deleted = (await self._conn.execute(query)).rowcount > 0
        if deleted:
            self._touched(kind, id, None)
        return deleted

    async def delete_prefix(self, kind: str, id_prefix: str) -> int:
        where = and_(
            resources.c.kind == kind, resources.c.id.startswith(id_prefix, autoescape=True)
        )
        ids = [row.id for row in await self._conn.execute(select(resources.c.id).where(where))]
        for id in ids:
            self._touched(kind, id, None)
        await self._conn.execute(delete(resources).where(where))
        return len(ids)


class Store:
    """The configuration store shared by the admin API and the data plane."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._listeners: list[Callable[[int], None]] = []
        # Writers of this process take turns before they open a transaction: the database
        # serialises them anyway (on the revision row), and a statement waits there at most
        # STATEMENT_TIMEOUT, so a burst of writes queues here rather than timing out there
        # (only other processes' writes are waited for in the database).
        self._write_turn = asyncio.Lock()

    def on_commit(self, listener: Callable[[int], None]) -> None:
        """Call ``listener(revision)`` after each committed write made through this store."""
        self._listeners.append(listener)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[Reader]:
        async with self.engine.connect() as conn, conn.begin():
            yield Reader(conn)

    @asynccontextmanager
    async def write(self) -> AsyncIterator[Writer]:
        async with self._write_turn, self.engine.connect() as conn:
            conn = await conn.execution_options(**{IMMEDIATE: True})
            async with conn.begin():
                bumped = await conn.execute(
                    update(revision)
                    .where(revision.c.id == 1)
                    .values(value=revision.c.value + 1)
                    .returning(revision.c.value)
                )
                writer = Writer(conn, int(bumped.scalar_one()))
                yield writer
                await writer.finish()
        for listener in self._listeners:
            listener(writer.new_revision)

    async def revision(self) -> int:
        async with self.read() as reader:
            return await reader.revision()

    async def setting_or_default(self, key: str, default: str) -> tuple[str, bool]:
        """The stored setting ``key``, storing ``default`` first if absent (no revision bump).

        Returns the value and whether ``default`` was stored now.  Raced by another node
        storing its own first (PostgreSQL: both read nothing, one insert fails), the value
        that node stored.
        """
        try:
            async with self.engine.connect() as conn:
                conn = await conn.execution_options(**{IMMEDIATE: True})
                async with conn.begin():
                    reader = Reader(conn)
                    current = await reader.setting(key)
                    if current is not None:
                        return current, False
                    await conn.execute(insert(system_settings).values(key=key, value=default))
                    return default, True
        except IntegrityError:
            async with self.engine.connect() as conn:
                stored = await Reader(conn).setting(key)
            if stored is None:
                raise
            return stored, False

    async def replace_setting(self, key: str, expected: str, value: str) -> bool:
        """Set ``key`` to ``value`` if it still holds ``expected`` (no revision bump); whether
        it did."""
        async with self.engine.connect() as conn:
            conn = await conn.execution_options(**{IMMEDIATE: True})
            async with conn.begin():
                result = await conn.execute(
                    update(system_settings)
                    .where(and_(system_settings.c.key == key, system_settings.c.value == expected))
                    .values(value=value)
                )
                return bool(result.rowcount)

    async def close(self) -> None:
        await self.engine.dispose()


def now() -> int:
    """Unix seconds, as APISIX writes ``create_time`` / ``update_time``."""
    return int(time.time())
