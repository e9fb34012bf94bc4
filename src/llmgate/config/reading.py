"""Reading a configuration file into a ``Document``: the format, the ``#END`` marker, bounds on
size, nodes and nesting, and numbers JSON can hold."""

from __future__ import annotations

import math
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson
import yaml

from llmgate.admin.shape import whole_numbers
from llmgate.config.document import END_MARKER, Document, DocumentError, Format, UnreadableFile
from llmgate.config.entries import entries
from llmgate.config.env_vars import substitute, substitute_values
from llmgate.config.yaml_loading import Loader, more_nodes_than, where

_END = re.compile(r"#END\s*$")


# Anchors and aliases let a small YAML file stand for a huge tree ("billion laughs"); counting
# every node as it would be expanded bounds what a document may cost.
MAX_NODES = 1_000_000

# A file is read up to this size: the largest real configuration is a few MiB, and a path
# pointing at an endless device (/dev/zero) must be refused, not read into memory.
MAX_BYTES = 64 * 1024 * 1024

# The integers JSON (orjson) and so the store can hold; YAML's are unbounded.
_INT_RANGE = range(-(2**63), 2**64)


def format_of(path: str, text: str) -> Format:
    """JSON for ``.json`` files (or text that opens with ``{``), else YAML."""
    suffix = Path(path).suffix.lower()
    if suffix == ".json":
        return "json"
    if suffix in (".yaml", ".yml"):
        return "yaml"
    return "json" if text.lstrip().startswith("{") else "yaml"


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
        text, _ = substitute(text, environ, source)
        if more_nodes_than(text, MAX_NODES):
            raise DocumentError(f"{source}: the document is too large (over {MAX_NODES} values)")
        try:
            data = yaml.load(text, Loader=Loader)  # a SafeLoader
        except yaml.YAMLError as exc:
            raise DocumentError(f"{source}: invalid YAML{where(exc)}") from None
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
        if fmt == "json":
            data = substitute_values(data, environ, source)
        data = whole_numbers(data)  # ``count: 5.0`` is 5, as in an admin API body
    except RecursionError:
        raise DocumentError(f"{source}: the document is nested too deeply") from None
    if data is None:
        data = {}  # an empty file (just "#END") is an empty configuration
    if not isinstance(data, dict):
        raise DocumentError(f"{source}: expected a mapping of resource lists at the top")
    return Document(tuple(entries(data, source)))


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
