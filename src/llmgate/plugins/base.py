"""The plugin contract.

A plugin is a class with three class attributes, ``name``, ``priority`` (APISIX's number: higher
runs first) and ``Config`` (the pydantic model of its configuration on a route, a plugin_config or
a consumer).  Auth plugins also declare ``ConsumerConfig``: the model of what a consumer or a
credential carries for them (a username and password, a key, ...), and set ``kind = "auth"``.

Models validate what an admin writes; the stored value is always the JSON the admin sent, never
the model's dump, so no defaults are ever written into the store.

At run time a plugin is instantiated once per config snapshot and route, with its validated
config and the long-lived ``Services``; it implements only the phases it needs:

    rewrite(ctx) -> Reply | None        auth, URI/header rewriting      (async)
    access(ctx) -> Reply | None         limits, restrictions, caches    (async)
    header_filter(ctx, head) -> None    status/headers to the client    (sync)
    body_filter(ctx, chunk, eof) -> bytes   each response chunk         (sync, never buffers
                                                                        unless it must)
    log(ctx) -> None                    after the response; never raises (async)

Returning a ``Reply`` (or raising an ``HttpError``) ends the request; header/body filters and
log still run on it.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

import orjson
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    model_validator,
)
from pydantic_core import CoreSchema, core_schema

from llmgate.errors import HttpError
from llmgate.http import regex
from llmgate.http.expr import Expr, ExprError
from llmgate.proxy.context import Reply

if TYPE_CHECKING:
    from llmgate.proxy.context import RequestContext, ResponseHead
    from llmgate.runtime.services import Services
    from llmgate.runtime.snapshot import CredentialEntry

PluginKind = Literal["auth", "other"]

# A string holding this, alone or after a literal prefix, is resolved when the snapshot is
# compiled; checks that depend on a string's value skip it at write time.
ENV_REF = "$env://"

HttpMethod = Literal[
    "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "CONNECT", "TRACE", "PURGE"
]

# A header field name as APISIX's validate_header_field checks it: visible ASCII, no colon.
HeaderName = Annotated[str, Field(pattern=r"^[!-9;-~]+$")]

# APISIX's realm schema (basic-auth, key-auth): printable ASCII without '"' and '\\'.
Realm = Annotated[
    str, Field(min_length=1, max_length=128, pattern=r"^[\x20\x21\x23-\x5b\x5d-\x7e]+$")
]


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


class Plugin:
    """Base of every plugin: a declaration, plus the phase methods it needs."""

    name: ClassVar[str]
    priority: ClassVar[int]
    Config: ClassVar[type[PluginConfig]]
    ConsumerConfig: ClassVar[type[PluginConfig] | None] = None
    kind: ClassVar[PluginKind] = "other"
    # Dotted paths of config fields holding secrets (APISIX's encrypt_fields): masked for the
    # admin API's viewer role (admin/masking.py).
    secret_fields: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: PluginConfig, services: Services, owner: str = "") -> None:
        self.config = config
        self.services = services
        # Who configured this instance and with what: "route/1#<digest of its config>".  Keys
        # of long-lived state (counters) start with it, so they survive unrelated reloads.
        self.owner = owner

    async def rewrite(self, ctx: RequestContext) -> Reply | None:
        return None

    async def access(self, ctx: RequestContext) -> Reply | None:
        return None

    def header_filter(self, ctx: RequestContext, head: ResponseHead) -> None:
        return None

    def body_filter(self, ctx: RequestContext, chunk: bytes, eof: bool) -> bytes:
        return chunk

    async def log(self, ctx: RequestContext) -> None:
        return None

    @classmethod
    def build_index(cls, credentials: list[CredentialEntry]) -> Any:
        """Auth plugins: an index of the consumers' credentials, built once per snapshot."""
        return None

    def runs(self, phase: str) -> bool:
        """Whether this instance takes part in ``phase``; chains skip the others.  By default:
        the phases its class overrides.  A plugin whose phase depends on its config (a logger
        watching response bodies only with ``include_resp_body``) narrows this."""
        return getattr(type(self), phase) is not getattr(Plugin, phase)

    @classmethod
    def json_schema(cls, consumer: bool = False) -> dict[str, Any] | None:
        """The JSON schema served by ``GET /apisix/admin/plugins/{name}``.

        ``consumer=True`` gives the schema of what a consumer carries (``?schema_type=consumer``),
        ``None`` when the plugin has no consumer schema.
        """
        model = cls.ConsumerConfig if consumer else cls.Config
        return model.model_json_schema(by_alias=True) if model is not None else None


def headers_form(value: Any) -> str:
    """Which form a ``headers`` config has, as APISIX's ``is_new_headers_conf`` decides:
    "operations" when an object or array sits under add, set or remove, else a flat "map"
    (meaning set).  The discriminator of proxy-rewrite's and response-rewrite's ``headers``."""
    if isinstance(value, dict) and any(
        isinstance(value.get(op), dict | list) for op in ("add", "set", "remove")
    ):
        return "operations"
    return "map"


class MetaPlugin(Plugin):
    """A plugin whose ``_meta`` has a ``filter`` or an ``error_response``, wrapped so that the
    chain, the handler and the plugin itself need not know.

    ``filter`` is evaluated once per request, the first time one of the plugin's phases comes
    up (as APISIX caches it per request); while it does not hold, every phase of the plugin is
    skipped.  ``error_response`` replaces the body of a reply with a status of 400 or more that
    the plugin answers with (returned or raised), keeping its status and other headers.
    Attributes other than the phases are the wrapped plugin's.
    """

    def __init__(self, inner: Plugin, meta: Meta) -> None:
        super().__init__(inner.config, inner.services, inner.owner)
        self.inner = inner
        self._condition = Expr.compile(meta.filter) if meta.filter else None
        self._state_key = f"_meta.filter#{id(self)}"
        self._error: tuple[bytes, str] | None = None
        if isinstance(meta.error_response, str):
            self._error = (meta.error_response.encode(), "text/plain; charset=utf-8")
        elif meta.error_response is not None:
            self._error = (orjson.dumps(meta.error_response), "application/json")

    def __getattr__(self, name: str) -> Any:
        # Only reached for what this class lacks: the wrapped plugin's own attributes.
        inner = self.__dict__.get("inner")
        if inner is None:
            raise AttributeError(name)
        return getattr(inner, name)

    def runs(self, phase: str) -> bool:
        return self.inner.runs(phase)

    def _applies(self, ctx: RequestContext) -> bool:
        if self._condition is None:
            return True
        applies = ctx.state.get(self._state_key)
        if applies is None:
            applies = ctx.state[self._state_key] = self._condition.eval(ctx.var)
        return bool(applies)

    def _answer(self, reply: Reply | None) -> Reply | None:
        if reply is None or self._error is None or reply.status < 400:
            return reply
        body, content_type = self._error
        headers = reply.headers.copy()
        headers["Content-Type"] = content_type
        return Reply(reply.status, body, headers)

    async def _run(self, ctx: RequestContext, phase: Awaitable[Reply | None]) -> Reply | None:
        try:
            return self._answer(await phase)
        except HttpError as error:
            if self._error is None or error.status < 400:
                raise
            return self._answer(Reply.json(error.status, error.body))

    async def rewrite(self, ctx: RequestContext) -> Reply | None:
        if not self._applies(ctx):
            return None
        return await self._run(ctx, self.inner.rewrite(ctx))

    async def access(self, ctx: RequestContext) -> Reply | None:
        if not self._applies(ctx):
            return None
        return await self._run(ctx, self.inner.access(ctx))

    def header_filter(self, ctx: RequestContext, head: ResponseHead) -> None:
        if self._applies(ctx):
            self.inner.header_filter(ctx, head)

    def body_filter(self, ctx: RequestContext, chunk: bytes, eof: bool) -> bytes:
        return self.inner.body_filter(ctx, chunk, eof) if self._applies(ctx) else chunk

    async def log(self, ctx: RequestContext) -> None:
        if self._applies(ctx):
            await self.inner.log(ctx)


@functools.cache
def _meta_class(cls: type[Plugin]) -> type[MetaPlugin]:
    """A ``MetaPlugin`` subclass carrying ``cls``'s declaration (name, priority, kind...)."""
    declaration = {
        "name": cls.name,
        "priority": cls.priority,
        "Config": cls.Config,
        "ConsumerConfig": cls.ConsumerConfig,
        "kind": cls.kind,
    }
    return type(f"{cls.__name__}WithMeta", (MetaPlugin,), declaration)


def with_meta(plugin: Plugin) -> Plugin:
    """``plugin`` wrapped when its ``_meta`` has a ``filter`` or an ``error_response``."""
    meta = plugin.config.meta
    if meta is None or (not meta.filter and meta.error_response is None):
        return plugin
    return _meta_class(type(plugin))(plugin, meta)
