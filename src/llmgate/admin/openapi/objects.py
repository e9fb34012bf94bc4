"""Builders of the OpenAPI objects every path uses: references, JSON and text media, parameters,
and the admin API's error responses (APISIX's JSON ``{"error_msg": ...}``; every operation can
answer 401 and 503)."""

from __future__ import annotations

from typing import Any

JSON = "application/json"


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def json_content(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def text_content(description: str, const: str | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    if const is not None:
        schema["const"] = const
    return {"description": description, "content": {"text/plain": {"schema": schema}}}


def errors(*statuses: int) -> dict[str, Any]:
    reasons = {
        400: "Invalid request: the message says what and where",
        401: "Missing or wrong admin key, or a viewer key on a write",
        404: "No such item, resource type or plugin",
        405: "Method not supported for this resource",
        503: "The store cannot be reached",
    }
    return {str(s): json_content(ref("Error"), reasons[s]) for s in (*statuses, 401, 503)}


def query_param(name: str, description: str, **schema: Any) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema or {"type": "string"},
    }


def path_param(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": {"type": "string", "minLength": 1, "maxLength": 256},
    }
