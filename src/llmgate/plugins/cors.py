"""cors: answers preflight requests and adds CORS headers to client responses."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from llmgate.plugins.base import EnvOrPattern, Plugin, PluginConfig, UniqueItems, regex_error

# "*", "**" (any origin, even with credentials), "null", or comma-separated scheme://host[:port].
ORIGINS_PATTERN = r"^(\*|\*\*|null|\w+://[^,]+(,\w+://[^,]+)*)$"

Origins = Annotated[str, EnvOrPattern(ORIGINS_PATTERN)]
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
        for pattern in (self.allow_origins_by_regex or []) + (
            self.timing_allow_origins_by_regex or []
        ):
            err = regex_error(pattern)
            if err is not None:
                raise ValueError(f"invalid regex {pattern!r}: {err}")
        return self


class Cors(Plugin):
    name = "cors"
    priority = 4000
    Config = CorsConfig
