"""``$env://NAME`` references in config values, resolved when a snapshot is compiled.

A reference the ``EnvPolicy`` does not allow (``schemas/envrefs.py``: never ``LLMGATE_*``, and
only the ``env_allow`` names when set) resolves as an unset variable does, to "".
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from llmgate.schemas.envrefs import ENV_REF, REFERENCE, EnvPolicy, names

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
        if ENV_REF not in value:
            return value
        return REFERENCE.sub(
            lambda m: env.get(m.group(1), "") if policy.allows(m.group(1)) else "", value
        )
    if isinstance(value, dict):
        resolved = {k: resolve(v, env, policy) for k, v in value.items()}
        return value if all(resolved[k] is value[k] for k in value) else resolved
    if isinstance(value, list):
        items = [resolve(v, env, policy) for v in value]
        return value if all(a is b for a, b in zip(items, value, strict=True)) else items
    return value


def missing(
    value: Any, environ: Mapping[str, str] | None = None, policy: EnvPolicy = DEFAULT_POLICY
) -> list[str]:
    """Names referenced in ``value`` that are unset or not allowed (to warn about, never
    their values)."""
    env = os.environ if environ is None else environ
    return [name for name in names(value) if name not in env or not policy.allows(name)]
