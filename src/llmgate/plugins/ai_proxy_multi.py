"""ai-proxy-multi: balances requests over several LLM instances, with fallback."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from llmgate.plugins.ai_proxy import CallOptions, ProviderTarget
from llmgate.plugins.base import ConfigSection, Plugin, UniqueItems


class Balancer(ConfigSection):
    algorithm: Literal["chash", "roundrobin"] = "roundrobin"
    hash_on: Literal["vars", "header", "cookie", "consumer", "vars_combinations"] = "vars"
    # What chash hashes: a variable, header or cookie name, per hash_on.
    key: str | None = None


class HealthChecks(ConfigSection):
    # APISIX's upstream active health check object, kept as written.
    active: dict[str, Any]


class AIInstance(ProviderTarget):
    # Unique: it names the instance in the balancer, health checks and ai-rate-limiting.
    name: Annotated[str, Field(min_length=1, max_length=100)]
    # Higher priorities are tried first; weight balances within one priority.
    priority: int = 0
    weight: Annotated[int, Field(ge=0)]
    checks: HealthChecks | None = None


FallbackStrategy = (
    Literal["instance_health_and_rate_limiting", "http_429", "http_5xx"]
    | list[Literal["rate_limiting", "http_429", "http_5xx"]]
)


class AIProxyMultiConfig(CallOptions):
    balancer: Balancer = Balancer()
    instances: Annotated[list[AIInstance], Field(min_length=1)]
    fallback_strategy: FallbackStrategy | None = None
    # More statuses that move the request to the next instance, e.g. 401 for an expired key.
    fallback_http_statuses: (
        Annotated[list[Annotated[int, Field(ge=400, le=599)]], Field(min_length=1), UniqueItems()]
        | None
    ) = None
    max_retries: Annotated[int, Field(ge=0)] | None = None
    # Fall back only when the failed attempt took less than this; slower failures are returned.
    retry_on_failure_within_ms: Annotated[int, Field(ge=1)] | None = None

    @model_validator(mode="after")
    def _check(self) -> AIProxyMultiConfig:
        seen: dict[str, int] = {}
        for i, instance in enumerate(self.instances, start=1):
            if instance.name in seen:
                raise ValueError(
                    f"duplicate instance name '{instance.name}' at "
                    f"instances[{seen[instance.name]}] and instances[{i}]"
                )
            seen[instance.name] = i
        balancer = self.balancer
        if balancer.algorithm == "chash" and balancer.hash_on != "consumer" and not balancer.key:
            raise ValueError(
                "must configure `balancer.key` when balancer `hash_on` is not consumer"
            )
        return self


class AIProxyMulti(Plugin):
    name = "ai-proxy-multi"
    priority = 1041
    Config = AIProxyMultiConfig
