"""ai-rate-limiting: a budget of LLM tokens per time window, from each response's ``usage``."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from llmgate.plugins.base import ConfigSection, Plugin
from llmgate.plugins.limit_count import (
    DynamicCount,
    LimitCountRule,
    RedisPolicyConfig,
    RejectedCode,
    RejectedMsg,
)


class InstanceLimit(ConfigSection):
    """A budget for one ai-proxy-multi instance, by its name."""

    name: str
    limit: DynamicCount
    time_window: DynamicCount


class AIRateLimitingConfig(RedisPolicyConfig):
    limit: DynamicCount | None = None
    time_window: DynamicCount | None = None
    show_limit_quota_header: bool = True
    limit_strategy: Literal["total_tokens", "prompt_tokens", "completion_tokens"] = "total_tokens"
    instances: Annotated[list[InstanceLimit], Field(min_length=1)] | None = None
    rejected_code: RejectedCode = 503
    rejected_msg: RejectedMsg | None = None
    allow_degradation: bool = False
    rules: list[LimitCountRule] | None = None

    @model_validator(mode="after")
    def _one_form(self) -> AIRateLimitingConfig:
        # APISIX: limit and time_window go together; then oneOf {limit+time_window and/or
        # instances} / {rules}.
        if (self.limit is None) != (self.time_window is None):
            raise ValueError("limit and time_window must be specified together")
        budgets = self.limit is not None or self.instances is not None
        if budgets and self.rules is not None:
            raise ValueError("limit/time_window/instances and rules cannot be specified together")
        if not budgets and self.rules is None:
            raise ValueError("one of limit and time_window, instances or rules is required")
        return self


class AIRateLimiting(Plugin):
    name = "ai-rate-limiting"
    priority = 1030
    Config = AIRateLimitingConfig
