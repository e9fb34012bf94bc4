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
"""

from __future__ import annotations

import math
import os
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import orjson
import yaml

from llmgate.admin.resource import Address
from llmgate.admin.resources import RESOURCES
from llmgate.errors import LlmgateError
from llmgate.store import Item

Format = Literal["yaml", "json"]

END_MARKER = "#END"
_END = re.compile(r"#END\s*$")

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

# Fields a file may carry that are the store's to set: ignored on the way in, never written out.
STORE_FIELDS = ("create_time", "update_time", "createdIndex", "modifiedIndex")

_CREDENTIAL_ID = re.compile(r"^([a-zA-Z0-9_\-]+)/credentials/([a-zA-Z0-9_\-.]+)$")
_ENV_VAR = re.compile(r"\$\{\{\s*([A-Za-z0-9_]+)(?::=(.*?))?\s*\}\}")

# Anchors and aliases let a small YAML file stand for a huge tree ("billion laughs"); counting
# every node as it would be expanded bounds what a document may cost.
MAX_NODES = 1_000_000

# A file is read up to this size: the largest real configuration is a few MiB, and a path
# pointing at an endless device (/dev/zero) must be refused, not read into memory.
MAX_BYTES = 64 * 1024 * 1024

# The integers JSON (orjson) and so the store can hold; YAML's are unbounded.
_INT_RANGE = range(-(2**63), 2**64)


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


# --- reading ------------------------------------------------------------------------------


class _Loader(yaml.SafeLoader):
    """YAML's safe loader, less timestamps: ``2024-01-01`` stays a string, as in APISIX."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def format_of(path: str, text: str) -> Format:
    """JSON for ``.json`` files (or text that opens with ``{``), else YAML."""
    suffix = Path(path).suffix.lower()
    if suffix == ".json":
        return "json"
    if suffix in (".yaml", ".yml"):
        return "yaml"
    return "json" if text.lstrip().startswith("{") else "yaml"


def _substitute(text: str, environ: Mapping[str, str], source: str) -> tuple[str, bool]:
    """``text`` with every ``${{NAME}}`` / ``${{NAME:=default}}`` replaced; whether any was."""
    used = False

    def replace(match: re.Match[str]) -> str:
        nonlocal used
        name, default = match.group(1), match.group(2)
        value = environ.get(name)
        if value is None:
            value = default.strip() if default is not None else None
        if value is None:
            raise DocumentError(f"{source}: can't find environment variable {name}")
        used = True
        return value

    return _ENV_VAR.sub(replace, text), used


def _substitute_values(node: Any, environ: Mapping[str, str], source: str) -> Any:
    """JSON's substitution, after parsing: in keys and string values; a string value made of a
    variable becomes a number or boolean when it reads as one (as APISIX does)."""
    if isinstance(node, dict):
        return {
            _substitute(key, environ, source)[0]: _substitute_values(value, environ, source)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_substitute_values(value, environ, source) for value in node]
    if isinstance(node, str):
        text, used = _substitute(node, environ, source)
        if not used:
            return text
        if text in ("true", "false"):
            return text == "true"
        if re.fullmatch(r"-?\d+", text):
            return int(text)
        if re.fullmatch(r"-?\d+\.\d+", text):
            return float(text)
        return text
    return node


def _expanded_size(node: Any, sizes: dict[int, int]) -> int:
    """How many values ``node`` stands for with every alias expanded (a subtree reached through
    several aliases counts each time), computed once per distinct subtree."""
    if not isinstance(node, (dict, list)):
        return 1
    known = sizes.get(id(node))
    if known is None:
        children = node.values() if isinstance(node, dict) else node
        known = sizes[id(node)] = 1 + sum(_expanded_size(child, sizes) for child in children)
    return known


def _plain(node: Any, source: str) -> Any:
    """A JSON-like copy of a parsed tree, with string keys; numbers JSON cannot hold (YAML's
    unbounded integers, ``.nan``, ``.inf``) are refused."""
    if isinstance(node, dict):
        copy: dict[str, Any] = {}
        for key, value in node.items():
            if isinstance(key, bool) or not isinstance(key, (str, int)):
                raise DocumentError(f"{source}: invalid key {key!r}: keys must be strings")
            copy[str(key)] = _plain(value, source)
        return copy
    if isinstance(node, list):
        return [_plain(value, source) for value in node]
    if isinstance(node, bool) or node is None or isinstance(node, str):
        return node
    if isinstance(node, int):
        if node not in _INT_RANGE:
            raise DocumentError(f"{source}: integer {node} is out of range")
        return node
    if isinstance(node, float):
        if not math.isfinite(node):
            raise DocumentError(f"{source}: {node} is not a JSON number")
        return node
    raise DocumentError(f"{source}: unsupported value {node!r}")


def parse(
    text: str, fmt: Format, source: str = "<config>", environ: Mapping[str, str] | None = None
) -> Document:
    """The document in ``text``, or a DocumentError naming ``source``."""
    environ = os.environ if environ is None else environ
    if fmt == "yaml":
        if not _END.search(text[-64:]):
            raise DocumentError(
                f"{source}: missing {END_MARKER} at the end (it marks the file as complete)"
            )
        text, _ = _substitute(text, environ, source)
        if _more_nodes_than(text, MAX_NODES):
            raise DocumentError(f"{source}: the document is too large (over {MAX_NODES} values)")
        try:
            data = yaml.load(text, Loader=_Loader)  # a SafeLoader
        except yaml.YAMLError as exc:
            raise DocumentError(f"{source}: invalid YAML{_where(exc)}") from None
        except RecursionError:
            raise DocumentError(f"{source}: invalid YAML: nested too deeply") from None
    else:
        try:
            data = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise DocumentError(f"{source}: invalid JSON: {exc}") from None
    try:
        if _expanded_size(data, {}) > MAX_NODES:
            raise DocumentError(f"{source}: the document is too large (over {MAX_NODES} values)")
        data = _plain(data, source)
    except RecursionError:
        raise DocumentError(f"{source}: the document is nested too deeply") from None
    if fmt == "json":
        data = _substitute_values(data, environ, source)
    if data is None:
        data = {}  # an empty file (just "#END") is an empty configuration
    if not isinstance(data, dict):
        raise DocumentError(f"{source}: expected a mapping of resource lists at the top")
    return Document(tuple(_entries(data, source)))


# libyaml's parser when PyYAML has it: counting events is then some 20 times faster than
# building the values (which is Python code either way).
_EVENTS_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_NODE_EVENTS = (
    yaml.ScalarEvent,
    yaml.SequenceStartEvent,
    yaml.MappingStartEvent,
    yaml.AliasEvent,
)


def _more_nodes_than(text: str, limit: int) -> bool:
    """Whether the YAML ``text`` has more than ``limit`` nodes (an alias counts once here;
    ``_expanded_size`` counts what it expands to), found from the parser's events before any
    value is built.  Text the parser refuses is left to the loader, which says why."""
    count = 0
    try:
        for event in yaml.parse(text, Loader=_EVENTS_LOADER):
            if isinstance(event, _NODE_EVENTS):
                count += 1
                if count > limit:
                    return True
    except yaml.YAMLError:
        return False
    return False


def _where(exc: yaml.YAMLError) -> str:
    """`` at line L, column C: problem`` (one line, for logs and the command line)."""
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        return f" at line {mark.line + 1}, column {mark.column + 1}: {exc.problem}"
    return f": {exc}".replace("\n", " ")


def read(path: str, environ: Mapping[str, str] | None = None) -> Document:
    """The document in file ``path`` (``-``: standard input)."""
    try:
        if path == "-":
            raw = sys.stdin.buffer.read(MAX_BYTES + 1)
        else:
            with open(path, "rb") as file:
                raw = file.read(MAX_BYTES + 1)
        if len(raw) > MAX_BYTES:
            raise DocumentError(f"{path}: the file is too large (over {MAX_BYTES >> 20} MiB)")
        text = raw.decode()
    except OSError as exc:
        raise UnreadableFile(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise UnreadableFile(f"{path}: not UTF-8 text") from None
    return parse(text, format_of(path, text), path, environ)


def _entries(data: dict[str, Any], source: str) -> Iterable[Entry]:
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


# --- writing ------------------------------------------------------------------------------


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
