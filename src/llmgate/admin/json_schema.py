"""JSON Schemas of the admin resources and plugins, in APISIX's shape.

The pydantic models are the contract; ``model_json_schema`` describes them, but in pydantic's
shape: ``$defs`` and ``$ref``, ``title`` on every property, optional fields as ``anyOf`` with
``{"type": "null"}`` and ``"default": null``, ``discriminator`` blocks.  APISIX serves draft-07
schemas written by hand: inline, a plain ``type`` where a field is optional, no titles.  Tools
built for APISIX read these (the Dashboard validates its plugin editor with them, an MCP
server shows them to a model), so ``apisix_shape`` rewrites pydantic's output into that form:

- every ``$ref`` into ``$defs`` is inlined (a recursive model is cut at its second visit into
  ``{"type": "object"}``) and ``$defs`` dropped;
- ``anyOf: [X, {"type": "null"}]`` becomes X (the description and default kept), and a
  ``null`` branch is dropped from a wider ``anyOf``; ``"default": null`` is dropped;
- a property that only null is valid for is left out (with ``additionalProperties: false``,
  it is refused, as APISIX's schema has it);
- a model's ``description`` (its class docstring, written for developers) is dropped; a
  field's own ``description`` is kept;
- ``title``, ``discriminator`` and ``additionalProperties: true`` (the default) are dropped;
  ``prefixItems`` (2020-12) becomes draft-07's array form of ``items``.

Cross-field rules live in model validators; a model may also state them in its schema
(``json_schema_extra``, as the route does for ``uri`` or ``uris``), and a write (and
``POST /apisix/admin/schema/validate/{resource}``) checks them either way.
"""

from __future__ import annotations

import functools
from typing import Any

from pydantic import BaseModel

from llmgate.plugin_api.plugin import Plugin
from llmgate.plugins import REGISTRY

# The version APISIX reports for most of its plugins; llmgate's plugins follow the gateway's.
PLUGIN_VERSION = 0.1
_DROPPED = frozenset({"title", "discriminator", "$defs"})
_DEFAULTS = (("additionalProperties", True), ("default", None))


def _null(schema: Any) -> bool:
    return isinstance(schema, dict) and schema.get("type") == "null" and len(schema) == 1


def _shape(node: Any, defs: dict[str, Any], seen: tuple[str, ...]) -> Any:
    if isinstance(node, list):
        return [_shape(item, defs, seen) for item in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        name = ref.removeprefix("#/$defs/")
        if name in seen or name not in defs:
            target: dict[str, Any] = {"type": "object"}
        else:
            target = _shape(defs[name], defs, (*seen, name))
            target.pop("description", None)  # a class docstring, written for developers
        # Siblings of a $ref (a description, a default) apply to the inlined schema.
        rest = {k: v for k, v in node.items() if k != "$ref"}
        return {**target, **_shape(rest, defs, seen)} if rest else target
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROPPED:
            continue
        if key == "properties" and isinstance(value, dict):
            # Property names are data, not keywords: a field called "title" stays.  A field
            # whose only value is null (a consumer's ``name``) is not accepted at all.
            shaped = {name: _shape(sub, defs, seen) for name, sub in value.items()}
            out[key] = {name: sub for name, sub in shaped.items() if not _null(sub)}
        elif (key, value) in _DEFAULTS:
            continue  # "additionalProperties": true and "default": null say nothing
        elif key == "prefixItems":
            out["items"] = _shape(value, defs, seen)
        else:
            out[key] = _shape(value, defs, seen)
    branches = out.get("anyOf")
    if isinstance(branches, list) and any(_null(b) for b in branches):
        kept = [b for b in branches if not _null(b)]
        del out["anyOf"]
        if len(kept) == 1 and isinstance(kept[0], dict):
            # The branch's own keywords win over nothing; the field's description and
            # default (kept in ``out``) win over the branch's.
            out = {**kept[0], **out}
        elif kept:
            out["anyOf"] = kept
    return out


def apisix_shape(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` (pydantic's JSON schema) rewritten into APISIX's shape (module docstring)."""
    defs = schema.get("$defs")
    shaped = _shape(schema, defs if isinstance(defs, dict) else {}, ())
    assert isinstance(shaped, dict)
    shaped.pop("description", None)
    return shaped


@functools.cache
def model_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The APISIX-shaped schema of ``model`` (by alias: ``_meta``).  Cached: never mutate it."""
    return apisix_shape(model.model_json_schema(by_alias=True, mode="validation"))


def metadata_model(plugin: type[Plugin]) -> type[BaseModel] | None:
    """The model of a plugin's ``plugin_metadata``, when the plugin declares one."""
    return plugin.MetadataConfig


def plugin_schema(plugin: type[Plugin], schema_type: str | None) -> dict[str, Any] | None:
    """``GET /apisix/admin/plugins/{name}``: the schema of the plugin's config, of what a
    consumer carries (``consumer``) or of its metadata (``metadata``); None when it has none."""
    if schema_type == "consumer":
        model: type[BaseModel] | None = plugin.ConsumerConfig
    elif schema_type == "metadata":
        model = metadata_model(plugin)
    else:
        model = plugin.Config
    return model_schema(model) if model is not None else None


def plugin_entry(plugin: type[Plugin]) -> dict[str, Any]:
    """One plugin in ``GET /apisix/admin/plugins?all=true``, as APISIX's ``plugin.get_all``
    picks its attributes: schema, consumer_schema, metadata_schema, priority, version, type."""
    entry: dict[str, Any] = {
        "schema": model_schema(plugin.Config),
        "priority": plugin.priority,
        "version": PLUGIN_VERSION,
    }
    if plugin.ConsumerConfig is not None:
        entry["consumer_schema"] = model_schema(plugin.ConsumerConfig)
    metadata = metadata_model(plugin)
    if metadata is not None:
        entry["metadata_schema"] = model_schema(metadata)
    if plugin.kind == "auth":
        entry["type"] = "auth"
    return entry


@functools.cache
def all_plugins() -> dict[str, dict[str, Any]]:
    """``GET /apisix/admin/plugins?all=true&subsystem=http``: every plugin's entry by name.
    Cached: never mutate it."""
    return {name: plugin_entry(cls) for name, cls in REGISTRY.items()}
