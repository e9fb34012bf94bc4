"""proxy-cache: caches upstream responses in memory or on disk.

llmgate has exactly the two zones of APISIX's default configuration, one per strategy, and the
zone defaults to the strategy's own (APISIX defaults it to ``disk_cache_one`` whatever the
strategy).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from llmgate.plugins.base import Plugin, PluginConfig, UniqueItems

ZONE_OF_STRATEGY = {"disk": "disk_cache_one", "memory": "memory_cache"}

# A literal of two characters or more, or one ``$variable``.
CacheKeyPart = Annotated[str, Field(pattern=r"(^[^\$].+$|^\$[0-9a-zA-Z_]+$)")]
CacheKey = Annotated[list[CacheKeyPart], Field(min_length=1)]
Status = Annotated[int, Field(ge=200, le=599)]


class ProxyCacheConfig(PluginConfig):
    max_resp_body_size: Annotated[int, Field(ge=1)] = 67108864
    cache_strategy: Literal["disk", "memory"] = "disk"
    cache_zone: Annotated[str, Field(min_length=1, max_length=100)] = "disk_cache_one"
    cache_key: CacheKey = ["$host", "$request_uri"]
    cache_http_status: Annotated[list[Status], Field(min_length=1), UniqueItems()] = [200, 301, 404]
    cache_method: Annotated[
        list[Literal["GET", "POST", "HEAD"]], Field(min_length=1), UniqueItems()
    ] = ["GET", "HEAD"]
    hide_cache_headers: bool = False
    cache_control: bool = False
    cache_bypass: CacheKey | None = None
    no_cache: CacheKey | None = None
    cache_ttl: Annotated[int, Field(ge=1)] = 300
    consumer_isolation: bool = True
    cache_set_cookie: bool = False

    @model_validator(mode="before")
    @classmethod
    def _zone_follows_strategy(cls, data: Any) -> Any:
        if isinstance(data, dict) and "cache_zone" not in data:
            zone = ZONE_OF_STRATEGY.get(data.get("cache_strategy", "disk"))
            if zone is not None:
                return {**data, "cache_zone": zone}
        return data

    @model_validator(mode="after")
    def _check(self) -> ProxyCacheConfig:
        if "$request_method" in self.cache_key:
            raise ValueError("cache_key variable $request_method unsupported")
        if self.cache_zone not in ZONE_OF_STRATEGY.values():
            raise ValueError(f"cache_zone {self.cache_zone} not found")
        if self.cache_zone != ZONE_OF_STRATEGY[self.cache_strategy]:
            raise ValueError(
                f"invalid or empty cache_zone for cache_strategy: {self.cache_strategy}"
            )
        return self


class ProxyCache(Plugin):
    name = "proxy-cache"
    priority = 1085
    Config = ProxyCacheConfig
