"""Writing stored items as a configuration file in APISIX's format (and one item, for diffs)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson
import yaml

from llmgate.config.document import END_MARKER, STORE_FIELDS, Format, file_kinds
from llmgate.store import Item


def file_value(item: Item) -> dict[str, Any]:
    """A stored item as a document item: id first, without the store's fields.  A credential
    is a ``consumers`` item whose id is ``<username>/credentials/<id>``."""
    value = {k: v for k, v in item.value.items() if k not in STORE_FIELDS and k != "id"}
    if item.kind == "consumers":
        return value
    if item.kind == "credentials":
        parent, _, id = item.id.partition("/")
        return {"id": f"{parent}/credentials/{id}", **value}
    return {"id": item.id, **value}


def render(items: Iterable[Item], fmt: Format) -> str:
    """A document holding ``items`` (as read from the store), in APISIX's file format."""
    lists: dict[str, list[dict[str, Any]]] = {kind: [] for kind in file_kinds()}
    credentials: dict[str, list[Item]] = {}
    for item in items:
        if item.kind == "credentials":
            credentials.setdefault(item.id.partition("/")[0], []).append(item)
        elif item.kind in lists:
            lists[item.kind].append(file_value(item))
    if "consumers" in lists:
        # Each consumer's credentials right after it.
        with_credentials: list[dict[str, Any]] = []
        for consumer in lists["consumers"]:
            with_credentials.append(consumer)
            owned = credentials.pop(str(consumer.get("username")), [])
            with_credentials.extend(file_value(credential) for credential in owned)
        lists["consumers"] = with_credentials
    data = {kind: values for kind, values in lists.items() if values}
    if fmt == "json":
        return orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n"
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=False)
    return ("" if not data else text) + END_MARKER + "\n"


def render_value(value: dict[str, Any]) -> str:
    """One item as YAML (for diffs)."""
    return str(yaml.safe_dump(value, sort_keys=False, allow_unicode=True, default_flow_style=False))
