"""Checking a ``plugins`` map as the admin API receives it, with APISIX's messages."""

from __future__ import annotations

from typing import Any, Literal

import orjson
from pydantic import ValidationError

from llmgate.plugins import REGISTRY
from llmgate.schemas.envrefs import reserved
from llmgate.schemas.messages import describe

Scope = Literal["route", "consumer", "credential"]


def check_plugins(plugins: dict[str, Any], scope: Scope = "route") -> None:
    """Raise ``ValueError`` with APISIX's message if any plugin config is invalid.

    On a consumer or a credential, an auth plugin is checked against its consumer model.
    (That a credential holds only auth plugins is ``check_credential_plugins``, afterwards.)
    """
    for name, conf in plugins.items():
        if not isinstance(conf, dict):
            shown = orjson.dumps(conf).decode()
            raise ValueError(f"invalid plugin conf {shown} for plugin [{name}]")
        plugin = REGISTRY.get(name)
        if plugin is None:
            raise ValueError(f"unknown plugin [{name}]")
        refused = reserved(conf)
        if refused:
            raise ValueError(
                f"failed to check the configuration of plugin {name} err: $env://{refused[0]}:"
                " variables starting with LLMGATE_ are the gateway's own and cannot be read"
            )
        model = plugin.Config
        if scope != "route" and plugin.ConsumerConfig is not None:
            model = plugin.ConsumerConfig
        try:
            model.model_validate(conf)
        except ValidationError as exc:
            meta = conf.get("_meta")
            if isinstance(meta, dict) and meta.get("disable") is True:
                continue  # a disabled plugin never runs; APISIX accepts it anyway
            raise ValueError(
                f"failed to check the configuration of plugin {name} err: {describe(exc)}"
            ) from None


def check_credential_plugins(plugins: dict[str, Any]) -> None:
    """Raise ``ValueError`` if a credential's (already checked) ``plugins`` hold one that is not
    an auth plugin: APISIX's message, which it gives without a prefix."""
    for name in plugins:
        plugin = REGISTRY.get(name)
        if plugin is not None and plugin.kind != "auth":
            raise ValueError("only supports auth type plugins in consumer credential")
