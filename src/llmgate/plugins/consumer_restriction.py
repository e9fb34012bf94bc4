"""consumer-restriction: allows or rejects a request by consumer, route, service or group."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field, model_validator

from llmgate.http.context import Reply
from llmgate.plugin_api.config import ConfigSection, HttpMethod, PluginConfig
from llmgate.plugin_api.plugin import Plugin

if TYPE_CHECKING:
    from llmgate.http.context import RequestContext
    from llmgate.runtime.services import Services


class MethodsForUser(ConfigSection):
    """The methods one consumer may use."""

    user: str | None = None
    methods: Annotated[list[HttpMethod], Field(min_length=1)] | None = None


class ConsumerRestrictionConfig(PluginConfig):
    type: Literal["consumer_name", "service_id", "route_id", "consumer_group_id"] = "consumer_name"
    blacklist: Annotated[list[str], Field(min_length=1)] | None = None
    whitelist: Annotated[list[str], Field(min_length=1)] | None = None
    allowed_by_methods: list[MethodsForUser] | None = None
    rejected_code: Annotated[int, Field(ge=200)] = 403
    rejected_msg: str | None = None

    @model_validator(mode="after")
    def _needs_a_list(self) -> ConsumerRestrictionConfig:
        # APISIX: anyOf required blacklist / whitelist / allowed_by_methods.
        if self.blacklist is None and self.whitelist is None and self.allowed_by_methods is None:
            raise ValueError("one of blacklist, whitelist or allowed_by_methods is required")
        return self


# What each ``type`` restricts on.  ``service_id`` is unset on a route without a service, so
# such a restriction rejects every request there (401, as in APISIX).
_SUBJECTS: dict[str, Callable[[RequestContext], str | None]] = {
    "consumer_name": lambda ctx: ctx.consumer.username if ctx.consumer else None,
    "consumer_group_id": lambda ctx: ctx.consumer.group_id if ctx.consumer else None,
    "route_id": lambda ctx: ctx.route.id,
    "service_id": lambda ctx: ctx.route.service_id,
}


class ConsumerRestriction(Plugin[ConsumerRestrictionConfig]):
    """APISIX's rules: the blacklist rejects; outside a whitelist is rejected; a subject that is
    not whitelisted and has an ``allowed_by_methods`` entry (the first naming it) may only use
    that entry's methods."""

    name = "consumer-restriction"
    priority = 2400
    Config = ConsumerRestrictionConfig

    def __init__(
        self, config: ConsumerRestrictionConfig, services: Services, owner: str = ""
    ) -> None:
        super().__init__(config, services, owner)
        self._subject = _SUBJECTS[config.type]
        self._blacklist = frozenset(config.blacklist or ())
        self._whitelist = frozenset(config.whitelist) if config.whitelist else None
        self._methods: dict[str, frozenset[str]] = {}
        for entry in config.allowed_by_methods or ():
            if entry.user is not None:
                # An entry without methods allows none (APISIX fails on it with a 500).
                self._methods.setdefault(entry.user, frozenset(entry.methods or ()))
        self._unidentified = Reply.message(
            401, f"The request is rejected, please check the {config.type} for this request"
        )
        self._rejected = Reply.message(
            config.rejected_code,
            config.rejected_msg
            if config.rejected_msg is not None
            else f"The {config.type} is forbidden.",
        )

    async def access(self, ctx: RequestContext) -> Reply | None:
        value = self._subject(ctx)
        if value is None:
            return self._unidentified
        if value in self._blacklist:
            return self._rejected
        if self._whitelist is not None:
            if value in self._whitelist:
                return None
            return self._rejected
        allowed = self._methods.get(value)
        if allowed is not None and ctx.outbound.method not in allowed:
            return self._rejected
        return None
