"""The paths and component schemas of one admin resource kind: from its declaration (the methods
it refuses, where its id lives) and its pydantic model (APISIX's shape, ``admin/json_schema.py``).
"""

from __future__ import annotations

from typing import Any

from llmgate.admin.json_schema import model_schema
from llmgate.admin.kind import ResourceKind
from llmgate.admin.openapi.objects import JSON, errors, json_content, path_param, query_param, ref

LIST_QUERY = [
    query_param("page", "Page number (with page_size; below 1 is 1)", type="integer"),
    query_param("page_size", "Items per page, 10-500 (with page)", type="integer"),
    query_param("name", "RE2 pattern the name must match"),
    query_param("label", "A label key the item must have"),
    query_param("uri", "RE2 pattern one of the item's uris must match"),
    query_param("filter", "URL-encoded field=value pairs (references)"),
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


def resource_components(kind: ResourceKind) -> dict[str, Any]:
    title = _title(kind)
    schema = model_schema(kind.model)
    components = {title: schema}
    shown = title
    if kind.unshown_fields:  # an answer may leave them out (a GET of an ssl: its key)
        shown = f"{title}Shown"
        required = [name for name in schema.get("required", ()) if name not in kind.unshown_fields]
        components[shown] = {**schema, "required": required}
    item = {
        "type": "object",
        "required": ["key", "value"],
        "properties": {
            "key": {"type": "string"},
            "value": ref(shown),
            "createdIndex": {"type": "integer"},
            "modifiedIndex": {"type": "integer"},
        },
    }
    listing = {
        "type": "object",
        "required": ["list", "total"],
        "properties": {
            "list": {"type": "array", "items": ref(f"{title}Item")},
            "total": {"type": "integer", "minimum": 0},
        },
    }
    return {**components, f"{title}Item": item, f"{title}List": listing}


def resource_paths(kind: ResourceKind) -> dict[str, Any]:
    """The collection and item paths of one resource kind."""
    title, tag = _title(kind), kind.name
    if kind.name == "credentials":
        collection = "/apisix/admin/consumers/{username}/credentials"
        params = [path_param("username", "The consumer")]
    else:
        collection = f"/apisix/admin/{kind.name}"
        params = []
    id_name = "username" if kind.id_field == "username" else "id"
    item_path = f"{collection}/{{{id_name}}}"
    item_params = [*params, path_param(id_name, f"The {kind.kind}'s {id_name}")]
    media: dict[str, Any] = {"schema": ref(title)}
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
    written = {**json_content(ref(f"{title}Item"), f"The {kind.kind} as stored"), "links": links}

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
        return {**responses, **errors(405)} if method in refused else responses

    coll: dict[str, Any] = {
        "get": op(
            f"list {kind.name}",
            {
                "200": json_content(ref(f"{title}List"), f"The {kind.name}"),
                **errors(400, 404),
            },
            parameters=[*params, *LIST_QUERY],
        ),
        "put": op(
            f"put {kind.kind} with {id_name} in body",
            refusable(
                "put",
                {"200": written, "201": written, **errors(400, 404)},
            ),
            requestBody=body,
            parameters=params,
        ),
    }
    if "post" in refused:
        coll["post"] = op(
            f"post {kind.kind} (refused)",
            errors(400, 404, 405),
            parameters=params,
        )
    else:
        coll["post"] = op(
            f"create {kind.kind}",
            {"201": written, **errors(400, 404)},
            requestBody=body,
            parameters=params,
        )
    item: dict[str, Any] = {
        "get": op(
            f"get {kind.kind}",
            {"200": written, **errors(400, 404)},
            parameters=item_params,
        ),
        "put": op(
            f"put {kind.kind}",
            refusable("put", {"200": written, "201": written, **errors(400, 404)}),
            requestBody=body,
            parameters=item_params,
        ),
        "patch": op(
            f"patch {kind.kind}",
            refusable("patch", {"200": written, **errors(400, 404)}),
            requestBody={"required": True, "content": {JSON: {"schema": {"type": "object"}}}},
            parameters=item_params,
            description="A JSON merge patch (RFC 7386) of the stored value; the result is "
            "validated as a PUT is.",
        ),
        "delete": op(
            f"delete {kind.kind}",
            refusable(
                "delete", {"200": json_content(ref("Deleted"), "Deleted"), **errors(400, 404)}
            ),
            parameters=[
                *item_params,
                query_param("force", "true: delete even when routes still refer to it"),
            ],
        ),
    }
    paths = {collection: coll, item_path: item}
    if "patch" not in refused:
        paths[f"{item_path}/{{path}}"] = {
            "patch": op(
                f"patch {kind.kind} path",
                {"200": written, **errors(400, 404)},
                requestBody={"required": True, "content": {JSON: {"schema": {}}}},
                parameters=[*item_params, path_param("path", "A field path (plugins/limit-count)")],
                description="Replace one field (a path of keys) with the body.",
            )
        }
    return paths
