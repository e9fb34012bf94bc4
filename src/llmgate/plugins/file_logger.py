"""file-logger: appends one JSON log line per request to a file.

The entry is APISIX's (see ``llmgate.observability.access_log``).  The request never waits on
the disk: entries go to a long-lived writer per file (in ``Services.shared``) whose background
task appends them in batches from a worker thread.
"""

from __future__ import annotations

import asyncio
import os
import threading
from typing import TYPE_CHECKING, Annotated, Any

import orjson
from pydantic import Field

from llmgate.observability.access_log import AccessLog
from llmgate.observability.batch import BatchProcessor
from llmgate.plugin_api.access_logger import AccessLogger
from llmgate.plugin_api.config import Condition, Conditions, PluginConfig

if TYPE_CHECKING:
    from llmgate.http.context import RequestContext
    from llmgate.runtime.services import Services


class FileLoggerConfig(PluginConfig):
    # Required: APISIX may take it from plugin metadata, which llmgate does not have.
    path: str
    log_format: dict[str, Any] | None = None
    log_format_extra: dict[str, Any] | None = None
    include_req_body: bool = False
    include_req_body_expr: Conditions | None = None
    include_resp_body: bool = False
    include_resp_body_expr: Conditions | None = None
    max_req_body_bytes: Annotated[int, Field(ge=1)] = 524288
    max_resp_body_bytes: Annotated[int, Field(ge=1)] = 524288
    # Log only the requests matching this condition.
    match: Annotated[list[Condition], Field(max_length=20)] | None = None


class FileSink:
    """Appends JSON lines to one file from a worker thread, one ``write`` per batch (so lines
    of several workers never interleave); reopens the file when it was moved away (rotated)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = None
        self._identity: tuple[int, int] | None = None
        self._lock = threading.Lock()  # a cancelled send's thread may still be writing

    async def send(self, entries: list[Any]) -> None:
        await asyncio.to_thread(self._write, entries)

    async def close(self) -> None:
        await asyncio.to_thread(self._close)

    def _write(self, entries: list[Any]) -> None:
        data = memoryview(b"".join(orjson.dumps(entry, default=str) + b"\n" for entry in entries))
        with self._lock:
            fd = self._open()
            while data:
                data = data[os.write(fd, data) :]

    def _open(self) -> int:
        if self._fd is not None:
            try:
                stat = os.stat(self.path)
            except FileNotFoundError:
                stat = None
            if stat is not None and (stat.st_dev, stat.st_ino) == self._identity:
                return self._fd
            self._close_fd()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        stat = os.fstat(fd)
        self._fd, self._identity = fd, (stat.st_dev, stat.st_ino)
        return fd

    def _close(self) -> None:
        with self._lock:
            self._close_fd()

    def _close_fd(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)


def writer_for(services: Services, path: str) -> BatchProcessor:
    """The long-lived writer of ``path``, shared by every route logging to it."""
    path = os.path.abspath(path)
    key = f"file-logger:{path}"
    return services.shared.get_or_make(
        key,
        BatchProcessor,
        lambda: BatchProcessor(
            FileSink(path),
            name=f"file-logger {path}",
            batch_max_size=1000,
            inactive_timeout=0,  # write what is queued as soon as the writer wakes
            max_retry_count=1,
            retry_delay=1,
            max_in_flight=1,  # one write at a time keeps the lines in order
        ),
    )


class FileLogger(AccessLogger[FileLoggerConfig]):
    name = "file-logger"
    priority = 399
    Config = FileLoggerConfig

    def __init__(self, config: FileLoggerConfig, services: Services, owner: str = "") -> None:
        super().__init__(config, services, owner)
        assert isinstance(config, FileLoggerConfig)
        self.access_log = AccessLog(config)
        self.writer = writer_for(services, config.path)

    async def log(self, ctx: RequestContext) -> None:
        entry = await self.access_log.entry(ctx)
        if entry is not None:
            self.writer.push(entry)
