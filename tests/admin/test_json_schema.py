"""The schema generator (admin/json_schema.py): pydantic's output rewritten into APISIX's
draft-07 shape, checked on synthetic inputs and on every model the admin API serves."""

from __future__ import annotations

from typing import Any, Literal

import jsonschema
import pytest
from pydantic import BaseModel, ConfigDict, Field

from llmgate.admin import json_schema
from llmgate.admin.json_schema import apisix_shape, model_schema
from llmgate.admin.resources import RESOURCES
from llmgate.plugins import REGISTRY

# Every keyword draft-07 defines for validation and annotation.
DRAFT7 = frozenset(
    {
        "type", "enum", "const", "properties", "patternProperties", "additionalProperties",
        "required", "propertyNames", "minProperties", "maxProperties", "dependencies", "items",
        "additionalItems", "minItems", "maxItems", "uniqueItems", "contains", "minLength",
        "maxLength", "pattern", "format", "minimum", "maximum", "exclusiveMinimum",
        "exclusiveMaximum", "multipleOf", "allOf", "anyOf", "oneOf", "not", "if", "then",
        "else", "default", "description", "examples", "readOnly", "writeOnly", "$comment",
    }
)  # fmt: skip


def keywords(schema: Any) -> set[str]:
    """Every keyword used anywhere in ``schema`` (property names and values are not)."""
    found: set[str] = set()
    stack = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, dict):
            for key, value in node.items():
                found.add(key)
                if key in ("properties", "patternProperties") and isinstance(value, dict):
                    stack.extend(value.values())
                elif key not in ("default", "enum", "const", "examples", "required"):
                    stack.append(value)
    return found


def null_branches(schema: Any) -> int:
    text = repr(schema)
    return text.count("'type': 'null'")


class Inner(BaseModel):
    model_config = ConfigDict(extra="forbid")
    size: int = Field(default=1, ge=1, description="how many")


class Outer(BaseModel):
    title: str  # a property called "title" is data, not pydantic's title keyword
    inner: Inner | None = None
    inners: list[Inner] = []
    mode: Literal["a", "b"] = "a"
    either: int | str | None = None
    pair: tuple[int, str] | None = None


class Tree(BaseModel):
    value: int
    children: list[Tree] = []


def test_refs_inlined_nullable_collapsed_titles_dropped() -> None:
    shaped = apisix_shape(Outer.model_json_schema())
    assert "$defs" not in shaped and "$ref" not in repr(shaped)
    assert "title" in shaped["properties"] and "title" not in keywords(shaped)
    inner = shaped["properties"]["inner"]
    # Optional Inner: a plain object schema, no anyOf with null, no default null.
    assert inner["type"] == "object"
    assert inner["additionalProperties"] is False
    assert inner["properties"]["size"] == {
        "type": "integer",
        "minimum": 1,
        "default": 1,
        "description": "how many",
    }
    assert "default" not in inner
    assert shaped["properties"]["inners"]["items"]["type"] == "object"
    assert shaped["properties"]["mode"] == {"type": "string", "enum": ["a", "b"], "default": "a"}
    # A wider union keeps its anyOf, minus the null.
    assert shaped["properties"]["either"] == {"anyOf": [{"type": "integer"}, {"type": "string"}]}
    # 2020-12's prefixItems becomes draft-07's array of items.
    pair = shaped["properties"]["pair"]
    assert pair["items"] == [{"type": "integer"}, {"type": "string"}]
    assert "prefixItems" not in pair
    assert null_branches(shaped) == 0
    assert shaped["required"] == ["title"]


def test_a_recursive_model_is_cut_not_looped() -> None:
    schema = Tree.model_json_schema()
    assert schema["$ref"] == "#/$defs/Tree"  # pydantic puts a recursive root in $defs
    shaped = apisix_shape(schema)
    assert shaped["properties"]["value"] == {"type": "integer"}
    # The children refer to Tree again: cut at the second visit.
    assert shaped["properties"]["children"]["items"] == {"type": "object"}


def test_shaped_schemas_validate_as_the_model_does() -> None:
    shaped = apisix_shape(Outer.model_json_schema())
    validator = jsonschema.Draft7Validator(shaped)
    assert validator.is_valid({"title": "t", "inner": {"size": 2}, "pair": [1, "x"]})
    assert not validator.is_valid({"title": "t", "inner": {"size": 0}})
    assert not validator.is_valid({"title": "t", "inner": {"size": 1, "other": 1}})
    assert not validator.is_valid({"inner": {}})


def served_schemas() -> list[tuple[str, dict[str, Any]]]:
    found = [(f"resource {name}", model_schema(kind.model)) for name, kind in RESOURCES.items()]
    for name, entry in json_schema.all_plugins().items():
        for key in ("schema", "consumer_schema", "metadata_schema"):
            if key in entry:
                found.append((f"plugin {name} {key}", entry[key]))
    return found


@pytest.mark.parametrize(("where", "schema"), served_schemas(), ids=lambda v: str(v)[:40])
def test_every_served_schema_is_inline_draft7(where: str, schema: dict[str, Any]) -> None:
    jsonschema.Draft7Validator.check_schema(schema)
    unknown = keywords(schema) - DRAFT7
    assert not unknown, f"{where}: not draft-07 keywords: {sorted(unknown)}"
    assert null_branches(schema) == 0, where
    assert schema["type"] == "object"


def test_plugins_all_has_apisix_attributes() -> None:
    entries = json_schema.all_plugins()
    assert set(entries) == set(REGISTRY)
    for name, entry in entries.items():
        cls = REGISTRY[name]
        assert entry["priority"] == cls.priority
        assert "_meta" in entry["schema"]["properties"], name
        assert ("consumer_schema" in entry) == (cls.ConsumerConfig is not None)
        assert entry.get("type") == ("auth" if cls.kind == "auth" else None)
    assert set(entries["basic-auth"]["consumer_schema"]["required"]) >= {"username", "password"}


# Configs the admin API accepts (from the plugins' docs and the seed blog) are valid against the
# served schemas too: the Dashboard's editor would otherwise mark them as errors.
ACCEPTED = [
    ("limit-count", {"count": 2, "time_window": 60, "rejected_code": 429, "key_type": "var"}),
    ("key-auth", {}),
    ("basic-auth", {"hide_credentials": True}),
    ("proxy-rewrite", {"uri": "/x", "headers": {"set": {"X-A": "1"}}}),
    ("ai-proxy", {"provider": "openai", "auth": {"header": {"Authorization": "Bearer k"}}}),
    ("cors", {"allow_origins": "*", "_meta": {"disable": False, "priority": 3}}),
    ("prometheus", {}),
]


@pytest.mark.parametrize(("name", "conf"), ACCEPTED, ids=[n for n, _ in ACCEPTED])
def test_accepted_configs_are_valid_against_the_served_schema(name: str, conf: Any) -> None:
    REGISTRY[name].Config.model_validate(conf)
    jsonschema.Draft7Validator(json_schema.all_plugins()[name]["schema"]).validate(conf)


def test_resource_schemas_accept_what_a_write_accepts() -> None:
    route = {
        "uri": "/v1/*",
        "methods": ["POST"],
        "hosts": ["a.example"],
        "upstream": {"type": "roundrobin", "nodes": {"127.0.0.1:80": 1}},
        "plugins": {"key-auth": {}},
        "labels": {"owner": "mcp"},
    }
    jsonschema.Draft7Validator(model_schema(RESOURCES["routes"].model)).validate(route)
    bad = {**route, "unknown": 1}
    assert not jsonschema.Draft7Validator(model_schema(RESOURCES["routes"].model)).is_valid(bad)


# A route's cross-field rules, which APISIX's route schema states (allOf / anyOf): a client
# that validates against GET /apisix/admin/schema/route (or openapi.json) must refuse what a
# write refuses.
ROUTE_BODIES = [
    ({"uri": "/a", "plugins": {}}, True),
    ({"uris": ["/a"], "upstream_id": "u"}, True),
    ({"uri": "/a", "service_id": "s"}, True),
    ({"uri": "/a", "plugin_config_id": "p"}, True),
    ({"uri": "/a", "host": "a", "upstream_id": "u"}, True),
    ({"upstream_id": "u"}, False),  # neither uri nor uris
    ({"uri": "/a", "uris": ["/b"], "upstream_id": "u"}, False),
    ({"uri": "/a"}, False),  # nothing to send it to
    ({"uri": "/a", "host": "a", "hosts": ["b"], "upstream_id": "u"}, False),
    ({"uri": "/a", "remote_addr": "1.1.1.1", "remote_addrs": ["1.1.1.1"], "plugins": {}}, False),
]


@pytest.mark.parametrize(("body", "accepted"), ROUTE_BODIES, ids=lambda v: str(v)[:50])
def test_the_route_schema_states_the_cross_field_rules(
    body: dict[str, Any], accepted: bool
) -> None:
    assert_write_and_schema_agree("routes", body, accepted)


@pytest.mark.parametrize(
    ("names", "accepted"),
    [
        ({"sni": "a.test"}, True),
        ({"snis": ["a.test"]}, True),
        ({}, False),
        ({"sni": "a.test", "snis": ["b.test"]}, False),
        ({"type": "server"}, False),
        # A client certificate (an upstream's, for mutual TLS) needs no name.
        ({"type": "client"}, True),
        ({"type": "client", "sni": "a.test"}, True),
    ],
)
def test_the_ssl_schema_wants_sni_or_snis(names: dict[str, Any], accepted: bool) -> None:
    body = {"cert": "c" * 128, "key": "k" * 64, **names}
    assert_write_and_schema_agree("ssls", body, accepted)


def assert_write_and_schema_agree(kind: str, body: dict[str, Any], accepted: bool) -> None:
    """A write of ``body`` and the published JSON Schema both say ``accepted``."""
    model = RESOURCES[kind].model
    try:
        model.model_validate(body)
        written = True
    except ValueError:
        written = False
    assert written == accepted
    assert jsonschema.Draft7Validator(model_schema(model)).is_valid(body) == accepted
