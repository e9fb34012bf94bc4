"""request-id: gives every request an id, passed upstream and returned to the client."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from llmgate.plugins.base import ConfigSection, Plugin, PluginConfig

# APISIX's default alphabet, typo ("IGK") included, so ids look the same.
DEFAULT_CHAR_SET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIGKLMNOPQRSTUVWXYZ0123456789"


class RangeId(ConfigSection):
    """Options of the ``range_id`` algorithm: ``length`` characters drawn from ``char_set``."""

    length: Annotated[int, Field(ge=6)] = 16
    # At least 6 characters, so ids do not repeat too soon.
    char_set: Annotated[str, Field(min_length=6)] = DEFAULT_CHAR_SET


class RequestIdConfig(PluginConfig):
    header_name: str = "X-Request-Id"
    include_in_response: bool = True
    algorithm: Literal["uuid", "nanoid", "range_id", "ksuid", "uuidv7"] = "uuid"
    range_id: RangeId = RangeId()


class RequestId(Plugin):
    name = "request-id"
    priority = 12015
    Config = RequestIdConfig
