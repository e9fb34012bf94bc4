"""The route resource (APISIX ``schema_def.route``)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import ConfigDict, Field, StringConstraints, model_validator

from llmgate.schemas.common import Host, HttpMethod, Id, PluginsMap, Resource, Status, Timeout
from llmgate.schemas.upstream import UpstreamSpec

Uri = Annotated[str, StringConstraints(min_length=1, max_length=4096)]
Method = HttpMethod


# ``Route._cross_checks`` as JSON Schema, as APISIX's route schema states it: what clients
# read from GET /apisix/admin/schema/route and openapi.json refuses what a write refuses.
_CROSS_CHECKS: dict[str, Any] = {
    "allOf": [
        {"oneOf": [{"required": ["uri"]}, {"required": ["uris"]}]},
        {"not": {"required": ["host", "hosts"]}},
        {"not": {"required": ["remote_addr", "remote_addrs"]}},
    ],
    "anyOf": [
        {"required": [field]}
        for field in ("plugins", "upstream", "upstream_id", "service_id", "plugin_config_id")
    ],
}


class Route(Resource):
    """A route stored under ``/apisix/routes/{id}``."""

    model_config = ConfigDict(
        extra="forbid", strict=True, frozen=True, json_schema_extra=_CROSS_CHECKS
    )

    uri: Uri | None = None
    uris: Annotated[list[str], Field(min_length=1)] | None = None
    priority: int = 0
    methods: list[Method] | None = None
    host: Host | None = None
    hosts: Annotated[list[Host], Field(min_length=1)] | None = None
    remote_addr: str | None = None
    remote_addrs: Annotated[list[str], Field(min_length=1)] | None = None
    timeout: Timeout | None = None
    vars: list[Any] | None = None
    # Lua: refused when the route is compiled (runtime/routes.py), with its own message.
    filter_func: str | None = None
    plugins: PluginsMap | None = None
    plugin_config_id: Id | None = None
    upstream: UpstreamSpec | None = None
    upstream_id: Id | None = None
    service_id: Id | None = None
    enable_websocket: bool | None = None
    status: Status = 1

    @model_validator(mode="after")
    def _cross_checks(self) -> Route:
        if self.uri is None and self.uris is None:
            # APISIX's text: its route schema's allOf[1] is oneOf(required uri, required uris).
            raise ValueError("allOf 1 failed: value should match only one schema, but matches none")
        if self.uri is not None and self.uris is not None:
            raise ValueError('exactly one of "uri" or "uris" is required')
        if self.host is not None and self.hosts is not None:
            raise ValueError("only one of host or hosts is allowed")
        if self.remote_addr is not None and self.remote_addrs is not None:
            raise ValueError("only one of remote_addr or remote_addrs is allowed")
        for field in ("uris", "methods", "hosts"):
            values = getattr(self, field)
            if values is not None and len(set(values)) != len(values):
                raise ValueError(f'property "{field}" validation failed: expected unique items')
        # APISIX wants plugins, an upstream or a service; a plugin_config is as good (llmgate).
        targets = (self.plugins, self.upstream, self.upstream_id, self.service_id)
        if all(t is None for t in targets) and self.plugin_config_id is None:
            raise ValueError(
                "a route needs one of plugins, upstream, upstream_id or plugin_config_id"
            )
        return self
