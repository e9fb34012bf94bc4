"""What every plugin's config model builds on: the bases, ``_meta`` and the field types.

A plugin's ``Config`` subclasses ``PluginConfig`` (which accepts APISIX's ``_meta`` block); the
objects inside it subclass ``ConfigSection``.  Models validate what an admin writes; the stored
value is always the JSON the admin sent, never the model's dump, so no defaults are ever
written into the store.

This module sits below ``ai/``, whose provider configs (shared by ai-proxy and ai-proxy-multi)
are built on it, and imports only ``http/`` primitives and ``schemas/``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    model_validator,
)
from pydantic_core import CoreSchema, core_schema

from llmgate.http import regex
from llmgate.http.expr import Expr, ExprError
from llmgate.schemas.envrefs import ENV_REF

HttpMethod = Literal[
    "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "CONNECT", "TRACE", "PURGE"
]

# A header field name as APISIX's validate_header_field checks it: visible ASCII, no colon.
HeaderName = Annotated[str, Field(pattern=r"^[!-9;-~]+$")]

# APISIX's realm schema (basic-auth, key-auth): printable ASCII without '"' and '\\'.
Realm = Annotated[
    str, Field(min_length=1, max_length=128, pattern=r"^[\x20\x21\x23-\x5b\x5d-\x7e]+$")
]


def _compiles(rule: list[Any]) -> list[Any]:
    try:
        Expr.compile(rule)
    except ExprError as exc:
        raise ValueError(f"failed to validate the expression: {exc}") from None
    return rule


# A lua-resty-expr condition (``[[var, op, value], ...]``, logic operators included) that
# compiles: checked when it is written, so a condition the data plane could not evaluate is a
# 400 naming the field rather than a condition that silently never holds.
Condition = Annotated[list[Any], AfterValidator(_compiles)]
# The same with at least one rule (APISIX's loggers' ``include_*_body_expr``).
Conditions = Annotated[list[list[Any]], Field(min_length=1), AfterValidator(_compiles)]


def is_env_ref(value: object) -> bool:
    """Whether ``value`` is a string carrying a ``$env://NAME`` reference."""
    return isinstance(value, str) and ENV_REF in value


def regex_error(pattern: str, options: str = "jo", *, binary: bool = False) -> str | None:
    """Why ``pattern`` (with ngx.re ``options``) is refused, or None when it compiles on an
    engine that bounds it (``llmgate.http.regex``)."""
    return regex.regex_error(pattern, options, binary=binary)


@dataclass(frozen=True)
class EnvOrPattern:
    """``Annotated[str, EnvOrPattern(regex)]``: the string must match ``regex`` (searched, as JSON
    schema does) unless it holds a ``$env://`` reference, whose value is not known yet."""

    pattern: str

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        compiled = regex.compile(self.pattern, captures=False)

        def check(value: str) -> str:
            if not is_env_ref(value) and not compiled.test(value):
                raise ValueError(f'failed to match pattern "{self.pattern}" with "{value}"')
            return value

        return core_schema.no_info_after_validator_function(check, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> dict[str, Any]:
        return {**handler(schema), "pattern": self.pattern}


@dataclass(frozen=True)
class UniqueItems:
    """``Annotated[list[...], UniqueItems()]``: JSON schema's ``uniqueItems``."""

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        def check(values: list[Any]) -> list[Any]:
            for i, value in enumerate(values):
                if value in values[:i]:
                    raise ValueError(f"expected unique items, {value!r} is repeated")
            return values

        return core_schema.no_info_after_validator_function(check, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> dict[str, Any]:
        return {**handler(schema), "uniqueItems": True}


class Meta(BaseModel):
    """APISIX's ``_meta`` block, accepted by every plugin (``MetaPlugin`` applies it).

    ``disable``: the plugin is not instantiated.  ``priority``: its place in the chain instead
    of the class's.  ``filter``: a lua-resty-expr condition; the plugin runs for a request only
    when it holds.  ``error_response``: the body of every error (status >= 400) the plugin
    answers with.  ``pre_function`` (Lua) is refused.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    disable: bool | None = None
    priority: int | None = None
    error_response: str | dict[str, Any] | None = None
    filter: list[Any] | None = None
    pre_function: str | None = None

    @model_validator(mode="after")
    def _check(self) -> Meta:
        if self.pre_function is not None:
            raise ValueError("pre_function is not supported: llmgate runs no Lua")
        if self.filter is not None:
            try:
                Expr.compile(self.filter)
            except ExprError as exc:
                raise ValueError(f"failed to validate the 'vars' expression: {exc}") from None
        return self


class ConfigSection(BaseModel):
    """Base of every object inside a plugin config (and of ``PluginConfig`` itself).

    Strict, because APISIX checks JSON schema types: ``"5"`` is not an integer and ``1`` is not a
    boolean.  Unknown fields are ignored, as APISIX's schemas allow them; an object whose APISIX
    schema sets ``additionalProperties = false`` overrides ``model_config`` with
    ``extra="forbid"``.
    """

    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)


class PluginConfig(ConfigSection):
    """Base of every plugin config model."""

    model_config = ConfigDict(populate_by_name=True)

    meta: Meta | None = Field(default=None, alias="_meta")


def headers_form(value: Any) -> str:
    """Which form a ``headers`` config has, as APISIX's ``is_new_headers_conf`` decides:
    "operations" when an object or array sits under add, set or remove, else a flat "map"
    (meaning set).  The discriminator of proxy-rewrite's and response-rewrite's ``headers``."""
    if isinstance(value, dict) and any(
        isinstance(value.get(op), dict | list) for op in ("add", "set", "remove")
    ):
        return "operations"
    return "map"
