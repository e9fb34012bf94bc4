"""file-logger: appends one JSON log line per request to a file."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from llmgate.plugins.base import Plugin, PluginConfig

# lua-resty-expr conditions: a list of [var, operator, value] rules.
Expr = Annotated[list[list[Any]], Field(min_length=1)]


class FileLoggerConfig(PluginConfig):
    # Required: APISIX may take it from plugin metadata, which llmgate does not have.
    path: str
    log_format: dict[str, Any] | None = None
    log_format_extra: dict[str, Any] | None = None
    include_req_body: bool = False
    include_req_body_expr: Expr | None = None
    include_resp_body: bool = False
    include_resp_body_expr: Expr | None = None
    max_req_body_bytes: Annotated[int, Field(ge=1)] = 524288
    max_resp_body_bytes: Annotated[int, Field(ge=1)] = 524288
    # Log only the requests matching this condition.
    match: Annotated[list[list[Any]], Field(max_length=20)] | None = None


class FileLogger(Plugin):
    name = "file-logger"
    priority = 399
    Config = FileLoggerConfig
