"""http-logger: posts batches of request logs to an HTTP(S) endpoint."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from llmgate.plugins.base import EnvOrPattern, Plugin, PluginConfig

# APISIX's uri_def: scheme://host or scheme://[ipv6], optional port, anything after.
URI_PATTERN = r"^[^\/]+:\/\/([\da-zA-Z.-]+|\[[\da-fA-F:]+\])(:\d+)?"

# lua-resty-expr conditions: a list of [var, operator, value] rules.
Expr = Annotated[list[list[Any]], Field(min_length=1)]


class HttpLoggerConfig(PluginConfig):
    uri: Annotated[str, EnvOrPattern(URI_PATTERN)]
    # Sent as the Authorization header of each batch.
    auth_header: str | None = None
    timeout: Annotated[int, Field(ge=1)] = 3
    log_format: dict[str, Any] | None = None
    log_format_extra: dict[str, Any] | None = None
    include_req_body: bool = False
    include_req_body_expr: Expr | None = None
    include_resp_body: bool = False
    include_resp_body_expr: Expr | None = None
    max_req_body_bytes: Annotated[int, Field(ge=1)] = 524288
    max_resp_body_bytes: Annotated[int, Field(ge=1)] = 524288
    concat_method: Literal["json", "new_line"] = "json"
    ssl_verify: bool = False

    # APISIX's batch processor: a batch is sent when full, or buffer_duration seconds after its
    # first entry, or inactive_timeout seconds after its last.
    name: str = "http logger"
    max_retry_count: Annotated[int, Field(ge=0)] = 0
    retry_delay: Annotated[int, Field(ge=0)] = 1
    buffer_duration: Annotated[int, Field(ge=1)] = 60
    inactive_timeout: Annotated[int, Field(ge=1)] = 5
    batch_max_size: Annotated[int, Field(ge=1)] = 1000


class HttpLogger(Plugin):
    name = "http-logger"
    priority = 410
    Config = HttpLoggerConfig
