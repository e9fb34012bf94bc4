"""The ``memory_cache`` zone: an in-process LRU bounded by bytes and by entries.

Every method runs on the event loop without awaiting, so concurrent requests see each operation
as atomic. Expired entries stay until evicted or replaced, so a lookup can tell EXPIRED from
MISS (as APISIX's shared dict does).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from llmgate.plugins.proxy_cache.entry import Entry
from llmgate.plugins.proxy_cache.policy import CacheKey
from llmgate.runtime.services import CacheCaps

DEFAULT_CAPACITY = CacheCaps().memory_max_bytes  # APISIX's memory_cache zone: 50m


class MemoryStore:
    def __init__(
        self, capacity: int = DEFAULT_CAPACITY, max_entries: int = CacheCaps().max_entries
    ) -> None:
        self.capacity = capacity
        self.max_entries = max_entries
        self.clock: Callable[[], float] = time.time
        self._entries: OrderedDict[CacheKey, Entry] = OrderedDict()
        self._variants: dict[str, set[str]] = {}
        self._size = 0

    @property
    def size(self) -> int:
        """Bytes held (as ``Entry.size`` counts them)."""
        return self._size

    def __len__(self) -> int:
        return len(self._entries)

    async def get(self, key: CacheKey) -> Entry | None:
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
        return entry

    async def put(self, entry: Entry) -> None:
        """Store ``entry``, evicting the least recently used ones past the caps."""
        if entry.size > self.capacity:
            return
        self._remove(entry.key)
        self._entries[entry.key] = entry
        self._variants.setdefault(entry.key.primary, set()).add(entry.key.variant)
        self._size += entry.size
        while self._size > self.capacity or len(self._entries) > self.max_entries:
            self._remove(next(iter(self._entries)))

    async def purge(self, primary: str, variant: str | None = None) -> bool:
        """Remove one variant, or all of ``primary``'s; whether anything was there."""
        variants = [variant] if variant is not None else list(self._variants.get(primary, ()))
        return sum(self._remove(CacheKey(primary, name)) for name in variants) > 0

    def close(self) -> None:
        self._entries.clear()
        self._variants.clear()
        self._size = 0

    def _remove(self, key: CacheKey) -> bool:
        entry = self._entries.pop(key, None)
        if entry is None:
            return False
        self._size -= entry.size
        variants = self._variants.get(key.primary)
        if variants is not None:
            variants.discard(key.variant)
            if not variants:
                del self._variants[key.primary]
        return True
