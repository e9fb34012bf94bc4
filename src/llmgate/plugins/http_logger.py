"""http-logger: posts batches of request logs to an HTTP(S) endpoint.

The entry is APISIX's (see ``llmgate.observability.access_log``).  The log phase only queues it:
a long-lived batch processor per plugin config (in ``Services.shared``) sends the batches from
its own task, so a slow or dead collector costs dropped entries, never request latency.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated, Any, Literal

import aiohttp
import orjson
from pydantic import AfterValidator, Field
from yarl import URL

from llmgate.observability.access_log import AccessLog
from llmgate.observability.batch import BatchProcessor
from llmgate.plugin_api.access_logger import AccessLogger
from llmgate.plugin_api.config import Conditions, EnvOrPattern, PluginConfig, is_env_ref
from llmgate.schemas.upstream import split_host_port

if TYPE_CHECKING:
    from llmgate.http.context import RequestContext
    from llmgate.runtime.services import Services

# APISIX's uri_def: scheme://host or scheme://[ipv6], optional port, anything after; with ASCII
# digits only (Python's \d also matches "٣").
URI_PATTERN = r"^[^\/]+:\/\/([0-9a-zA-Z.-]+|\[[0-9a-fA-F:]+\])(:[0-9]+)?"


def _check_authority(uri: str) -> str:
    """The pattern lets anything follow the host, so ``http://h:٣/``, ``http://h:80x/`` or
    ``http://h٣/`` match it: the whole host and the port, if any, must be real ones, not what
    ``int()`` or yarl make of them.  And any scheme: APISIX posts plain HTTP to ``ftp://h``,
    llmgate sends over http and https only, so another is refused rather than never sent.
    (A ``$env://`` uri is checked so when its value is known: ``runtime/instances.py``.)"""
    if not is_env_ref(uri):
        scheme, _, rest = uri.partition("://")
        if scheme.lower() not in ("http", "https"):
            raise ValueError(f"unsupported scheme {scheme!r} in uri: expected http or https")
        authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
        host, _ = split_host_port(authority.rpartition("@")[2])
        if not re.fullmatch(r"[0-9a-zA-Z._~%!$&'()*+,;=-]+|\[[0-9a-fA-F:]+\]", host):
            raise ValueError(f"invalid host {host!r} in uri")
    return uri


class HttpLoggerConfig(PluginConfig):
    uri: Annotated[str, EnvOrPattern(URI_PATTERN), AfterValidator(_check_authority)]
    # Sent as the Authorization header of each batch.
    auth_header: str | None = None
    timeout: Annotated[int, Field(ge=1)] = 3
    log_format: dict[str, Any] | None = None
    log_format_extra: dict[str, Any] | None = None
    include_req_body: bool = False
    include_req_body_expr: Conditions | None = None
    include_resp_body: bool = False
    include_resp_body_expr: Conditions | None = None
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


class DeliveryError(Exception):
    """The collector answered with an error status."""


class HttpSink:
    """POSTs batches to the collector over one long-lived ``ClientSession``: a JSON array (one
    object when ``batch_max_size`` is 1) or, with ``concat_method: new_line``, one JSON object
    per line."""

    def __init__(self, config: HttpLoggerConfig) -> None:
        self.uri = config.uri
        parsed = URL(config.uri)
        self.target = f"{parsed.host}:{parsed.port}"  # for messages: never the path or query
        self.single = config.batch_max_size == 1
        self.new_line = config.concat_method == "new_line"
        self.headers = {"Content-Type": "text/plain" if self.new_line else "application/json"}
        if config.auth_header:
            self.headers["Authorization"] = config.auth_header
        self.timeout = aiohttp.ClientTimeout(total=config.timeout)
        self.ssl_verify = config.ssl_verify
        self._session: aiohttp.ClientSession | None = None

    def encode(self, entries: list[Any]) -> bytes:
        if self.single:
            return orjson.dumps(entries[0], default=str)
        if self.new_line:
            return b"\n".join(orjson.dumps(entry, default=str) for entry in entries)
        return orjson.dumps(entries, default=str)

    async def send(self, entries: list[Any]) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self.ssl_verify),
                timeout=self.timeout,
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        try:
            async with self._session.post(
                self.uri, data=self.encode(entries), headers=self.headers
            ) as resp:
                if resp.status >= 400:
                    body = (await resp.content.read(256)).decode("utf-8", "replace")
                    raise DeliveryError(
                        f"server returned status code[{resp.status}] host[{self.target}] "
                        f"body[{body}]"
                    )
        except aiohttp.ClientError as exc:
            raise DeliveryError(f"error while sending data to [{self.target}]: {exc}") from None
        except TimeoutError:
            raise DeliveryError(f"timed out sending data to [{self.target}]") from None

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()


def processor_for(services: Services, owner: str, config: HttpLoggerConfig) -> BatchProcessor:
    """The long-lived batch processor of this plugin config (kept across unrelated reloads)."""
    key = f"http-logger:{owner}:{config.uri}"
    return services.shared.get_or_make(
        key,
        BatchProcessor,
        lambda: BatchProcessor(
            HttpSink(config),
            name=config.name,
            batch_max_size=config.batch_max_size,
            inactive_timeout=config.inactive_timeout,
            buffer_duration=config.buffer_duration,
            max_retry_count=config.max_retry_count,
            retry_delay=config.retry_delay,
            close_timeout=config.timeout,
        ),
    )


class HttpLogger(AccessLogger[HttpLoggerConfig]):
    name = "http-logger"
    priority = 410
    Config = HttpLoggerConfig
    secret_fields = ("auth_header",)

    def __init__(self, config: HttpLoggerConfig, services: Services, owner: str = "") -> None:
        super().__init__(config, services, owner)
        assert isinstance(config, HttpLoggerConfig)
        self.access_log = AccessLog(config)
        self.processor = processor_for(services, owner, config)

    async def log(self, ctx: RequestContext) -> None:
        entry = await self.access_log.entry(ctx)
        if entry is not None:
            entry.setdefault("route_id", "no-matched")
            self.processor.push(entry)
