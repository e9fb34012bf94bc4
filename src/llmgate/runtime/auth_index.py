"""Every consumer's auth entries (its own, then its credentials'), bound to its entry, and each
auth plugin's index over them, built in steps."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from typing import Any

from llmgate.plugin_api.auth_consumer import AuthPlugin
from llmgate.plugins import REGISTRY
from llmgate.runtime.parts import Parts
from llmgate.runtime.snapshot import ConsumerEntry, CredentialEntry


def bound_entries(
    owner: str, consumers: dict[str, ConsumerEntry], parts: Parts, credentials: list[str]
) -> list[CredentialEntry]:
    """Every auth entry of ``owner`` (its own, then its credentials'), bound to its entry."""
    entry = consumers.get(owner)
    if entry is None:
        return []
    found = list(parts.own_auth.get(owner, ()))
    for store_id in credentials:
        credential_id = store_id.partition("/")[2]
        found.extend(
            CredentialEntry(entry, credential_id, name, config)
            for name, config in parts.credential_auth.get(store_id, ())
        )
    return found


# Auth indexes that are dicts built first-wins entry by entry: built in chunks of
# ``_INDEX_CHUNK`` entries merged in order, so no single step holds the event loop long.
_CHUNKABLE = frozenset({"key-auth", "basic-auth"})
_INDEX_CHUNK = 2000


def build_auth_index(parts: Parts, consumer_order: Iterable[str]) -> Iterator[None]:
    """Each auth plugin's index (into ``parts.index``) over every consumer's and credential's
    auth entries, in the order a full compilation lists them: consumers' own first, then
    credentials'.  Yields between steps of a few milliseconds."""
    own: list[CredentialEntry] = []
    theirs: list[CredentialEntry] = []
    for owner in consumer_order:
        for entry in parts.found.get(owner, ()):
            (own if entry.credential_id is None else theirs).append(entry)
    yield
    ordered = own + sorted(theirs, key=_credential_position(parts)) if theirs else own
    index: dict[str, Any] = {}
    for name, cls in REGISTRY.items():
        if not issubclass(cls, AuthPlugin):
            continue
        entries = [c for c in ordered if c.plugin == name]
        yield
        if name not in _CHUNKABLE or len(entries) <= _INDEX_CHUNK:
            index[name] = cls.build_index(entries)
            continue
        merged: dict[str, Any] = {}
        for start in range(0, len(entries), _INDEX_CHUNK):
            part = cls.build_index(entries[start : start + _INDEX_CHUNK])
            for key, value in part.items():
                merged.setdefault(key, value)
            yield
        index[name] = merged
    parts.index = index


def _credential_position(parts: Parts) -> Any:
    position = {store_id: i for i, store_id in enumerate(parts.credential_auth)}

    def key(entry: CredentialEntry) -> int:
        return position.get(f"{entry.consumer.username}/{entry.credential_id}", 0)

    return key


def by_owner(credential_ids: Iterable[str]) -> dict[str, list[str]]:
    owners: dict[str, list[str]] = defaultdict(list)
    for store_id in credential_ids:
        owners[store_id.partition("/")[0]].append(store_id)
    return owners
