"""limit-conn: a cap on concurrent requests per key, ``burst`` more delayed."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from llmgate.plugins.base import ConfigSection, Plugin
from llmgate.plugins.limit_count import (
    DynamicCount,
    RedisPolicyConfig,
    RejectedCode,
    RejectedMsg,
    var_or_numeral,
)

# How many connections over ``conn`` are delayed rather than rejected; may be 0.
DynamicBurst = Annotated[int, Field(ge=0)] | Annotated[str, var_or_numeral(0)]


class LimitConnRule(ConfigSection):
    """One of several limits applied at once, each with its own key."""

    conn: DynamicCount
    burst: DynamicBurst
    key: str


class LimitConnConfig(RedisPolicyConfig):
    conn: DynamicCount | None = None
    burst: DynamicBurst | None = None
    default_conn_delay: Annotated[float, Field(gt=0)] | None = None
    only_use_default_delay: bool = False
    key: str | None = None
    key_type: Literal["var", "var_combination"] = "var"
    rejected_code: RejectedCode = 503
    rejected_msg: RejectedMsg | None = None
    allow_degradation: bool = False
    rules: list[LimitConnRule] | None = None
    # Only read with a Redis policy: how long a key's connection count outlives its last update.
    key_ttl: int = 3600

    @model_validator(mode="after")
    def _one_form(self) -> LimitConnConfig:
        # APISIX: oneOf {conn, burst, default_conn_delay, key} / {default_conn_delay, rules}.
        if self.default_conn_delay is None:
            raise ValueError('property "default_conn_delay" is required')
        single = self.conn is not None and self.burst is not None and self.key is not None
        if single and self.rules is not None:
            raise ValueError("conn/burst/key and rules cannot be specified at the same time")
        if not single and self.rules is None:
            raise ValueError("conn, burst and key are required unless rules is set")
        return self


class LimitConn(Plugin):
    name = "limit-conn"
    priority = 1003
    Config = LimitConnConfig
