"""The service, global rule, consumer group and plugin metadata resources (APISIX
``schema_def``)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from llmgate.schemas.common import Host, Id, PluginsMap, Resource
from llmgate.schemas.upstream import UpstreamSpec


class Service(Resource):
    """A service stored under ``/apisix/services/{id}``: the upstream, plugins and hosts the
    routes naming it in ``service_id`` inherit."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    plugins: PluginsMap | None = None
    upstream: UpstreamSpec | None = None
    upstream_id: Id | None = None
    hosts: Annotated[list[Host], Field(min_length=1)] | None = None
    # Refused when true (runtime/routes.py), as on a route.
    enable_websocket: bool | None = None

    @model_validator(mode="after")
    def _unique_hosts(self) -> Service:
        if self.hosts is not None and len(set(self.hosts)) != len(self.hosts):
            raise ValueError('property "hosts" validation failed: expected unique items')
        return self


class GlobalRule(Resource):
    """A global rule stored under ``/apisix/global_rules/{id}``: plugins run on every
    request, before the route's."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    name: None = None  # APISIX's global rules have no metadata
    desc: None = None
    labels: None = None
    plugins: PluginsMap


class ConsumerGroup(Resource):
    """A consumer group stored under ``/apisix/consumer_groups/{id}``: plugins its consumers
    (``group_id``) inherit where they configure none of that name."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    plugins: PluginsMap


class PluginMetadata(BaseModel):
    """Plugin metadata stored under ``/apisix/plugin_metadata/{plugin}``.  Its fields are the
    plugin's own (``Plugin.MetadataConfig``, checked when the resource is compiled); this model
    lists every field some plugin's metadata has: cors's ``allow_origins``, the loggers'
    ``log_format`` and ``log_format_extra``."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    id: str
    create_time: int | None = None
    update_time: int | None = None
    allow_origins: dict[str, str] | None = None
    log_format: dict[str, Any] | None = None
    log_format_extra: dict[str, Any] | None = None
