"""CRUD for every admin resource, written once.

A resource is a ``ResourceKind`` declaration (``admin/kind.py``, the kinds in
``admin/resources.py``).  A write is validated by its model, then compiled into the very objects
the data plane will build from it (plugins, regexes, expressions, conditions, pools): whatever
would not compile is a 400.  ``ResourceApi`` turns HTTP methods into store transactions with
APISIX's envelopes, status codes and error bodies.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from llmgate.admin import masking
from llmgate.admin.groups import check_group
from llmgate.admin.kind import Address, ResourceKind
from llmgate.admin.listing import parse_query, select_items
from llmgate.admin.patching import merge_patch, patch_path
from llmgate.admin.shape import MAX_DEPTH, BodyId, forbid_times, id_text, nested_deeper, null_field
from llmgate.admin.validation import check_credential_plugins, check_plugins
from llmgate.errors import BadRequest, MethodNotAllowed, NotFound
from llmgate.schemas.messages import describe
from llmgate.store import Item, Reader, Store
from llmgate.store.repository import now


class ResourceApi:
    """The HTTP verbs of one resource kind over the store."""

    def __init__(self, kind: ResourceKind, store: Store) -> None:
        self.kind = kind
        self.store = store

    # --- validation -------------------------------------------------------------------------

    async def _validated(
        self,
        reader: Reader,
        address: Address,
        conf: object,
        allow_time: bool,
        dangling_ok: bool = False,
    ) -> dict[str, Any]:
        """The value to store for ``conf`` at ``address``, or a BadRequest (``dangling_ok``:
        also when a reference names nothing, see ``Reference``)."""
        kind = self.kind
        if not isinstance(conf, dict):
            raise BadRequest("invalid configuration: expected a JSON object")
        if nested_deeper(conf, MAX_DEPTH):
            raise BadRequest(f"invalid configuration: nested deeper than {MAX_DEPTH} levels")
        if not allow_time:
            forbid_times(conf)
        # APISIX refuses a null ("wrong type ... got userdata"); stored, every GET would show
        # it against the OpenAPI document.  (PATCH's null deletes: merge_patch drops it.)
        null = null_field(conf) if kind.name != "plugin_metadata" else None
        if null is not None:
            raise BadRequest(
                f'invalid configuration: property "{null}" validation failed: wrong type: got null'
            )
        if kind.id_field == "id":
            conf = {**conf, "id": address.id} if address.id is not None else conf
        try:
            kind.model.model_validate(conf)
        except ValidationError as exc:
            raise BadRequest(f"invalid configuration: {describe(exc)}") from None
        plugins = conf.get("plugins")
        if kind.plugin_scope is not None and isinstance(plugins, dict):
            try:
                check_plugins(plugins, kind.plugin_scope)
                await check_group(reader, kind.name, address.store_id(), plugins)
            except ValueError as exc:
                prefix = "invalid plugins configuration: " if kind.plugin_scope != "route" else ""
                raise BadRequest(f"{prefix}{exc}") from None
            if kind.plugin_scope == "credential":
                try:
                    check_credential_plugins(plugins)
                except ValueError as exc:
                    raise BadRequest(str(exc)) from None
        dangling = await kind.dangling(reader, conf)
        if dangling and not dangling_ok:
            reference, id = dangling[0]
            raise reference.refused(id)
        if kind.check is not None:
            await kind.check(reader, address, conf)
        if kind.prepare is not None:
            conf = kind.prepare(conf)
        if kind.compile is not None:
            # What a dangling reference would bring fails at request time; the rest compiles.
            gone = {reference.field for reference, _ in dangling}
            compiled = {k: v for k, v in conf.items() if k not in gone} if gone else conf
            await kind.compile(reader, address, compiled)
        return conf

    async def validate(
        self, reader: Reader, address: Address, conf: Any, *, dangling_ok: bool = False
    ) -> dict[str, Any]:
        """The value a PUT of ``conf`` at ``address`` would store (secrets hashed), checked
        as a PUT is (schema, plugins, references, duplicates) against what ``reader`` sees;
        or a BadRequest.  ``llmgate config apply`` validates whole files with it, with
        ``dangling_ok``: a reference may name nothing (``Reference``)."""
        if self.kind.refuse_writes is not None:
            raise BadRequest(self.kind.refuse_writes)
        return await self._validated(reader, address, conf, False, dangling_ok)

    def _refuse(self, method: str) -> None:
        if method in self.kind.unsupported:
            raise MethodNotAllowed(f"not supported `{method.upper()}` method for {self.kind.kind}")
        if self.kind.refuse_writes is not None and method != "delete":
            raise BadRequest(self.kind.refuse_writes)

    # --- verbs ------------------------------------------------------------------------------

    async def get(
        self, address: Address, args: Mapping[str, str], masked: bool = False
    ) -> tuple[int, Any]:
        """One item or a list; ``masked``: with secret fields masked (the viewer role)."""
        async with self.store.read() as reader:
            if address.id is None:
                prefix = f"{address.parent}/" if address.parent is not None else None
                if (
                    address.parent is not None
                    and await reader.get("consumers", address.parent) is None
                ):
                    raise NotFound()  # the credentials of a consumer that is gone: as APISIX
                items = await reader.list(self.kind.name, prefix)
            else:
                item = await reader.get(self.kind.name, address.store_id())
                if item is None:
                    raise NotFound()
                return 200, self._envelope(item, indexes=True, masked=masked)
        query = parse_query(args, self.kind.filter_fields)
        page, total = select_items(items, query)
        listed = [self._envelope(item, indexes=True, masked=masked) for item in page]
        return 200, {"list": listed, "total": total}

    async def put(self, address: Address, conf: Any) -> tuple[int, Any]:
        self._refuse("put")
        kind = self.kind
        if conf is None:
            raise BadRequest("missing configurations")
        if kind.id_field == "username":
            username = conf.get("username") if isinstance(conf, dict) else None
            if address.id is not None and username is not None and address.id != username:
                raise BadRequest("wrong username")
            address = Address(id_text(username) or address.id)
        elif isinstance(conf, dict):
            body_id = conf.get("id")
            if address.id is None and body_id is None:
                raise BadRequest(f"missing {kind.kind} id")
            if address.id is not None and body_id is not None and id_text(body_id) != address.id:
                raise BadRequest(f"wrong {kind.kind} id")
            if address.id is None:
                try:
                    BodyId.model_validate({"id": body_id})
                except ValidationError as exc:
                    raise BadRequest(f"invalid configuration: {describe(exc)}") from None
                address = Address(id_text(body_id), address.parent)
        async with self.store.write() as writer:
            if address.parent is not None and await writer.get("consumers", address.parent) is None:
                raise NotFound({"error_msg": "consumer not found"})
            value = await self._validated(writer, address, conf, allow_time=False)
            old = await writer.get(kind.name, address.store_id())
            stamp = now()
            value = {**value, "create_time": old.value.get("create_time", stamp) if old else stamp}
            value["update_time"] = stamp
            item, created = await writer.put(kind.name, address.store_id(), value)
        return (201 if created else 200), self._envelope(item)

    async def post(self, address: Address, conf: Any) -> tuple[int, Any]:
        self._refuse("post")
        if conf is None:
            raise BadRequest("missing configurations")
        if address.id is not None or (isinstance(conf, dict) and "id" in conf):
            raise BadRequest(f"wrong {self.kind.kind} id, do not need it")
        async with self.store.write() as writer:
            address = Address(f"{writer.new_revision:020d}", address.parent)
            value = await self._validated(writer, address, conf, allow_time=False)
            stamp = now()
            value = {**value, "create_time": stamp, "update_time": stamp}
            item, _ = await writer.put(self.kind.name, address.store_id(), value)
        return 201, self._envelope(item)

    async def patch(self, address: Address, sub_path: str, conf: Any) -> tuple[int, Any]:
        self._refuse("patch")
        if address.id is None:
            raise BadRequest(f"missing {self.kind.kind} id")
        if conf is None:
            raise BadRequest("missing new configuration")
        if not sub_path and not isinstance(conf, dict):
            raise BadRequest("invalid configuration")
        new_id = conf.get("id") if not sub_path else conf if sub_path == "id" else None
        if new_id is not None and id_text(new_id) != address.id:
            raise BadRequest(f"wrong {self.kind.kind} id")
        async with self.store.write() as writer:
            old = await writer.get(self.kind.name, address.store_id())
            if old is None:
                raise NotFound()
            if sub_path:
                try:
                    value = patch_path(old.value, sub_path, conf)
                except ValueError as exc:
                    raise BadRequest(str(exc)) from None
                value["update_time"] = now()
            else:
                value = merge_patch(old.value, conf)
                if "update_time" not in conf:
                    value["update_time"] = now()
            value = await self._validated(writer, address, value, allow_time=True)
            item, _ = await writer.put(self.kind.name, address.store_id(), value)
        return 200, self._envelope(item)

    async def delete(self, address: Address, force: bool) -> tuple[int, Any]:
        self._refuse("delete")
        if address.id is None:
            raise BadRequest(f"missing {self.kind.kind} id")
        async with self.store.write() as writer:
            if await writer.get(self.kind.name, address.store_id()) is None:
                raise NotFound()
            if self.kind.delete_check is not None and not force:
                await self.kind.delete_check(writer, address.id)
            if self.kind.cascade is not None:
                await self.kind.cascade(writer, address.id)
            await writer.delete(self.kind.name, address.store_id())
        # "1" is the count of deleted keys, as APISIX answers, whatever the id.
        return 200, {"deleted": "1", "key": self.kind.key(address)}

    def _envelope(self, item: Item, indexes: bool = False, masked: bool = False) -> dict[str, Any]:
        value = masking.masked(item.value, self.kind.secret_fields) if masked else item.value
        if indexes and self.kind.unshown_fields:  # a GET
            value = {k: v for k, v in value.items() if k not in self.kind.unshown_fields}
        body: dict[str, Any] = {"key": self.kind.item_key(item), "value": value}
        if indexes:
            body["createdIndex"] = item.created_index
            body["modifiedIndex"] = item.modified_index
        return body
