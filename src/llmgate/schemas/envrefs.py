"""``$env://NAME`` references, as the admin API accepts them in plugin configs (SPEC §3), and
which variables they may name.

Any string field of a plugin config may hold ``$env://NAME``, alone or after a literal prefix;
it is resolved when a snapshot is compiled (``runtime/envrefs.py``).  An ``EnvPolicy`` says
which variables a reference may read: never the gateway's own settings (``LLMGATE_*``: the
admin key, the database URL...; a write naming one is refused, see ``reserved``), and, when
the ``env_allow`` setting lists names, only those.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

ENV_REF = "$env://"
RESERVED_PREFIX = "LLMGATE_"

REFERENCE = re.compile(r"\$env://([A-Za-z_][A-Za-z0-9_]*)")


@dataclass(frozen=True, slots=True)
class EnvPolicy:
    """``allow``: the names references may read (an entry ending in ``*`` is a prefix); None
    allows every name but the reserved ones."""

    allow: tuple[str, ...] | None = None

    def allows(self, name: str) -> bool:
        if name.startswith(RESERVED_PREFIX):
            return False
        if self.allow is None:
            return True
        return any(
            name == entry or (entry.endswith("*") and name.startswith(entry[:-1]))
            for entry in self.allow
        )


def names(value: object) -> list[str]:
    """Every variable the strings of ``value`` (a config) refer to, in order."""
    if isinstance(value, str):
        return REFERENCE.findall(value) if ENV_REF in value else []
    if isinstance(value, dict):
        return [name for item in value.values() for name in names(item)]
    if isinstance(value, list):
        return [name for item in value for name in names(item)]
    return []


def reserved(value: object) -> list[str]:
    """The gateway's own variables ``value`` refers to: refused when written."""
    return [name for name in names(value) if name.startswith(RESERVED_PREFIX)]
