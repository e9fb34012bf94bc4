"""Validation errors read as APISIX's JSON-schema checker (api7/jsonschema) words them: the
texts below are those of APISIX's own tests (t/admin/*.t)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from llmgate.schemas import describe
from llmgate.schemas.consumer import Credential
from llmgate.schemas.route import Route
from llmgate.schemas.service import Service
from llmgate.schemas.upstream import UpstreamSpec

UP = {"type": "roundrobin", "nodes": {"127.0.0.1:80": 1}}
NODES = 'property "nodes" validation failed: object matches none of the required'


def message(model: Any, value: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as caught:
        model.model_validate(value)
    return describe(caught.value)


@pytest.mark.parametrize(
    ("model", "value", "expected"),
    [
        (
            Service,
            {"name": "a" * 257},
            'property "name" validation failed: string too long, expected at most 256, got 257',
        ),
        (
            Service,
            {"labels": {"env": ["production"]}},
            'property "labels" validation failed: failed to validate env (matching ".*"):'
            " wrong type: expected string, got table",
        ),
        (
            Service,
            {"labels": "x"},
            'property "labels" validation failed: wrong type: expected object, got string',
        ),
        (
            Service,
            {"id": [1]},
            'property "id" validation failed: object matches none of the required',
        ),
        (
            Route,
            {"uri": 1},
            'property "uri" validation failed: wrong type: expected string, got number',
        ),
        (
            Route,
            {"uri": "/a", "methods": ["GET", "invalid_method"]},
            'property "methods" validation failed: failed to validate item 2:'
            " matches none of the enum values",
        ),
        (
            Route,
            {"uri": "/a", "priority": "1"},
            'property "priority" validation failed: wrong type: expected integer, got string',
        ),
        (
            Route,
            {"uri": "/a", "hosts": []},
            'property "hosts" validation failed: expect array to have at least 1 items',
        ),
        (
            Route,
            {"uri": "/a", "upstream": {**UP, "timeout": {"connect": 0, "send": 1, "read": 1}}},
            'property "upstream" validation failed: property "timeout" validation failed:'
            ' property "connect" validation failed: expected 0 to be greater than 0',
        ),
        (
            Route,
            {"uri": "/a", "upstream": {**UP, "foo": 1}},
            'property "upstream" validation failed: additional properties forbidden, found foo',
        ),
        (
            Route,
            {"uri": "/a", "status": True},
            'property "status" validation failed: wrong type: expected integer, got boolean',
        ),
        (
            Route,
            {"uri": "/a", "status": 3},
            'property "status" validation failed: matches none of the enum values',
        ),
        (
            UpstreamSpec,
            {**UP, "checks": {"active": {"healthy": {"successes": 0}}}},
            'property "checks" validation failed: property "active" validation failed:'
            ' property "healthy" validation failed: property "successes" validation failed:'
            " expected 0 to be at least 1",
        ),
        (
            UpstreamSpec,
            {**UP, "checks": {"active": {"healthy": {"successes": 255}}}},
            'property "checks" validation failed: property "active" validation failed:'
            ' property "healthy" validation failed: property "successes" validation failed:'
            " expected 255 to be at most 254",
        ),
        (
            Credential,
            {"plugins": {"a": {}, "b": {}}},
            'property "plugins" validation failed: expect object to have at most 1 properties',
        ),
        # nodes: a map or a list (jsonschema's anyOf): any error inside is "none matched"
        # (t/admin/upstream-array-nodes.t).
        (UpstreamSpec, {"nodes": [{"host": "127.0.0.1", "port": 0, "weight": 1}]}, NODES),
        (UpstreamSpec, {"nodes": [{"host": "127.#.%.1", "port": 80, "weight": 1}]}, NODES),
        (UpstreamSpec, {"nodes": [{"host": "127.0.0.1", "port": 80, "weight": "1"}]}, NODES),
        (UpstreamSpec, {"nodes": {"127.0.0.1:8080": -100}}, NODES),
        (UpstreamSpec, {"nodes": "x"}, NODES),
        (
            Route,
            {"id": "a$b", "uri": "/a"},
            'property "id" validation failed: object matches none of the required',
        ),
    ],
)
def test_messages_are_apisix_s(model: Any, value: dict[str, Any], expected: str) -> None:
    assert message(model, value) == expected


def test_a_pattern_mismatch_quotes_as_lua_does() -> None:
    from llmgate.schemas.consumer import Consumer

    assert message(Consumer, {"username": 'a "b"'}) == (
        'property "username" validation failed: failed to match pattern'
        ' "^[a-zA-Z0-9_\\\\-]+$" with "a \\"b\\""'
    )
