"""What file-logger and http-logger share: an ``AccessLog`` and the filters that feed it.

Each logger subclasses ``AccessLogger``, builds its ``access_log`` and its sink in
``__init__``, and implements ``log``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import ConfigDict, model_validator

from llmgate.observability.access_log import AccessLog, compile_format
from llmgate.plugin_api.config import ConfigSection
from llmgate.plugin_api.plugin import ConfigT, Plugin

if TYPE_CHECKING:
    from llmgate.http.context import Reply, RequestContext, ResponseHead

# Variables read from the client's connection: kept while it is open, so the entry of a client
# that left has them too (the default entry's ``url`` has ``$server_port``).
_SOCKET_VARIABLES = ("server_addr", "server_port", "remote_port")


class LoggerMetadata(ConfigSection):
    """A logger's plugin metadata: the ``log_format`` and ``log_format_extra`` of every
    instance whose own config has none (APISIX's ``log-util``)."""

    model_config = ConfigDict(extra="forbid")

    log_format: dict[str, Any] | None = None
    log_format_extra: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _compiles(self) -> LoggerMetadata:
        for spec in (self.log_format, self.log_format_extra):
            if spec:
                compile_format(spec)
        return self


class AccessLogger(Plugin[ConfigT]):
    access_log: AccessLog
    MetadataConfig = LoggerMetadata

    def use_metadata(self, metadata: ConfigSection) -> None:
        assert isinstance(metadata, LoggerMetadata)
        log, config = self.access_log, self.config
        if getattr(config, "log_format", None) is None and metadata.log_format:
            log.format = compile_format(metadata.log_format)
        if getattr(config, "log_format_extra", None) is None and metadata.log_format_extra:
            log.extra = compile_format(metadata.log_format_extra)

    def runs(self, phase: str) -> bool:
        # Only a logger keeping response bodies filters them: any body filter makes the
        # handler drop the response's Content-Length.
        if phase == "body_filter":
            return bool(self.access_log.include_resp_body)
        return super().runs(phase)

    async def rewrite(self, ctx: RequestContext) -> Reply | None:
        for name in _SOCKET_VARIABLES:
            ctx.var(name)
        return None

    def header_filter(self, ctx: RequestContext, head: ResponseHead) -> None:
        AccessLog.note_head(ctx, head)

    def body_filter(self, ctx: RequestContext, chunk: bytes, eof: bool) -> bytes:
        self.access_log.collect(ctx, chunk)
        return chunk
