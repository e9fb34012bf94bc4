"""The component schemas shared by the paths: the error body, a deletion, a plugin entry and the
usage answers."""

from __future__ import annotations

from typing import Any


def shared_components() -> dict[str, Any]:
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
