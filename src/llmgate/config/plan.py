"""A whole document against a store: what would change, validated as a whole, applied at once.

``make_plan`` builds the store as it would be after the document is applied (a
``PlannedReader``), then validates every resource of the document with the admin API's own
checks (``ResourceApi.validate``: schema, plugins, duplicate credentials) against that planned
state, so references between resources of one file resolve whichever comes first.  Nothing is
written until every resource passed.  ``apply`` then writes the changes in one transaction: one
revision, all or nothing.

A reference that names nothing (a route's ``upstream_id`` of an upstream neither the file nor
the kept store has, or one ``--prune`` deletes) is accepted, as APISIX's standalone files
accept it and as ``DELETE ...?force=true`` leaves it: what ``config dump`` writes always
applies back.  The resource fails at request time until the one it names exists, and the plan
lists each such reference (``Plan.dangling``) for the commands to warn about.

Applying is idempotent: a resource whose stored value equals what the document asks for is not
written, and a document that changes nothing makes no revision.  Basic-auth passwords are
stored as salted hashes, so a password written in plain text that matches the stored hash
keeps that hash rather than counting as a change.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from llmgate import credentials
from llmgate.admin.resource import ResourceApi
from llmgate.admin.resources import RESOURCES
from llmgate.config.document import STORE_FIELDS, Document, DocumentError, Entry
from llmgate.errors import HttpError
from llmgate.store import Item, Reader, Store
from llmgate.store.planned import PlannedReader
from llmgate.store.repository import now

# Resources are validated in this order (kinds not listed come after), so a resource's checks
# see the stored form of what it references.
_ORDER = (
    "upstreams",
    "services",
    "plugin_configs",
    "consumer_groups",
    "consumers",
    "credentials",
    "routes",
)
_NEW = 1 << 62  # the creation index of a planned new item: after every stored one

Action = Literal["create", "update", "delete"]


@dataclass(frozen=True, slots=True)
class Change:
    action: Action
    resource: str
    store_id: str
    label: str
    old: dict[str, Any] | None  # the stored value
    new: dict[str, Any] | None  # the value to store, without times


@dataclass(frozen=True, slots=True)
class Plan:
    changes: tuple[Change, ...]
    kept: tuple[str, ...]  # resources only in the store, kept because not pruning
    # One line per reference that will name nothing once applied (see ``make_plan``).
    dangling: tuple[str, ...] = ()


@dataclass
class PasswordMemo:
    """Which plaintext passwords already matched which stored hashes (as SHA-256 digests), so
    re-applying an unchanged file (``serve --standalone``) does not verify every hash again."""

    limit: int = 10_000
    matched: dict[str, str] = field(default_factory=dict)

    def matches(self, password: str, stored: str) -> bool:
        digest = hashlib.sha256(password.encode()).hexdigest()
        if self.matched.get(stored) == digest:
            return True
        if not credentials.verify_password(password, stored):
            return False
        self._remember(stored, digest)
        return True

    def learn(self, written: dict[str, Any], stored: dict[str, Any]) -> None:
        """Remember the plaintext basic-auth password of ``written`` that the admin API just
        hashed into ``stored``, so the next apply of the same file need not verify it."""
        password, hashed = _basic_password(written), _basic_password(stored)
        if password and hashed and password != hashed and credentials.is_password_hash(hashed):
            self._remember(hashed, hashlib.sha256(password.encode()).hexdigest())

    def _remember(self, stored: str, digest: str) -> None:
        if len(self.matched) >= self.limit:
            self.matched.clear()
        self.matched[stored] = digest


def _basic_password(conf: dict[str, Any]) -> str | None:
    auth = (conf.get("plugins") or {}).get("basic-auth")
    password = auth.get("password") if isinstance(auth, dict) else None
    return password if isinstance(password, str) else None


def label_of(item: Item) -> str:
    if item.kind == "credentials":
        parent, _, id = item.id.partition("/")
        return f"consumers/{parent}/credentials/{id}"
    return f"{item.kind}/{item.id}"


def without_times(value: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in value.items() if k not in STORE_FIELDS}


def keep_stored_password(
    conf: dict[str, Any], old: Item | None, memo: PasswordMemo | None
) -> dict[str, Any]:
    """``conf`` with a plaintext basic-auth password that matches the stored hash replaced by
    that hash (which the admin API keeps as it is)."""
    new_auth = (conf.get("plugins") or {}).get("basic-auth") if isinstance(conf, dict) else None
    old_auth = ((old.value.get("plugins") or {}).get("basic-auth")) if old is not None else None
    if not isinstance(new_auth, dict) or not isinstance(old_auth, dict):
        return conf
    password, stored = new_auth.get("password"), old_auth.get("password")
    if not isinstance(password, str) or not isinstance(stored, str):
        return conf
    plaintext = not credentials.has_env_ref(password) and not credentials.is_password_hash(password)
    if not plaintext or not credentials.is_password_hash(stored):
        return conf
    if not (memo or PasswordMemo()).matches(password, stored):
        return conf
    plugins = {**conf["plugins"], "basic-auth": {**new_auth, "password": stored}}
    return {**conf, "plugins": plugins}


def _stored_if_same(key: Any, stored: Any) -> Any:
    """``stored`` (a sealed private key) when it holds the plaintext ``key``, else ``key``."""
    if not isinstance(key, str) or not isinstance(stored, str):
        return key
    if credentials.is_sealed(key) or not credentials.is_sealed(stored):
        return key
    try:
        same = hmac.compare_digest(credentials.unseal(stored).encode(), key.encode())
    except credentials.SealError:
        return key  # validating the file's key says what is wrong with the passphrase
    return stored if same else key


def _keep_client_key(upstream: Any, old: Any) -> Any:
    """An upstream with a plaintext ``tls.client_key`` the stored one holds kept sealed."""
    tls = upstream.get("tls") if isinstance(upstream, dict) else None
    old_tls = old.get("tls") if isinstance(old, dict) else None
    if not isinstance(tls, dict) or not isinstance(old_tls, dict) or "client_key" not in tls:
        return upstream
    key = _stored_if_same(tls["client_key"], old_tls.get("client_key"))
    return {**upstream, "tls": {**tls, "client_key": key}}


def keep_stored_key(conf: dict[str, Any], old: Item | None) -> dict[str, Any]:
    """``conf`` with a plaintext private key that the stored sealed key holds replaced by
    that sealed value (sealing draws a new nonce: the same key would always look new): an
    ssl's ``key``, an upstream's ``tls.client_key`` (also inline in a route or service)."""
    if old is None or not isinstance(conf, dict):
        return conf
    if old.kind == "ssls" and "key" in conf:
        return {**conf, "key": _stored_if_same(conf["key"], old.value.get("key"))}
    if old.kind == "upstreams":
        kept: dict[str, Any] = _keep_client_key(conf, old.value)
        return kept
    if old.kind in ("routes", "services") and isinstance(conf.get("upstream"), dict):
        return {**conf, "upstream": _keep_client_key(conf["upstream"], old.value.get("upstream"))}
    return conf


def _order(resource: str) -> int:
    return _ORDER.index(resource) if resource in _ORDER else len(_ORDER)


async def make_plan(
    store: Store,
    reader: Reader,
    document: Document,
    prune: bool = False,
    memo: PasswordMemo | None = None,
) -> Plan:
    """What applying ``document`` to what ``reader`` sees would change; a DocumentError naming
    the first resource that fails the admin API's checks."""
    stored = {(item.kind, item.id): item for item in await reader.all() if item.kind in RESOURCES}
    wanted = {(entry.resource, entry.store_id): entry for entry in document.entries}
    planned = PlannedReader(reader)
    kept: list[str] = []
    for key, item in stored.items():
        if key in wanted or not prune:
            planned.put(item)
        if key not in wanted and not prune:
            kept.append(label_of(item))
    confs: dict[tuple[str, str], dict[str, Any]] = {}
    for key, entry in wanted.items():
        old = stored.get(key)
        confs[key] = keep_stored_key(keep_stored_password(entry.conf, old, memo), old)
        created = old.created_index if old is not None else _NEW
        planned.put(Item(entry.resource, entry.store_id, confs[key], created, created))

    changes: list[Change] = []
    apis = {name: ResourceApi(kind, store) for name, kind in RESOURCES.items()}
    for key, entry in sorted(wanted.items(), key=lambda pair: _order(pair[0][0])):
        value = await _validated(apis[entry.resource], planned, entry, confs[key])
        if memo is not None:
            memo.learn(confs[key], value)
        old = stored.get(key)
        if old is not None:
            planned.put(Item(old.kind, old.id, value, old.created_index, old.modified_index))
            if without_times(old.value) != value:
                changes.append(
                    Change("update", entry.resource, entry.store_id, entry.label, old.value, value)
                )
        else:
            planned.put(Item(entry.resource, entry.store_id, value, _NEW, _NEW))
            changes.append(
                Change("create", entry.resource, entry.store_id, entry.label, None, value)
            )
    if prune:
        changes.extend(_deletions(stored.values(), wanted))
    return Plan(tuple(changes), tuple(kept), await _dangling(planned))


async def _validated(
    api: ResourceApi, planned: PlannedReader, entry: Entry, conf: dict[str, Any]
) -> dict[str, Any]:
    parent = entry.address.parent
    if parent is not None and await planned.get("consumers", parent) is None:
        raise DocumentError(f"{entry.label}: consumer {parent} not found")
    try:
        return await api.validate(planned, entry.address, conf, dangling_ok=True)
    except HttpError as exc:
        message = exc.body.get("error_msg") or exc.body.get("message") or str(exc.body)
        raise DocumentError(f"{entry.label}: {message}") from None


def _deletions(stored: Iterable[Item], wanted: dict[tuple[str, str], Entry]) -> list[Change]:
    return [
        Change("delete", item.kind, item.id, label_of(item), item.value, None)
        for item in stored
        if (item.kind, item.id) not in wanted
    ]


async def _dangling(planned: PlannedReader) -> tuple[str, ...]:
    """A line for each reference of the planned store that names nothing."""
    found = []
    for item in await planned.all():
        kind = RESOURCES.get(item.kind)
        if kind is None:
            continue
        for reference, id in await kind.dangling(planned, item.value):
            found.append(
                f"{label_of(item)}: {reference.field} [{id}] names no {reference.noun}; kept "
                "as written, it fails at request time until one exists"
            )
    return tuple(found)


class _Unchanged(Exception):
    """Raised inside the write transaction to roll back its revision bump."""

    def __init__(self, plan: Plan) -> None:
        super().__init__()
        self.plan = plan


async def apply(
    store: Store, document: Document, prune: bool = False, memo: PasswordMemo | None = None
) -> tuple[Plan, int | None]:
    """Apply ``document`` in one transaction; the plan and the new revision (None when
    nothing changed and nothing was written)."""
    try:
        async with store.write() as writer:
            plan = await make_plan(store, writer, document, prune, memo)
            if not plan.changes:
                raise _Unchanged(plan)
            stamp = now()
            for change in plan.changes:
                if change.new is None:
                    await writer.delete(change.resource, change.store_id)
                    continue
                created = (change.old or {}).get("create_time", stamp)
                value = {**change.new, "create_time": created, "update_time": stamp}
                await writer.put(change.resource, change.store_id, value)
            revision = writer.new_revision
    except _Unchanged as unchanged:
        return unchanged.plan, None
    return plan, revision


async def diff(
    store: Store, document: Document, prune: bool = False, memo: PasswordMemo | None = None
) -> Plan:
    """What ``apply`` would change, without writing."""
    async with store.read() as reader:
        return await make_plan(store, reader, document, prune, memo)
