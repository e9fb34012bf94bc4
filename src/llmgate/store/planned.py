"""A reader over the store as it would be after a batch of writes, for validating the batch as a
whole before any of it is written (``llmgate config apply``).

Resources come from the planned set; the revision and settings from the transaction beneath.
"""

from __future__ import annotations

from collections.abc import Iterable

from llmgate.store.repository import Item, Reader


class PlannedReader(Reader):
    def __init__(self, beneath: Reader, items: Iterable[Item] = ()) -> None:
        super().__init__(beneath._conn)
        self._items = {(item.kind, item.id): item for item in items}

    def put(self, item: Item) -> None:
        self._items[(item.kind, item.id)] = item

    def remove(self, kind: str, id: str) -> None:
        self._items.pop((kind, id), None)

    async def get(self, kind: str, id: str) -> Item | None:
        return self._items.get((kind, id))

    async def all(self) -> list[Item]:
        return sorted(self._items.values(), key=lambda item: (item.created_index, item.id))

    async def list(self, kind: str, id_prefix: str | None = None) -> list[Item]:
        found = [
            item
            for (item_kind, id), item in self._items.items()
            if item_kind == kind and (id_prefix is None or id.startswith(id_prefix))
        ]
        return sorted(found, key=lambda item: (item.created_index, item.id))
