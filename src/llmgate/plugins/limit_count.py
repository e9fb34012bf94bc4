"""limit-count: a fixed number of requests per time window, per key.

``RedisPolicyConfig`` (APISIX's ``utils/redis-schema``) is shared with the other limiters whose
counters may live in Redis: limit-req, limit-conn and ai-rate-limiting.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator

from llmgate.plugins.base import ConfigSection, Plugin, PluginConfig

# APISIX's sync_interval default: every request is counted in Redis synchronously.
NO_DELAYED_SYNC = -1.0

RejectedCode = Annotated[int, Field(ge=200, le=599)]
RejectedMsg = Annotated[str, Field(min_length=1)]
ClusterNode = Annotated[str, Field(min_length=2, max_length=100)]


def var_or_numeral(minimum: int) -> AfterValidator:
    """Check a string given for a number: APISIX resolves its ``$variables`` per request and
    reads the result as an integer, so a string without one must already be a numeral (APISIX
    would accept ``"x"`` here and fail every request)."""

    def check(value: str) -> str:
        if "$" not in value and not (value.isdigit() and int(value) >= minimum):
            raise ValueError(f"must be an integer >= {minimum} or reference a $variable")
        return value

    return AfterValidator(check)


# A count, limit or time window: an integer, or a string resolved per request.
DynamicCount = Annotated[int, Field(gt=0)] | Annotated[str, var_or_numeral(1)]


class RedisPolicyConfig(PluginConfig):
    """Where counters live: this process (``local``), one Redis, or a Redis cluster."""

    policy: Literal["local", "redis", "redis-cluster"] = "local"
    redis_host: Annotated[str, Field(min_length=2)] | None = None
    redis_port: Annotated[int, Field(ge=1)] = 6379
    redis_username: Annotated[str, Field(min_length=1)] | None = None
    redis_password: str | None = None
    redis_database: Annotated[int, Field(ge=0)] = 0
    redis_timeout: Annotated[int, Field(ge=1)] = 1000
    redis_ssl: bool = False
    redis_ssl_verify: bool = False
    redis_keepalive_timeout: Annotated[int, Field(ge=1000)] = 10000
    redis_keepalive_pool: Annotated[int, Field(ge=1)] = 100
    redis_cluster_nodes: Annotated[list[ClusterNode], Field(min_length=1)] | None = None
    redis_cluster_name: str | None = None
    redis_cluster_ssl: bool = False
    redis_cluster_ssl_verify: bool = False

    @model_validator(mode="after")
    def _policy_needs_servers(self) -> RedisPolicyConfig:
        required = {
            "redis": ("redis_host",),
            "redis-cluster": ("redis_cluster_nodes", "redis_cluster_name"),
        }.get(self.policy, ())
        for field in required:
            if getattr(self, field) is None:
                raise ValueError(f'property "{field}" is required when policy is {self.policy}')
        return self


class LimitCountRule(ConfigSection):
    """One of several windows counted at once, each with its own key."""

    count: DynamicCount
    time_window: DynamicCount
    key: str
    header_prefix: str | None = None


class LimitCountConfig(RedisPolicyConfig):
    count: DynamicCount | None = None
    time_window: DynamicCount | None = None
    window_type: Literal["fixed", "sliding"] = "fixed"
    rules: list[LimitCountRule] | None = None
    group: str | None = None
    key: str = "remote_addr"
    key_type: Literal["var", "var_combination", "constant"] = "var"
    rejected_code: RejectedCode = 503
    rejected_msg: RejectedMsg | None = None
    allow_degradation: bool = False
    show_limit_quota_header: bool = True
    sync_interval: float = NO_DELAYED_SYNC

    @model_validator(mode="after")
    def _check(self) -> LimitCountConfig:
        if self.rules is not None:
            if self.count is not None or self.time_window is not None:
                raise ValueError("count/time_window and rules cannot be specified at the same time")
            if self.group is not None:
                raise ValueError("group and rules cannot be specified at the same time")
            seen: set[str] = set()
            for rule in self.rules:
                if rule.key in seen:
                    raise ValueError(f"duplicate key '{rule.key}' in rules")
                seen.add(rule.key)
        elif self.count is None or self.time_window is None:
            raise ValueError("count and time_window are required unless rules is set")

        if self.policy != "local" and self.sync_interval != NO_DELAYED_SYNC:
            if self.sync_interval < 0.1:
                raise ValueError("sync_interval should not be smaller than 0.1")
            if isinstance(self.time_window, int) and self.sync_interval >= self.time_window:
                raise ValueError("sync_interval should be smaller than time_window")
        return self


class LimitCount(Plugin):
    name = "limit-count"
    priority = 1002
    Config = LimitCountConfig
