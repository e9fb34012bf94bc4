"""The plugin_config resource: a reusable set of plugins a route refers to."""

from __future__ import annotations

from pydantic import ConfigDict

from llmgate.schemas.common import PluginsMap, Resource


class PluginConfig(Resource):
    """A plugin config stored under ``/apisix/plugin_configs/{id}``."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    name: str | None = None  # APISIX allows any string here
    plugins: PluginsMap
