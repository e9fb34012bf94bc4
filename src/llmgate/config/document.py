"""APISIX's standalone configuration file (``apisix.yaml`` / ``apisix.json``), read and written.

A document is a mapping of resource lists, as APISIX's file-driven standalone mode reads it::

    routes:
      - id: 1
        uri: /hello
        upstream_id: 1
    upstreams:
      - id: 1
        nodes:
          "127.0.0.1:1980": 1
        type: roundrobin
    consumers:
      - username: jack
        plugins:
          basic-auth: {username: jack, password: secret}
      - id: jack/credentials/key-1          # a credential of consumer jack
        plugins:
          key-auth: {key: another-secret}
    #END

As in APISIX: a YAML file must end with ``#END`` (proof that it was written whole), JSON needs
none; ``${{NAME}}`` and ``${{NAME:=default}}`` are replaced by environment variables (in the
text before YAML is parsed, in string values after JSON is parsed); an item without ``id`` gets
``arr_<n>`` (its 1-based position); ``<kind>_conf_version`` keys and per-item
``modifiedIndex`` are accepted and ignored.  A top-level key is supported exactly when the
admin API has that resource (``admin/resources.py``); APISIX's other kinds are refused unless
their list is empty.

This module holds what a document is; ``reading.py`` reads one (with ``env_vars.py``,
``yaml_loading.py`` and ``entries.py``), ``rendering.py`` writes one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from llmgate.admin.kind import Address
from llmgate.admin.resources import RESOURCES
from llmgate.errors import LlmgateError

Format = Literal["yaml", "json"]

END_MARKER = "#END"

# Fields a file may carry that are the store's to set: ignored on the way in, never written out.
STORE_FIELDS = ("create_time", "update_time", "createdIndex", "modifiedIndex")


class DocumentError(LlmgateError):
    """The file cannot be read as a configuration; the message says where and why."""


class UnreadableFile(DocumentError):
    """The file cannot be read at all (missing, not allowed, not UTF-8 text)."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One resource of a document, addressed as the admin API addresses it."""

    resource: str  # the admin resource: "routes", "consumers", "credentials", ...
    address: Address
    conf: dict[str, Any]  # as written, less the store's fields

    @property
    def store_id(self) -> str:
        return self.address.store_id()

    @property
    def label(self) -> str:
        """How messages name it: ``routes/1``, ``consumers/jack/credentials/key-1``."""
        if self.address.parent is not None:
            return f"consumers/{self.address.parent}/credentials/{self.address.id}"
        return f"{self.resource}/{self.address.id}"


@dataclass(frozen=True, slots=True)
class Document:
    entries: tuple[Entry, ...]


def file_kinds() -> list[str]:
    """The top-level keys this llmgate reads: its admin resources (credentials ride along in
    ``consumers``, as in APISIX)."""
    return [
        name
        for name, kind in RESOURCES.items()
        if name != "credentials" and kind.refuse_writes is None
    ]
