"""limit-req: a leaky bucket of ``rate`` requests per second with ``burst`` extra queued."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from llmgate.plugins.base import Plugin
from llmgate.plugins.limit_count import RedisPolicyConfig, RejectedCode, RejectedMsg


class LimitReqConfig(RedisPolicyConfig):
    rate: Annotated[float, Field(gt=0)]
    burst: Annotated[float, Field(ge=0)]
    key: str
    key_type: Literal["var", "var_combination"] = "var"
    rejected_code: RejectedCode = 503
    rejected_msg: RejectedMsg | None = None
    nodelay: bool = False
    allow_degradation: bool = False


class LimitReq(Plugin):
    name = "limit-req"
    priority = 1001
    Config = LimitReqConfig
