"""A reader over the store as it would be after a batch of writes, for validating the batch as a
whole before any of it is written (``llmgate config apply``).

Resources come from the planned set; the revision and settings from the transaction beneath.
"""

from __future__ import annotations

from collections.abc import Iterable

from llmgate.credentials import unique_credentials
from llmgate.store.repository import Item, Reader


class PlannedReader(Reader):
    def __init__(self, beneath: Reader, items: Iterable[Item] = ()) -> None:
        super().__init__(beneath._conn)
        self._items = {(item.kind, item.id): item for item in items}
        # (plugin, unique value) -> owners, built when first asked, then kept current.
        self._keys: dict[tuple[str, str], set[tuple[str, str]]] | None = None

    def put(self, item: Item) -> None:
        self._unindex(item.kind, item.id)
        self._items[(item.kind, item.id)] = item
        self._index(item)

    def remove(self, kind: str, id: str) -> None:
        self._unindex(kind, id)
        self._items.pop((kind, id), None)

    def _index(self, item: Item) -> None:
        if self._keys is None or item.kind not in ("consumers", "credentials"):
            return
        for plugin, _, value in unique_credentials(item.value.get("plugins")):
            self._keys.setdefault((plugin, value), set()).add((item.kind, item.id))

    def _unindex(self, kind: str, id: str) -> None:
        old = self._items.get((kind, id))
        if self._keys is None or old is None or kind not in ("consumers", "credentials"):
            return
        for plugin, _, value in unique_credentials(old.value.get("plugins")):
            self._keys.get((plugin, value), set()).discard((kind, id))

    async def credential_owners(self, plugin: str, value: str) -> list[tuple[str, str]]:
        if self._keys is None:
            self._keys = {}
            for item in self._items.values():
                self._index(item)
        return sorted(self._keys.get((plugin, value), ()))

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
