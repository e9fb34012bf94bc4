"""proxy-rewrite: rewrites the outbound upstream request's uri, host, method and headers."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Discriminator, Field, Tag, model_validator

from llmgate.plugins.base import (
    ConfigSection,
    EnvOrPattern,
    HeaderName,
    Plugin,
    PluginConfig,
    is_env_ref,
    regex_error,
)

HeaderScalar = str | int | float
# APISIX's validate_header_value: no control characters in a value.
HeaderValue = Annotated[str, Field(pattern=r"^[\x20-\x7e]*$")] | int | float
OneOrMore = Annotated[list[HeaderScalar], Field(min_length=1)]


class HeaderOperations(ConfigSection):
    """The ``{"set": …, "add": …, "remove": […]}`` form of ``headers``."""

    model_config = ConfigDict(extra="forbid")

    add: Annotated[dict[HeaderName, HeaderScalar | OneOrMore], Field(min_length=1)] | None = None
    set: Annotated[dict[HeaderName, HeaderScalar | OneOrMore], Field(min_length=1)] | None = None
    remove: Annotated[list[HeaderName], Field(min_length=1)] | None = None


# The older flat form, ``{"Name": "value"}``, means ``set``.
HeaderMap = Annotated[dict[HeaderName, HeaderValue], Field(min_length=1)]


def _headers_form(value: Any) -> str:
    # As APISIX's is_new_headers_conf: the operations form has an object or array under
    # add, set or remove; anything else is a flat map.
    if isinstance(value, dict) and any(
        isinstance(value.get(op), dict | list) for op in ("add", "set", "remove")
    ):
        return "operations"
    return "map"


Headers = Annotated[
    Annotated[HeaderOperations, Tag("operations")] | Annotated[HeaderMap, Tag("map")],
    Discriminator(_headers_form),
]

Method = Literal[
    "GET", "POST", "PUT", "HEAD", "DELETE", "OPTIONS", "MKCOL", "COPY", "MOVE", "PROPFIND",
    "LOCK", "UNLOCK", "PATCH", "TRACE",
]  # fmt: skip


class ProxyRewriteConfig(PluginConfig):
    uri: Annotated[str, Field(min_length=1, max_length=4096), EnvOrPattern(r"^\/.*")] | None = None
    method: Method | None = None
    # Pairs of (regex, replacement); the first pair that matches rewrites the uri.
    regex_uri: Annotated[list[str], Field(min_length=2)] | None = None
    host: Annotated[str, EnvOrPattern(r"^[0-9a-zA-Z-.]+(:\d{1,5})?$")] | None = None
    headers: Headers | None = None
    use_real_request_uri_unsafe: bool = False

    @model_validator(mode="before")
    @classmethod
    def _not_empty(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data:
            raise ValueError("expect object to have at least 1 properties")
        return data

    @model_validator(mode="after")
    def _check_regex_uri(self) -> ProxyRewriteConfig:
        if self.regex_uri is None:
            return self
        if len(self.regex_uri) % 2:
            raise ValueError("The length of regex_uri should be an even number")
        for pattern, replacement in zip(self.regex_uri[::2], self.regex_uri[1::2], strict=True):
            if is_env_ref(pattern):
                continue
            err = regex_error(pattern)
            if err is not None:
                raise ValueError(f"invalid regex_uri({pattern}, {replacement}): {err}")
        return self


class ProxyRewrite(Plugin):
    name = "proxy-rewrite"
    priority = 1008
    Config = ProxyRewriteConfig
