"""request-id: gives every request an id, passed upstream and returned to the client.

An id the client sent in ``header_name`` is kept when it is a valid id (1-128 characters of
letters, digits and ``._~:/+=@-``); otherwise one is generated with ``algorithm`` and set on the
outbound request (APISIX keeps any non-empty value: llmgate does not let a client write
arbitrary bytes into logs and usage records).  The upstream gets that one id, whatever other
values of the header the client sent.  It is kept in ``ctx.request_id`` for
the loggers and the usage records, and returned in the response header unless the response
already carries one or ``include_in_response`` is false.

LLM routes (ai-proxy, ai-proxy-multi, openai-compatible) give every response an
``X-Request-Id`` even without this plugin (``llm_request_id``): the client's valid id, else a
UUID, set by their header filter, which runs on every response, the gateway's errors included.
"""

from __future__ import annotations

import os
import random
import re
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field

from llmgate.plugin_api.config import ConfigSection, HeaderName, PluginConfig
from llmgate.plugin_api.plugin import Plugin
from llmgate.runtime.snapshot import CHAIN

if TYPE_CHECKING:
    from llmgate.http.context import Reply, RequestContext, ResponseHead
    from llmgate.runtime.services import Services

HEADER = "X-Request-Id"
# What a client-chosen id may be: it lands in logs, usage records and support tickets.
VALID_ID = re.compile(r"[A-Za-z0-9._~:/+=@-]{1,128}")
# Where an LLM route keeps a provider's own request id, its X-Request-Id being the gateway's.
UPSTREAM_HEADER = "X-Upstream-Request-Id"

# APISIX's default alphabet, typo ("IGK") included, so ids look the same.
DEFAULT_CHAR_SET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIGKLMNOPQRSTUVWXYZ0123456789"


class RangeId(ConfigSection):
    """Options of the ``range_id`` algorithm: ``length`` characters drawn from ``char_set``."""

    length: Annotated[int, Field(ge=6)] = 16
    # At least 6 characters, so ids do not repeat too soon; visible ASCII, as an id is a header
    # value (a CR/LF broke responses, a space is trimmed by parsers).
    char_set: Annotated[str, Field(min_length=6, pattern=r"^[!-~]+$")] = DEFAULT_CHAR_SET


class RequestIdConfig(PluginConfig):
    header_name: HeaderName = "X-Request-Id"
    include_in_response: bool = True
    algorithm: Literal["uuid", "nanoid", "range_id", "ksuid", "uuidv7"] = "uuid"
    range_id: RangeId = RangeId()


# The standard nanoid alphabet: 64 characters, so 6 random bits pick one without bias.
NANOID_ALPHABET = "-_0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
NANOID_SIZE = 21
BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
KSUID_EPOCH = 1_400_000_000


def nanoid() -> str:
    return "".join(NANOID_ALPHABET[b & 63] for b in os.urandom(NANOID_SIZE))


def uuid_v7() -> str:
    """RFC 9562 version 7: 48 bits of Unix milliseconds, then random bits."""
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10))
    value = value & ~(0xF << 76) | 0x7 << 76  # version
    value = value & ~(0x3 << 62) | 0x2 << 62  # variant
    return str(uuid.UUID(int=value))


def ksuid() -> str:
    """Segment's KSUID: 4 bytes of seconds since 2014-05-13, 16 random bytes, in 27 base62."""
    value = int.from_bytes((int(time.time()) - KSUID_EPOCH).to_bytes(4) + os.urandom(16))
    digits = []
    while value:
        value, digit = divmod(value, 62)
        digits.append(BASE62[digit])
    return "".join(reversed(digits)).rjust(27, "0")


def _generator(config: RequestIdConfig) -> Callable[[], str]:
    if config.algorithm == "nanoid":
        return nanoid
    if config.algorithm == "uuidv7":
        return uuid_v7
    if config.algorithm == "ksuid":
        return ksuid
    if config.algorithm == "range_id":
        chars, length = config.range_id.char_set, config.range_id.length
        return lambda: "".join(random.choices(chars, k=length))
    return lambda: str(uuid.uuid4())


class RequestId(Plugin[RequestIdConfig]):
    name = "request-id"
    priority = 12015
    Config = RequestIdConfig

    def __init__(self, config: RequestIdConfig, services: Services, owner: str = "") -> None:
        super().__init__(config, services, owner)
        self._generate = _generator(config)

    async def rewrite(self, ctx: RequestContext) -> Reply | None:
        name = self.config.header_name
        request_id = ctx.inbound.headers.get(name)
        if request_id is None or VALID_ID.fullmatch(request_id) is None:
            request_id = self._generate()
        # One value upstream, the one kept (a client may send the header twice).
        ctx.outbound.headers[name] = request_id
        ctx.request_headers_changed(name)
        ctx.request_id = request_id
        return None

    def header_filter(self, ctx: RequestContext, head: ResponseHead) -> None:
        if not self.config.include_in_response:
            return
        request_id = ctx.request_id
        if request_id is not None and not head.headers.get(self.config.header_name):
            head.headers[self.config.header_name] = request_id


def client_id(ctx: RequestContext) -> str | None:
    """The client's own ``X-Request-Id`` when it is a valid id."""
    value = ctx.inbound.headers.get(HEADER)
    return value if value is not None and VALID_ID.fullmatch(value) is not None else None


def llm_request_id(ctx: RequestContext, head: ResponseHead) -> None:
    """An LLM route's header filter: every response carries ``X-Request-Id``, the id loggers
    and usage records see.  With request-id on the route, that plugin decides (its header, its
    ``include_in_response``).  Otherwise the id is the client's valid one, else a UUID; a
    provider's own X-Request-Id moves to ``X-Upstream-Request-Id``."""
    if any(plugin.name == RequestId.name for plugin in ctx.state[CHAIN].plugins):
        return
    request_id = ctx.request_id
    if request_id is None:
        request_id = ctx.request_id = client_id(ctx) or str(uuid.uuid4())
    headers = head.headers
    upstream = headers.get(HEADER)
    if upstream is not None and upstream != request_id:
        headers[UPSTREAM_HEADER] = upstream
    headers[HEADER] = request_id
