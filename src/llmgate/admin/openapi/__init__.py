"""``GET /apisix/admin/openapi.json``: an OpenAPI 3.1 document of the admin API.

Generated, never written by hand: every resource in ``admin.resources.RESOURCES`` gets its
paths and schemas from ``resources.py``; the other endpoints (plugins, schemas, validation,
usage) are declared in ``endpoints.py``, the schemas they share in ``components.py``.  Every
error is APISIX's JSON ``{"error_msg": ...}`` (a missing key: ``{"message": "Key not found"}``),
every operation sits behind the admin key (``X-API-KEY`` or ``?api_key=``).
"""

from __future__ import annotations

import functools
from typing import Any

from llmgate.admin.openapi.components import shared_components
from llmgate.admin.openapi.endpoints import endpoint_paths, plugin_paths
from llmgate.admin.openapi.resources import resource_components, resource_paths
from llmgate.admin.resources import RESOURCES

VERSION = "3.1.0"


@functools.cache
def document() -> dict[str, Any]:
    """The OpenAPI 3.1 document (cached: never mutate it)."""
    schemas = shared_components()
    paths: dict[str, Any] = {}
    for kind in RESOURCES.values():
        schemas.update(resource_components(kind))
        paths.update(resource_paths(kind))
    paths.update(plugin_paths())
    paths.update(endpoint_paths())
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
