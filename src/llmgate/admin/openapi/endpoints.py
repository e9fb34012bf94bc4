"""The paths of the admin endpoints that are not resources: plugins, schemas, validation, usage
and this document."""

from __future__ import annotations

from typing import Any

from llmgate.admin.openapi.objects import (
    JSON,
    errors,
    json_content,
    path_param,
    query_param,
    ref,
    text_content,
)

SUBSYSTEM = query_param("subsystem", "http (the default) or stream")


def plugin_paths() -> dict[str, Any]:
    plugin_query = [
        SUBSYSTEM,
        query_param("schema_type", "consumer or metadata: that schema instead of the config's"),
        query_param("all", "true: every plugin, as GET /apisix/admin/plugins?all=true"),
    ]
    schema_answer = json_content(
        {"type": "object"}, "A JSON schema (draft-07), or with all=true every plugin"
    )
    one = {
        "get": {
            "tags": ["plugins"],
            "summary": "a plugin's JSON schema",
            "parameters": [path_param("name", "The plugin"), *plugin_query],
            "responses": {"200": schema_answer, **errors(400, 404)},
        }
    }
    every = {
        "get": {
            "tags": ["plugins"],
            "summary": "every plugin (all=true), in APISIX's shape",
            "parameters": plugin_query,
            "responses": {
                "200": json_content(
                    {"type": "object", "additionalProperties": ref("PluginEntry")},
                    "Each plugin by name",
                ),
                **errors(400, 404),
            },
        }
    }
    reload_refused = {
        method: {
            "tags": ["plugins"],
            "summary": f"reload plugins with {method.upper()} (refused)",
            "responses": errors(405),
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
                    "200": json_content({"type": "array", "items": {"type": "string"}}, "Names"),
                    "400": text_content("Unknown subsystem", "invalid subsystem passed"),
                    **errors(),
                },
            }
        },
        "/apisix/admin/plugins/reload": {
            "put": {
                "tags": ["plugins"],
                "summary": "reload plugins (a no-op: they are built in)",
                "responses": {"200": text_content("Done", "done"), **errors()},
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


def endpoint_paths() -> dict[str, Any]:
    time_range = [
        # Empty is the same as not given.
        query_param("from", "Unix seconds, included", type="string", pattern="^[0-9]*$"),
        query_param("to", "Unix seconds, included", type="string", pattern="^[0-9]*$"),
    ]
    filters = [query_param(name, f"Only this {name}") for name in ("consumer", "route", "model")]
    return {
        "/apisix/admin/schema/{name}": {
            "get": {
                "tags": ["schema"],
                "summary": "a resource's JSON schema (route, upstream, consumer...)",
                "parameters": [path_param("name", "The resource, singular")],
                "responses": {
                    "200": json_content({"type": "object"}, "A JSON schema"),
                    **errors(400),
                },
            }
        },
        "/apisix/admin/schema/validate/{resource}": {
            "post": {
                "tags": ["schema"],
                "summary": "check a config as a PUT would, writing nothing",
                "parameters": [path_param("resource", "The resource, plural (routes...)")],
                "requestBody": {"required": True, "content": {JSON: {"schema": {}}}},
                "responses": {
                    "200": {"description": "A PUT of this body would be accepted"},
                    **errors(400, 404),
                },
            }
        },
        "/apisix/admin/usage": {
            "get": {
                "tags": ["usage"],
                "summary": "requests, tokens and cost, grouped",
                "parameters": [
                    *filters,
                    query_param("cache", "hit or miss"),
                    *time_range,
                    query_param("group_by", "Comma-separated: consumer, route, model, day, cache"),
                ],
                "responses": {
                    "200": json_content(ref("UsageSummary"), "The summary"),
                    **errors(400),
                },
            }
        },
        "/apisix/admin/usage/calls": {
            "get": {
                "tags": ["usage"],
                "summary": "one record per LLM call, newest first",
                "parameters": [
                    query_param("request_id", "The X-Request-Id of the call"),
                    *filters,
                    *time_range,
                    query_param("limit", "1-1000 (100)", type="string", pattern=_LIMIT),
                ],
                "responses": {"200": json_content(ref("CallList"), "The calls"), **errors(400)},
            }
        },
        "/apisix/admin/openapi.json": {
            "get": {
                "tags": ["schema"],
                "summary": "this document",
                "responses": {"200": json_content({"type": "object"}, "OpenAPI 3.1"), **errors()},
            }
        },
    }
