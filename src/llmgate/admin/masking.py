"""What the viewer role is shown: stored values with their secrets masked.

Each plugin declares its secret fields (``Plugin.secret_fields``, APISIX's ``encrypt_fields``)
as dotted paths: ``auth.header`` masks every value of that object, ``instances.auth.query``
goes through each item of ``instances``.  A resource kind declares its own secret fields
(``ResourceKind.secret_fields``: an ssl's ``key``, an upstream's ``tls.client_key``), masked
whatever they hold: a sealed private key is still key material.  A masked value reads
``"***"``; an ``$env://`` reference (alone or after a word such as ``Bearer``) in a plugin's
secret field names a variable, not a secret, and is shown as written.  The admin role sees
stored values as they are.
"""

from __future__ import annotations

import re
from typing import Any

from llmgate.plugins import REGISTRY

MASK = "***"

_ENV_REFERENCE = re.compile(r"(?:[A-Za-z]+ +)?\$env://[A-Za-z_][A-Za-z0-9_]*")


def masked(value: dict[str, Any], fields: tuple[str, ...] = ()) -> dict[str, Any]:
    """``value`` (a stored resource) with its own secret ``fields`` (names, or dotted paths
    such as ``tls.client_key``) and the secret fields of its plugins masked; the same object
    when it has neither."""
    hidden = [name for name in fields if "." not in name and value.get(name) is not None]
    if hidden:
        value = {**value, **{name: MASK for name in hidden}}
    for path in fields:
        if "." in path:
            value = _mask_path(value, path.split("."))
    plugins = value.get("plugins")
    if not isinstance(plugins, dict):
        return value
    shown = {}
    for name, conf in plugins.items():
        plugin = REGISTRY.get(name)
        fields = plugin.secret_fields if plugin is not None else ()
        for path in fields:
            conf = _mask_path(conf, path.split("."))
        shown[name] = conf
    return {**value, "plugins": shown}


def _mask_path(node: Any, parts: list[str]) -> Any:
    if isinstance(node, list):
        return [_mask_path(item, parts) for item in node]
    if not parts:
        return _mask(node)
    if not isinstance(node, dict) or parts[0] not in node:
        return node
    return {**node, parts[0]: _mask_path(node[parts[0]], parts[1:])}


def _mask(node: Any) -> Any:
    if isinstance(node, dict):
        return {key: _mask(item) for key, item in node.items()}
    if isinstance(node, list):
        return [_mask(item) for item in node]
    if isinstance(node, str) and _ENV_REFERENCE.fullmatch(node):
        return node
    return None if node is None else MASK
