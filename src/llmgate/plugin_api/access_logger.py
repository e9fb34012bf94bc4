"""What file-logger and http-logger share: an ``AccessLog`` and the filters that feed it.

Each logger subclasses ``AccessLogger``, builds its ``access_log`` and its sink in
``__init__``, and implements ``log``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from llmgate.observability.access_log import AccessLog
from llmgate.plugin_api.plugin import ConfigT, Plugin

if TYPE_CHECKING:
    from llmgate.http.context import RequestContext, ResponseHead


class AccessLogger(Plugin[ConfigT]):
    access_log: AccessLog

    def runs(self, phase: str) -> bool:
        # Only a logger keeping response bodies filters them: any body filter makes the
        # handler drop the response's Content-Length.
        if phase == "body_filter":
            return bool(self.access_log.include_resp_body)
        return super().runs(phase)

    def header_filter(self, ctx: RequestContext, head: ResponseHead) -> None:
        AccessLog.note_head(ctx, head)

    def body_filter(self, ctx: RequestContext, chunk: bytes, eof: bool) -> bytes:
        self.access_log.collect(ctx, chunk)
        return chunk
