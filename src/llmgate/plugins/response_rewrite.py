"""response-rewrite: rewrites the client response's status, headers and body."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag, model_validator

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
HeaderMap = Annotated[dict[HeaderName, HeaderScalar], Field(min_length=1)]


class HeaderOperations(ConfigSection):
    """The ``{"add": […], "set": {…}, "remove": […]}`` form of ``headers``."""

    # Each entry is a whole header line, "Name: value".
    add: (
        Annotated[list[Annotated[str, EnvOrPattern(r"^[^:]+:[^:]*[^/]$")]], Field(min_length=1)]
        | None
    ) = None
    set: HeaderMap | None = None
    remove: Annotated[list[HeaderName], Field(min_length=1)] | None = None


def _headers_form(value: Any) -> str:
    # As APISIX's is_new_headers_conf: the operations form has an object or array under
    # add, set or remove; anything else is a flat map meaning "set".
    if isinstance(value, dict) and any(
        isinstance(value.get(op), dict | list) for op in ("add", "set", "remove")
    ):
        return "operations"
    return "map"


Headers = Annotated[
    Annotated[HeaderOperations, Tag("operations")] | Annotated[HeaderMap, Tag("map")],
    Discriminator(_headers_form),
]


def _is_base64(body: str | None) -> bool:
    if not body:
        return False
    try:
        base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


class BodyFilter(ConfigSection):
    """One regex substitution on the response body."""

    regex: Annotated[str, Field(min_length=1)]
    scope: Literal["once", "global"] = "once"
    replace: str
    # APISIX's PCRE option letters: "i" is case-insensitive; "j" and "o" are compile hints.
    options: str = "jo"


class ResponseRewriteConfig(PluginConfig):
    max_resp_body_size: Annotated[int, Field(ge=1)] = 67108864
    headers: Headers | None = None
    body: str | None = None
    body_base64: bool = False
    status_code: Annotated[int, Field(ge=200, le=598)] | None = None
    # A lua-resty-expr condition on variables; the rewrite applies only when it holds.
    vars: list[Any] | None = None
    filters: Annotated[list[BodyFilter], Field(min_length=1)] | None = None

    @model_validator(mode="after")
    def _check(self) -> ResponseRewriteConfig:
        if self.body is not None and self.filters is not None:
            raise ValueError("body and filters cannot be specified at the same time")
        if self.body_base64 and not is_env_ref(self.body) and not _is_base64(self.body):
            raise ValueError("invalid base64 content")
        for item in self.filters or []:
            err = regex_error(item.regex)
            if err is not None:
                raise ValueError(f'regex "{item.regex}" validation failed: {err}')
        return self


class ResponseRewrite(Plugin):
    name = "response-rewrite"
    priority = 899
    Config = ResponseRewriteConfig
