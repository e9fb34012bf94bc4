"""``GET /apisix/admin/openapi.json``: an OpenAPI 3.1 document of the admin API.

Generated, never written by hand: every resource in ``admin.resources.RESOURCES`` gets its
paths from its declaration (the methods it refuses, where its id lives) and its body and value
schemas from its pydantic model (in APISIX's shape, ``admin/json_schema.py``); the other
endpoints (plugins, schemas, validation, usage) are declared below.  Every error is APISIX's
JSON ``{"error_msg": ...}`` (a missing key: ``{"message": "Key not found"}``), every operation
sits behind the admin key (``X-API-KEY`` or ``?api_key=``).
"""

from __future__ import annotations

import functools
from typing import Any

from llmgate.admin.json_schema import model_schema
from llmgate.admin.resource import ResourceKind
from llmgate.admin.resources import RESOURCES

VERSION = "3.1.0"
JSON = "application/json"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def _text(description: str, const: str | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    if const is not None:
        schema["const"] = const
    return {"description": description, "content": {"text/plain": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    reasons = {
        400: "Invalid request: the message says what and where",
        401: "Missing or wrong admin key, or a viewer key on a write",
        404: "No such item, resource type or plugin",
        405: "Method not supported for this resource",
        503: "The store cannot be reached",
    }
    return {str(s): _json(_ref("Error"), reasons[s]) for s in (*statuses, 401, 503)}


def _query(name: str, description: str, **schema: Any) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema or {"type": "string"},
    }


def _path(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": {"type": "string", "minLength": 1, "maxLength": 256},
    }


LIST_QUERY = [
    _query("page", "Page number (with page_size; below 1 is 1)", type="integer"),
    _query("page_size", "Items per page, 10-500 (with page)", type="integer"),
    _query("name", "RE2 pattern the name must match"),
    _query("label", "A label key the item must have"),
    _query("uri", "RE2 pattern one of the item's uris must match"),
    _query("filter", "URL-encoded field=value pairs (references)"),
]


# A valid body per resource (the examples testers send first, and readers copy).
_UPSTREAM = {"type": "roundrobin", "nodes": {"127.0.0.1:1980": 1}}
EXAMPLES: dict[str, dict[str, Any]] = {
    "routes": {"uri": "/v1/*", "upstream": _UPSTREAM, "plugins": {"key-auth": {}}},
    "upstreams": _UPSTREAM,
    "services": {"upstream": _UPSTREAM, "plugins": {"key-auth": {}}},
    "plugin_configs": {"plugins": {"limit-count": {"count": 10, "time_window": 60}}},
    "global_rules": {"plugins": {"prometheus": {}}},
    "consumer_groups": {"plugins": {"limit-count": {"count": 100, "time_window": 60}}},
    "consumers": {"username": "jack", "plugins": {"key-auth": {"key": "jack-example-key"}}},
    "credentials": {"plugins": {"key-auth": {"key": "jack-second-key"}}},
}


def _title(kind: ResourceKind) -> str:
    return "".join(part.capitalize() for part in kind.kind.split())


def _resource_components(kind: ResourceKind) -> dict[str, Any]:
    title = _title(kind)
    item = {
        "type": "object",
        "required": ["key", "value"],
        "properties": {
            "key": {"type": "string"},
            "value": _ref(title),
            "createdIndex": {"type": "integer"},
            "modifiedIndex": {"type": "integer"},
        },
    }
    listing = {
        "type": "object",
        "required": ["list", "total"],
        "properties": {
            "list": {"type": "array", "items": _ref(f"{title}Item")},
            "total": {"type": "integer", "minimum": 0},
        },
    }
    return {title: model_schema(kind.model), f"{title}Item": item, f"{title}List": listing}


def _resource_paths(kind: ResourceKind) -> dict[str, Any]:
    """The collection and item paths of one resource kind."""
    title, tag = _title(kind), kind.name
    if kind.name == "credentials":
        collection = "/apisix/admin/consumers/{username}/credentials"
        params = [_path("username", "The consumer")]
    else:
        collection = f"/apisix/admin/{kind.name}"
        params = []
    id_name = "username" if kind.id_field == "username" else "id"
    item_path = f"{collection}/{{{id_name}}}"
    item_params = [*params, _path(id_name, f"The {kind.kind}'s {id_name}")]
    media: dict[str, Any] = {"schema": _ref(title)}
    if kind.name in EXAMPLES:
        media["example"] = EXAMPLES[kind.name]
    body = {"required": True, "content": {JSON: media}}
    # What a write answers, with OpenAPI links from it to the operations on the item it wrote
    # (stateful testers follow them: create, then read, patch, delete).
    id_source = f"$response.body#/value/{id_name}"
    link_params = {id_name: id_source}
    if kind.name == "credentials":
        link_params["username"] = "$request.path.username"
    links = {
        verb: {"operationId": f"{verb}_{kind.kind.replace(' ', '_')}", "parameters": link_params}
        for verb in ("get", "put", "delete", "patch")
        if verb not in kind.unsupported
    }
    written = {**_json(_ref(f"{title}Item"), f"The {kind.kind} as stored"), "links": links}

    def op(summary: str, responses: dict[str, Any], **extra: Any) -> dict[str, Any]:
        return {
            "tags": [tag],
            "summary": summary,
            "operationId": f"{summary.replace(' ', '_')}",
            "responses": responses,
            **extra,
        }

    refused = {m for m in ("put", "post", "patch", "delete") if m in kind.unsupported}

    def refusable(method: str, responses: dict[str, Any]) -> dict[str, Any]:
        return {**responses, **_errors(405)} if method in refused else responses

    coll: dict[str, Any] = {
        "get": op(
            f"list {kind.name}",
            {
                "200": _json(_ref(f"{title}List"), f"The {kind.name}"),
                **_errors(400, 404),
            },
            parameters=[*params, *LIST_QUERY],
        ),
        "put": op(
            f"put {kind.kind} with {id_name} in body",
            refusable(
                "put",
                {"200": written, "201": written, **_errors(400, 404)},
            ),
            requestBody=body,
            parameters=params,
        ),
    }
    if "post" in refused:
        coll["post"] = op(
            f"post {kind.kind} (refused)",
            _errors(400, 404, 405),
            parameters=params,
        )
    else:
        coll["post"] = op(
            f"create {kind.kind}",
            {"201": written, **_errors(400, 404)},
            requestBody=body,
            parameters=params,
        )
    item: dict[str, Any] = {
        "get": op(
            f"get {kind.kind}",
            {"200": written, **_errors(400, 404)},
            parameters=item_params,
        ),
        "put": op(
            f"put {kind.kind}",
            refusable("put", {"200": written, "201": written, **_errors(400, 404)}),
            requestBody=body,
            parameters=item_params,
        ),
        "patch": op(
            f"patch {kind.kind}",
            refusable("patch", {"200": written, **_errors(400, 404)}),
            requestBody={"required": True, "content": {JSON: {"schema": {"type": "object"}}}},
            parameters=item_params,
            description="A JSON merge patch (RFC 7386) of the stored value; the result is "
            "validated as a PUT is.",
        ),
        "delete": op(
            f"delete {kind.kind}",
            refusable("delete", {"200": _json(_ref("Deleted"), "Deleted"), **_errors(400, 404)}),
            parameters=[
                *item_params,
                _query("force", "true: delete even when routes still refer to it"),
            ],
        ),
    }
    paths = {collection: coll, item_path: item}
    if "patch" not in refused:
        paths[f"{item_path}/{{path}}"] = {
            "patch": op(
                f"patch {kind.kind} path",
                {"200": written, **_errors(400, 404)},
                requestBody={"required": True, "content": {JSON: {"schema": {}}}},
                parameters=[*item_params, _path("path", "A field path (plugins/limit-count)")],
                description="Replace one field (a path of keys) with the body.",
            )
        }
    return paths


SUBSYSTEM = _query("subsystem", "http (the default) or stream")


def _plugin_paths() -> dict[str, Any]:
    plugin_query = [
        SUBSYSTEM,
        _query("schema_type", "consumer or metadata: that schema instead of the config's"),
        _query("all", "true: every plugin, as GET /apisix/admin/plugins?all=true"),
    ]
    schema_answer = _json(
        {"type": "object"}, "A JSON schema (draft-07), or with all=true every plugin"
    )
    one = {
        "get": {
            "tags": ["plugins"],
            "summary": "a plugin's JSON schema",
            "parameters": [_path("name", "The plugin"), *plugin_query],
            "responses": {"200": schema_answer, **_errors(400, 404)},
        }
    }
    every = {
        "get": {
            "tags": ["plugins"],
            "summary": "every plugin (all=true), in APISIX's shape",
            "parameters": plugin_query,
            "responses": {
                "200": _json(
                    {"type": "object", "additionalProperties": _ref("PluginEntry")},
                    "Each plugin by name",
                ),
                **_errors(400, 404),
            },
        }
    }
    reload_refused = {
        method: {
            "tags": ["plugins"],
            "summary": f"reload plugins with {method.upper()} (refused)",
            "responses": _errors(405),
        }
        for method in ("get", "post", "delete", "patch")
    }
    return {
        "/apisix/admin/plugins/list": {
            "get": {
                "tags": ["plugins"],
                "summary": "plugin names, highest priority first",
                "parameters": [SUBSYSTEM],
                "responses": {
                    "200": _json({"type": "array", "items": {"type": "string"}}, "Names"),
                    "400": _text("Unknown subsystem", "invalid subsystem passed"),
                    **_errors(),
                },
            }
        },
        "/apisix/admin/plugins/reload": {
            "put": {
                "tags": ["plugins"],
                "summary": "reload plugins (a no-op: they are built in)",
                "responses": {"200": _text("Done", "done"), **_errors()},
            },
            **reload_refused,
        },
        "/apisix/admin/plugins": every,
        "/apisix/admin/plugins/{name}": one,
        "/apisix/admin/schema/plugins": every,
        "/apisix/admin/schema/plugins/{name}": one,
    }


# 1-1000 in decimal digits, leading zeros allowed; empty is the same as not given.
_LIMIT = "^(0*([1-9][0-9]{0,2}|1000))?$"


def _other_paths() -> dict[str, Any]:
    time_range = [
        # Empty is the same as not given.
        _query("from", "Unix seconds, included", type="string", pattern="^[0-9]*$"),
        _query("to", "Unix seconds, included", type="string", pattern="^[0-9]*$"),
    ]
    filters = [_query(name, f"Only this {name}") for name in ("consumer", "route", "model")]
    return {
        "/apisix/admin/schema/{name}": {
            "get": {
                "tags": ["schema"],
                "summary": "a resource's JSON schema (route, upstream, consumer...)",
                "parameters": [_path("name", "The resource, singular")],
                "responses": {"200": _json({"type": "object"}, "A JSON schema"), **_errors(400)},
            }
        },
        "/apisix/admin/schema/validate/{resource}": {
            "post": {
                "tags": ["schema"],
                "summary": "check a config as a PUT would, writing nothing",
                "parameters": [_path("resource", "The resource, plural (routes...)")],
                "requestBody": {"required": True, "content": {JSON: {"schema": {}}}},
                "responses": {
                    "200": {"description": "A PUT of this body would be accepted"},
                    **_errors(400, 404),
                },
            }
        },
        "/apisix/admin/usage": {
            "get": {
                "tags": ["usage"],
                "summary": "requests, tokens and cost, grouped",
                "parameters": [
                    *filters,
                    _query("cache", "hit or miss"),
                    *time_range,
                    _query("group_by", "Comma-separated: consumer, route, model, day, cache"),
                ],
                "responses": {"200": _json(_ref("UsageSummary"), "The summary"), **_errors(400)},
            }
        },
        "/apisix/admin/usage/calls": {
            "get": {
                "tags": ["usage"],
                "summary": "one record per LLM call, newest first",
                "parameters": [
                    _query("request_id", "The X-Request-Id of the call"),
                    *filters,
                    *time_range,
                    _query("limit", "1-1000 (100)", type="string", pattern=_LIMIT),
                ],
                "responses": {"200": _json(_ref("CallList"), "The calls"), **_errors(400)},
            }
        },
        "/apisix/admin/openapi.json": {
            "get": {
                "tags": ["schema"],
                "summary": "this document",
                "responses": {"200": _json({"type": "object"}, "OpenAPI 3.1"), **_errors()},
            }
        },
    }


def _shared_components() -> dict[str, Any]:
    counts = {
        name: {"type": "integer"}
        for name in ("requests", "prompt_tokens", "completion_tokens", "total_tokens")
    }
    usage_row = {
        "type": "object",
        "properties": {
            **counts,
            "cost": {"type": ["number", "string", "null"]},
            "consumer": {"type": ["string", "null"]},
            "route": {"type": ["string", "null"]},
            "model": {"type": ["string", "null"]},
            "day": {"type": "string"},
            "cache": {"enum": ["hit", "miss"]},
        },
    }
    return {
        "Error": {
            "type": "object",
            "description": "APISIX's error body",
            "properties": {
                "error_msg": {"type": "string"},
                "message": {"type": "string"},
                "description": {"type": "string"},
            },
            "anyOf": [{"required": ["error_msg"]}, {"required": ["message"]}],
        },
        "Deleted": {
            "type": "object",
            "required": ["deleted", "key"],
            "properties": {"deleted": {"type": "string"}, "key": {"type": "string"}},
        },
        "PluginEntry": {
            "type": "object",
            "required": ["schema", "priority", "version"],
            "properties": {
                "schema": {"type": "object"},
                "consumer_schema": {"type": "object"},
                "metadata_schema": {"type": "object"},
                "priority": {"type": "integer"},
                "version": {"type": "number"},
                "type": {"type": "string"},
                "scope": {"type": "string"},
            },
        },
        "UsageSummary": {
            "type": "object",
            "required": ["from", "to", "total", "list"],
            "properties": {
                "from": {"type": ["integer", "null"]},
                "to": {"type": ["integer", "null"]},
                "total": usage_row,
                "list": {"type": "array", "items": usage_row},
            },
        },
        "CallList": {
            "type": "object",
            "required": ["list", "total"],
            "properties": {
                "list": {"type": "array", "items": {"type": "object"}},
                "total": {"type": "integer"},
            },
        },
    }


@functools.cache
def document() -> dict[str, Any]:
    """The OpenAPI 3.1 document (cached: never mutate it)."""
    schemas = _shared_components()
    paths: dict[str, Any] = {}
    for kind in RESOURCES.values():
        schemas.update(_resource_components(kind))
        paths.update(_resource_paths(kind))
    paths.update(_plugin_paths())
    paths.update(_other_paths())
    return {
        "openapi": VERSION,
        "info": {
            "title": "llmgate admin API",
            "version": "3",
            "description": "APISIX's Admin API (v3 envelopes) as llmgate serves it.",
        },
        "servers": [{"url": "/"}],
        "security": [{"header": []}, {"query": []}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "header": {"type": "apiKey", "in": "header", "name": "X-API-KEY"},
                "query": {"type": "apiKey", "in": "query", "name": "api_key"},
            },
        },
    }
