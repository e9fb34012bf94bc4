"""PATCH semantics, as pure functions.

- ``merge_patch``: objects merge recursively, arrays and scalars replace, ``null`` deletes; an
  empty object replaces (APISIX's merge asks OpenResty's ``table.isarray``, true for ``{}``),
  so ``{"plugins": {}}`` removes every plugin.
- ``patch_path``: a sub-path PATCH (``/routes/1/plugins/limit-count``) replaces one value.
"""

from __future__ import annotations

import copy
from typing import Any


def merge_patch(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """A new dict: ``target`` with ``patch`` merged in (APISIX's ``core.table.merge``: RFC 7386
    but for an empty object, which replaces)."""
    result = copy.deepcopy(target)
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif value and isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merge_patch(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def patch_path(target: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A new dict: ``target`` with the value at ``path`` ("a/b/c") replaced by ``value``.

    Missing intermediate objects are created.  Raises ``ValueError`` when the path crosses a
    value that is not an object.
    """
    segments = [s for s in path.split("/") if s]
    if not segments:
        raise ValueError("empty sub path")
    result = copy.deepcopy(target)
    node = result
    for depth, segment in enumerate(segments[:-1]):
        child = node.get(segment)
        if child is None:
            child = node[segment] = {}
        if not isinstance(child, dict):
            where = "/".join(segments[: depth + 1])
            raise ValueError(f"invalid sub path: {where} is not an object")
        node = child
    if value is None:
        node.pop(segments[-1], None)
    else:
        node[segments[-1]] = copy.deepcopy(value)
    return result
