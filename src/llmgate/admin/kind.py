"""What an admin resource kind is: the declaration ``ResourceApi`` serves.

A resource is a ``ResourceKind`` declaration (``admin/resources.py``): its model, the methods it
refuses, where its id comes from, its own checks, the fields naming other resources
(``Reference``), and how it compiles.  ``Address`` is what one request addresses.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from llmgate.admin.validation import Scope
from llmgate.errors import BadRequest
from llmgate.store import Item, Reader, Writer


@dataclass(frozen=True, slots=True)
class Address:
    """What a request addresses: ``parent`` is the consumer of a credential."""

    id: str | None
    parent: str | None = None

    def store_id(self, id: str | None = None) -> str:
        id = id or self.id or ""
        return f"{self.parent}/{id}" if self.parent is not None else id


Check = Callable[[Reader, Address, dict[str, Any]], Awaitable[None]]
DeleteCheck = Callable[[Reader, str], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Reference:
    """A field that names another resource by id (a route's ``upstream_id``).

    A write through the admin API must name one that exists (APISIX's 400); a whole file
    applied (``config apply``, ``serve --standalone``) may name one that does not, as APISIX's
    standalone files may and as ``DELETE ...?force=true`` leaves them: the resource is kept as
    written and fails at request time until the one it names exists."""

    field: str  # "upstream_id"
    kind: str  # the store kind it names: "upstreams"
    noun: str  # how messages name one: "upstream", "plugin config"

    def refused(self, id: object) -> BadRequest:
        return BadRequest(
            f"failed to fetch {self.noun} info by {self.noun} id [{id}], response code: 404"
        )


@dataclass(frozen=True)
class ResourceKind:
    name: str  # the URL segment and the store's kind: "routes"
    kind: str  # the singular used in messages: "route", "plugin config"
    model: type[BaseModel]
    unsupported: frozenset[str] = frozenset()  # lower-case methods answered with 405
    id_field: str | None = "id"  # "username" for consumers: the id lives in the body
    plugin_scope: Scope | None = "route"
    filter_fields: frozenset[str] = frozenset()
    check: Check | None = None  # references, duplicates: raise BadRequest
    prepare: Callable[[dict[str, Any]], dict[str, Any]] | None = None  # secrets at rest
    # Builds what the data plane will build from the value to store (raise BadRequest).
    compile: Check | None = None
    delete_check: DeleteCheck | None = None
    cascade: Callable[[Writer, str], Awaitable[None]] | None = None
    # A kind llmgate lists (always empty) but cannot serve: every write is a 400 saying so.
    refuse_writes: str | None = None
    # Top-level fields the viewer role never sees (masked as plugins' secrets are).
    secret_fields: tuple[str, ...] = ()
    # Top-level fields a GET (one or the list) leaves out, whatever the role (an ssl's key).
    unshown_fields: tuple[str, ...] = ()
    # Fields naming other resources, checked before ``check``, in this order.
    references: tuple[Reference, ...] = ()

    async def dangling(
        self, reader: Reader, conf: Mapping[str, Any]
    ) -> list[tuple[Reference, Any]]:
        """Each reference of ``conf`` that names nothing ``reader`` sees, with the id named."""
        found = []
        for reference in self.references:
            id = conf.get(reference.field)
            if id is not None and await reader.get(reference.kind, str(id)) is None:
                found.append((reference, id))
        return found

    def key(self, address: Address, id: str | None = None) -> str:
        id = id or address.id
        if address.parent is not None:
            return f"/apisix/consumers/{address.parent}/credentials/{id}"
        return f"/apisix/{self.name}/{id}"

    def item_key(self, item: Item) -> str:
        if self.name == "credentials":
            parent, _, id = item.id.partition("/")
            return self.key(Address(id, parent))
        return f"/apisix/{self.name}/{item.id}"
