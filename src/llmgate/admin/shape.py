"""The shape of an admin value, checked before its model: nesting depth, whole numbers, the
fields no write may set (times, nulls) and the ids a body may name."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict

from llmgate.errors import BadRequest
from llmgate.schemas.common import Id

# Deeper JSON than any resource needs; validation, storage and the JSON encoder (255 levels,
# envelope included) recurse over it.  A body is held to it when read, and every value to
# store when validated: a sub-path PATCH's path adds levels, a file applied has no body.
MAX_DEPTH = 64


def nested_deeper(value: Any, limit: int) -> bool:
    """Whether ``value`` has objects or arrays nested more than ``limit`` levels (iterative:
    the check itself never recurses)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


_EXACT = 2**53  # below it every whole float is exactly that integer


def whole_numbers(value: Any) -> Any:
    """``value`` with each whole float (``2.0``) as the integer it is, as APISIX reads JSON
    (cjson, one Lua number type): it passes an integer schema and is stored as ``2``.  Every
    way in of a configuration reads it so: admin API bodies, ``llmgate config`` and standalone
    files (YAML and JSON)."""
    if isinstance(value, float):
        return int(value) if value.is_integer() and abs(value) < _EXACT else value
    if isinstance(value, dict):
        return {key: whole_numbers(item) for key, item in value.items()}
    if isinstance(value, list):
        return [whole_numbers(item) for item in value]
    return value


_TIME_FIELDS = ("create_time", "update_time")


def forbid_times(conf: dict[str, Any]) -> None:
    for where, node in (
        ("", conf),
        ("upstream.", conf.get("upstream")),
        ("plugins.", conf.get("plugins")),
    ):
        if isinstance(node, dict):
            for name in _TIME_FIELDS:
                if name in node:
                    # APISIX's message, double space included.
                    raise BadRequest(f"the property is forbidden:  {where}{name}")


class BodyId(BaseModel):
    """The ``id`` of a body whose path names none: it becomes the resource's id, so it must
    pass APISIX's id rule as written (``0``, ``1.5`` or ``true`` would otherwise be stored as
    the ids "0", "1.5" and "True")."""

    model_config = ConfigDict(strict=True)

    id: Id


def null_field(conf: Mapping[str, Any]) -> str | None:
    """The first field set to null, as ``upstream.timeout``, looking through objects (not
    arrays: a ``vars`` expression may compare with null) but not into ``plugins``, whose
    configs are each plugin's model's business.  None when there is none."""
    stack: list[tuple[str, Mapping[str, Any]]] = [("", conf)]
    while stack:
        where, node = stack.pop()
        for name, value in node.items():
            if value is None:
                return where + name
            if isinstance(value, dict) and name != "plugins":
                stack.append((f"{where}{name}.", value))
    return None


def id_text(value: Any) -> str:
    return str(value) if isinstance(value, (str, int)) and not isinstance(value, bool) else ""
