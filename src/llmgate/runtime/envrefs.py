"""``$env://NAME`` references in config values, resolved when a snapshot is compiled.

Which variables a reference may read is an ``EnvPolicy``: never the gateway's own settings
(``LLMGATE_*``: the admin key, the database URL, ...), refused when written
(``plugins.base.reserved_env_refs``), and
when the ``env_allow`` setting lists names, only those.  A reference the policy does not allow
resolves as an unset variable does, to "".
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from llmgate.plugins.base import RESERVED_ENV_PREFIX as RESERVED_PREFIX

_REF = re.compile(r"\$env://([A-Za-z_][A-Za-z0-9_]*)")


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


DEFAULT_POLICY = EnvPolicy()


def resolve(
    value: Any, environ: Mapping[str, str] | None = None, policy: EnvPolicy = DEFAULT_POLICY
) -> Any:
    """``value`` with every ``$env://NAME`` in its strings replaced (unset or not allowed
    names become "").

    Returns the same object when nothing was replaced, so unchanged configs stay shared.
    """
    env = os.environ if environ is None else environ
    if isinstance(value, str):
        if "$env://" not in value:
            return value
        return _REF.sub(
            lambda m: env.get(m.group(1), "") if policy.allows(m.group(1)) else "", value
        )
    if isinstance(value, dict):
        resolved = {k: resolve(v, env, policy) for k, v in value.items()}
        return value if all(resolved[k] is value[k] for k in value) else resolved
    if isinstance(value, list):
        items = [resolve(v, env, policy) for v in value]
        return value if all(a is b for a, b in zip(items, value, strict=True)) else items
    return value


def names(value: Any) -> list[str]:
    """Every name ``value`` refers to, in order."""
    if isinstance(value, str):
        return _REF.findall(value) if "$env://" in value else []
    if isinstance(value, dict):
        return [name for v in value.values() for name in names(v)]
    if isinstance(value, list):
        return [name for v in value for name in names(v)]
    return []


def missing(
    value: Any, environ: Mapping[str, str] | None = None, policy: EnvPolicy = DEFAULT_POLICY
) -> list[str]:
    """Names referenced in ``value`` that are unset or not allowed (to warn about, never
    their values)."""
    env = os.environ if environ is None else environ
    return [name for name in names(value) if name not in env or not policy.allows(name)]
