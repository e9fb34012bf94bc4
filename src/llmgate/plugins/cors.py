"""cors: answers preflight requests and adds CORS headers to client responses.

As APISIX: every ``OPTIONS`` request on the route is answered by the gateway with an empty 200
(no upstream call), and every response (upstream's or a plugin's, preflight included) gets the
CORS headers when the request's ``Origin`` is allowed:

- ``allow_origins``: ``*`` (answers ``*``), ``**`` (echoes any Origin), one origin, or a comma
  list (echoes the Origin when listed); ``allow_origins_by_regex`` replaces it when set.
- ``Vary: Origin`` is added whenever ``allow_origins`` is not ``*``.
- ``allow_methods: **`` lists every method; ``allow_headers: **`` echoes the request's
  ``Access-Control-Request-Headers``.

``allow_origins_by_metadata`` names origin lists of the plugin metadata's ``allow_origins``
map (``/apisix/admin/plugin_metadata/cors``); a listed origin is echoed.  They are tried first;
``allow_origins`` decides when none allows the origin and it is not the default ``*``, as in
APISIX; ``allow_origins_by_regex`` always does (APISIX skips it beside the default ``*``).

Each ``*_by_regex`` pattern is compiled on its own (APISIX joins them with ``|``, so an inline
``(?i)`` in one leaks into the others) and runs on the bounded engine of
``llmgate.http.regex``; one that reaches its bound does not match.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Annotated

from pydantic import ConfigDict, Field, model_validator

from llmgate.http import regex
from llmgate.http.context import Reply
from llmgate.plugin_api.config import (
    ConfigSection,
    EnvOrPattern,
    PluginConfig,
    UniqueItems,
    regex_error,
)
from llmgate.plugin_api.plugin import Plugin

if TYPE_CHECKING:
    from llmgate.http.context import RequestContext, ResponseHead
    from llmgate.runtime.services import Services

log = logging.getLogger("llmgate.plugins.cors")

ALL_METHODS = "GET,POST,PUT,DELETE,PATCH,HEAD,OPTIONS,CONNECT,TRACE"

# "*", "**" (any origin, even with credentials), "null", or comma-separated scheme://host[:port].
ORIGINS_PATTERN = r"^(\*|\*\*|null|\w+://[^,]+(,\w+://[^,]+)*)$"

Origins = Annotated[str, EnvOrPattern(ORIGINS_PATTERN)]
HEADER_OPTIONS = (
    "allow_origins",
    "allow_methods",
    "allow_headers",
    "expose_headers",
    "timing_allow_origins",
)
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # a tab is legal in a header value
UniqueStrings = Annotated[
    list[Annotated[str, Field(min_length=1, max_length=4096)]], Field(min_length=1), UniqueItems()
]


class CorsConfig(PluginConfig):
    allow_origins: Origins = "*"
    allow_methods: str = "*"
    allow_headers: str = "*"
    expose_headers: str | None = None
    # Seconds a preflight answer may be cached; -1 disables caching.
    max_age: int = 5
    allow_credential: bool = False
    allow_origins_by_regex: UniqueStrings | None = None
    # Names of origin lists in plugin metadata.
    allow_origins_by_metadata: UniqueStrings | None = None
    timing_allow_origins: Origins | None = None
    timing_allow_origins_by_regex: UniqueStrings | None = None

    @model_validator(mode="after")
    def _check(self) -> CorsConfig:
        # Browsers ignore a wildcard in a credentialed response, so APISIX refuses the mix.
        options = (
            self.allow_origins,
            self.allow_methods,
            self.allow_headers,
            self.expose_headers,
            self.timing_allow_origins,
        )
        if self.allow_credential and "*" in options:
            raise ValueError("you can not set '*' for other option when 'allow_credential' is true")
        # Each is sent as (or compared with) a header value: a CR/LF made every response fail.
        for name in HEADER_OPTIONS:
            value = getattr(self, name)
            if isinstance(value, str) and _CONTROL.search(value):
                raise ValueError(f"{name}: control characters are not allowed in a header value")
        for pattern in (self.allow_origins_by_regex or []) + (
            self.timing_allow_origins_by_regex or []
        ):
            err = regex_error(pattern)
            if err is not None:
                raise ValueError(f"invalid regex {pattern!r}: {err}")
        return self


class CorsMetadata(ConfigSection):
    """cors's plugin metadata: named origin lists for ``allow_origins_by_metadata``."""

    model_config = ConfigDict(extra="forbid")

    allow_origins: dict[str, Annotated[str, Field(pattern=ORIGINS_PATTERN)]] | None = None


class OriginRule:
    """Which request origins an ``allow_origins``-style option (or its regexes) allows, and
    what ``*-Allow-Origin`` value answers them."""

    __slots__ = ("_echo", "_listed", "_regexes", "_value")

    def __init__(self, origins: str | None, regexes: list[str] | None = None) -> None:
        self._value: str | None = None  # a fixed answer: "*" or the one allowed origin
        self._listed: frozenset[str] = frozenset()  # allowed origins, echoed
        self._echo = False  # "**": echo any origin
        self._regexes: tuple[regex.Regex, ...] | None = None
        if regexes is not None:
            self._regexes = tuple(_compiled(regexes))
        elif origins == "**":
            self._echo = True
        elif origins is not None and "," in origins:
            self._listed = frozenset(part for part in origins.split(",") if part)
        else:
            self._value = origins

    def answer(self, origin: str | None) -> str | None:
        """The value to send for a request from ``origin``, None when it is not allowed."""
        if self._regexes is not None:
            return origin if origin and any(_matches(r, origin) for r in self._regexes) else None
        if self._echo:
            return origin or "*"
        if self._listed:
            return origin if origin in self._listed else None
        if self._value == "*" or (self._value is not None and self._value == origin):
            return self._value
        return None


def _compiled(patterns: list[str]) -> list[regex.Regex]:
    compiled = []
    for pattern in patterns:
        try:
            compiled.append(regex.compile(pattern, captures=False))
        except regex.RegexError as exc:
            # Refused at write time; only a value stored before that check can get here.
            log.warning("cors: origin regex %r never matches: %s", pattern, exc)
    return compiled


def _matches(pattern: regex.Regex, origin: str) -> bool:
    try:
        return pattern.test(origin)
    except regex.RegexLimit:
        return False


class Cors(Plugin[CorsConfig]):
    name = "cors"
    priority = 4000
    Config = CorsConfig
    MetadataConfig = CorsMetadata

    def __init__(self, config: CorsConfig, services: Services, owner: str = "") -> None:
        super().__init__(config, services, owner)
        # Without plugin metadata, allow_origins_by_metadata allows nothing; APISIX then falls
        # back to allow_origins only when it is not the default "*" (and so never to
        # allow_origins_by_regex beside that default: llmgate does, or the regexes do nothing).
        local = (
            config.allow_origins_by_metadata is None
            or config.allow_origins != "*"
            or config.allow_origins_by_regex is not None
        )
        self._origins = (
            OriginRule(config.allow_origins, config.allow_origins_by_regex) if local else None
        )
        self._timing = (
            OriginRule(config.timing_allow_origins, config.timing_allow_origins_by_regex)
            if config.timing_allow_origins is not None or config.timing_allow_origins_by_regex
            else None
        )
        # The metadata's origin lists named by allow_origins_by_metadata (use_metadata).
        self._by_metadata: tuple[OriginRule, ...] = ()
        self._vary = config.allow_origins != "*"
        self._methods = ALL_METHODS if config.allow_methods == "**" else config.allow_methods
        self._max_age = str(config.max_age)

    def use_metadata(self, metadata: ConfigSection) -> None:
        assert isinstance(metadata, CorsMetadata)
        lists = metadata.allow_origins or {}
        names = self.config.allow_origins_by_metadata or []
        self._by_metadata = tuple(OriginRule(lists[name]) for name in names if name in lists)

    def _allowed(self, origin: str | None) -> str | None:
        if origin:
            for rule in self._by_metadata:
                answer = rule.answer(origin)
                if answer == origin or answer == "*":
                    return origin  # APISIX echoes the origin a metadata list allows
        return self._origins.answer(origin) if self._origins is not None else None

    async def rewrite(self, ctx: RequestContext) -> Reply | None:
        if ctx.inbound.method == "OPTIONS":
            return Reply(200)
        return None

    def header_filter(self, ctx: RequestContext, head: ResponseHead) -> None:
        config = self.config
        origin = ctx.inbound.headers.get("Origin")
        headers = head.headers
        if self._vary:
            headers.add("Vary", "Origin")
        allowed = self._allowed(origin)
        if allowed is not None:
            headers["Access-Control-Allow-Origin"] = allowed
            headers["Access-Control-Allow-Methods"] = self._methods
            headers["Access-Control-Max-Age"] = self._max_age
            if config.expose_headers:
                headers["Access-Control-Expose-Headers"] = config.expose_headers
            if config.allow_headers == "**":
                asked = ctx.inbound.headers.get("Access-Control-Request-Headers")
                if asked is None:
                    headers.popall("Access-Control-Allow-Headers", None)
                else:
                    headers["Access-Control-Allow-Headers"] = asked
            else:
                headers["Access-Control-Allow-Headers"] = config.allow_headers
            if config.allow_credential:
                headers["Access-Control-Allow-Credentials"] = "true"
        if self._timing is not None:
            timing = self._timing.answer(origin)
            if timing is not None:
                headers["Timing-Allow-Origin"] = timing
