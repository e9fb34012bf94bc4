"""``$env://NAME`` references in config values, resolved when a snapshot is compiled."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

_REF = re.compile(r"\$env://([A-Za-z_][A-Za-z0-9_]*)")


def resolve(value: Any, environ: Mapping[str, str] | None = None) -> Any:
    """``value`` with every ``$env://NAME`` in its strings replaced (unset names become "").

    Returns the same object when nothing was replaced, so unchanged configs stay shared.
    """
    env = os.environ if environ is None else environ
    if isinstance(value, str):
        if "$env://" not in value:
            return value
        return _REF.sub(lambda m: env.get(m.group(1), ""), value)
    if isinstance(value, dict):
        resolved = {k: resolve(v, env) for k, v in value.items()}
        return value if all(resolved[k] is value[k] for k in value) else resolved
    if isinstance(value, list):
        items = [resolve(v, env) for v in value]
        return value if all(a is b for a, b in zip(items, value, strict=True)) else items
    return value


def missing(value: Any, environ: Mapping[str, str] | None = None) -> list[str]:
    """Names referenced in ``value`` that are not set (to warn about, never their values)."""
    env = os.environ if environ is None else environ
    if isinstance(value, str):
        return [name for name in _REF.findall(value) if name not in env]
    if isinstance(value, dict):
        return [name for v in value.values() for name in missing(v, env)]
    if isinstance(value, list):
        return [name for v in value for name in missing(v, env)]
    return []


def names(value: Any) -> list[str]:
    """Every variable name ``value`` refers to (to redact their values from messages)."""
    if isinstance(value, str):
        return _REF.findall(value)
    if isinstance(value, dict):
        return [name for v in value.values() for name in names(v)]
    if isinstance(value, list):
        return [name for v in value for name in names(v)]
    return []
