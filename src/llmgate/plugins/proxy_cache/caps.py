"""How much each proxy-cache zone may hold (``LLMGATE_CACHE_*`` settings, README).

APISIX's zones: ``disk_cache_one`` has ``disk_size: 1G`` and a 50m keys zone (nginx keeps about
8,000 keys per megabyte: 400,000 entries); ``memory_cache`` has ``memory_size: 50m``.  Both
zones here hold at most ``max_entries`` entries; the disk zone at most ``max_bytes`` bytes of
files, the memory zone ``memory_max_bytes`` bytes of entries.
"""

from __future__ import annotations

from dataclasses import dataclass

# A sweep of a full disk zone evicts down to this share of each cap, so writes do not wait
# for a sweep each.
LOW_WATER = 0.9


@dataclass(frozen=True, slots=True)
class CacheCaps:
    max_bytes: int = 1024**3
    memory_max_bytes: int = 50 * 1024**2
    max_entries: int = 400_000
