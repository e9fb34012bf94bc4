"""A parsed document's top-level mapping as entries: each item addressed as the admin API
addresses it (a ``consumers`` item with a ``<username>/credentials/<id>`` id is a credential, an
item without ``id`` gets ``arr_<n>``); APISIX's keys llmgate has no resource for are refused
unless their list is empty, its ``<kind>_conf_version`` keys and metadata are ignored."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from llmgate.admin.kind import Address
from llmgate.config.document import STORE_FIELDS, DocumentError, Entry, file_kinds

# APISIX's top-level keys that llmgate has no resource for yet, and why.  A key listed here
# becomes supported on its own once admin/resources.py declares a resource of that name.
_NOT_YET = {
    "stream_routes": "stream routes",
    "protos": "protos",
    "secrets": "secret managers",
}
_PLUGIN_LISTS = ("plugins", "stream_plugins")  # APISIX's hot-reloaded list of enabled plugins
_METADATA = ("X-Digest", "X-Last-Modified")  # written by APISIX's API-driven standalone mode
_CONF_VERSION = "_conf_version"

_CREDENTIAL_ID = re.compile(r"^([a-zA-Z0-9_\-]+)/credentials/([a-zA-Z0-9_\-.]+)$")


def entries(data: dict[str, Any], source: str) -> Iterable[Entry]:
    kinds = file_kinds()
    seen: set[tuple[str, str]] = set()
    for key, items in data.items():
        if key.endswith(_CONF_VERSION) and key[: -len(_CONF_VERSION)] in (*kinds, *_NOT_YET):
            if isinstance(items, bool) or not isinstance(items, (int, float)):
                raise DocumentError(f"{source}: {key} must be a number")
            continue
        if key in _METADATA:
            continue
        if key not in kinds:
            _refuse_kind(key, items, source)
            continue
        if items is None:
            continue
        if not isinstance(items, list):
            raise DocumentError(f"{source}: {key} must be a list")
        for index, item in enumerate(items, start=1):
            if not isinstance(item, dict):
                raise DocumentError(f"{source}: item {index} of {key} must be an object")
            entry = _entry(key, index, item, source)
            if (entry.resource, entry.store_id) in seen:
                what = {"consumers": "username", "credentials": "credential id"}
                name = what.get(entry.resource, "id")
                shown = item["id"] if entry.resource == "credentials" else entry.address.id
                raise DocumentError(f"{source}: found duplicate {name} {shown} in {key}")
            seen.add((entry.resource, entry.store_id))
            yield entry


def _refuse_kind(key: str, items: Any, source: str) -> None:
    if items in (None, [], {}):
        return  # nothing asked for
    if key in _NOT_YET:
        raise DocumentError(
            f"{source}: {key}: llmgate does not support {_NOT_YET[key]} yet; remove them from "
            "the file"
        )
    if key in _PLUGIN_LISTS:
        raise DocumentError(
            f"{source}: {key}: llmgate does not read a list of enabled plugins (every plugin it "
            "has is enabled); remove it from the file"
        )
    raise DocumentError(f"{source}: unknown key {key!r} (expected {', '.join(file_kinds())})")


def _id_text(value: Any, what: str, source: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise DocumentError(f"{source}: {what}: the id must be a string or an integer")
    return str(value)


def _entry(key: str, index: int, item: dict[str, Any], source: str) -> Entry:
    conf = {name: value for name, value in item.items() if name not in STORE_FIELDS}
    what = f"item {index} of {key}"
    if key == "consumers":
        raw_id = conf.get("id")
        if isinstance(raw_id, str) and "/credentials/" in raw_id:
            match = _CREDENTIAL_ID.fullmatch(raw_id)
            if match is None:
                raise DocumentError(
                    f"{source}: {what}: invalid credential id {raw_id!r} (expected "
                    "<username>/credentials/<id>)"
                )
            del conf["id"]
            return Entry("credentials", Address(match.group(2), match.group(1)), conf)
        username = conf.get("username")
        if username is None:
            raise DocumentError(f"{source}: {what}: missing username")
        return Entry("consumers", Address(_id_text(username, what, source)), conf)
    raw_id = conf.get("id")
    id = f"arr_{index}" if raw_id is None else _id_text(raw_id, what, source)
    return Entry(key, Address(id), conf)
