"""The plugin contract.

A plugin is a class with three class attributes, ``name``, ``priority`` (APISIX's number: higher
runs first) and ``Config`` (the pydantic model of its configuration on a route, a plugin_config or
a consumer).  Auth plugins also declare ``ConsumerConfig``: the model of what a consumer or a
credential carries for them (a username and password, a key, ...), and set ``kind = "auth"``.

Config models build on ``plugin_api/config.py`` (``PluginConfig``, ``ConfigSection``, the field
types).

At run time a plugin is instantiated once per config snapshot and route, with its validated
config and the long-lived ``Services``; it implements only the phases it needs:

    rewrite(ctx) -> Reply | None        auth, URI/header rewriting      (async)
    access(ctx) -> Reply | None         limits, restrictions, caches    (async)
    before_proxy(ctx) -> Reply | None   after every plugin's access, right before the
                                        request goes upstream (APISIX's before_proxy: what
                                        nginx answers in the content phase, like a disk
                                        cache's HIT)                    (async)
    header_filter(ctx, head) -> None    status/headers to the client    (sync)
    body_filter(ctx, chunk, eof) -> bytes   each response chunk         (sync, never buffers
                                                                        unless it must)
    log(ctx) -> None                    after the response; never raises (async)

Returning a ``Reply`` (or raising an ``HttpError``) ends the request; header/body filters and
log still run on it.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Literal

import orjson
from typing_extensions import TypeVar

from llmgate.errors import HttpError
from llmgate.http.context import Reply, StateKey
from llmgate.http.expr import Expr
from llmgate.plugin_api.config import ConfigSection, Meta, PluginConfig

if TYPE_CHECKING:
    from llmgate.http.context import RequestContext, ResponseHead
    from llmgate.runtime.services import Services

PluginKind = Literal["auth", "other"]

# The type of a plugin's validated config (its ``Config``).  Covariant, so that a
# ``Plugin[LimitCountConfig]`` is a ``Plugin`` (``Plugin[PluginConfig]``, the default) where a
# chain holds plugins of every kind; a plugin never assigns its config after ``__init__``.
ConfigT = TypeVar("ConfigT", bound=PluginConfig, covariant=True, default=PluginConfig)


class Plugin(Generic[ConfigT]):
    """Base of every plugin: a declaration, plus the phase methods it needs.

    A plugin subclasses ``Plugin[ItsConfig]`` and declares ``Config = ItsConfig``: then
    ``self.config`` is an ``ItsConfig`` (the class attribute is what the admin validates with;
    a ``ClassVar`` cannot name the type variable, so the two are written once each)."""

    name: ClassVar[str]
    priority: ClassVar[int]
    Config: ClassVar[type[PluginConfig]]
    ConsumerConfig: ClassVar[type[PluginConfig] | None] = None
    kind: ClassVar[PluginKind] = "other"
    # The model of its plugin metadata (``/apisix/admin/plugin_metadata/{name}``), when it has
    # one; the compiler hands each instance the current metadata (``use_metadata``).
    MetadataConfig: ClassVar[type[ConfigSection] | None] = None
    # Dotted paths of config fields holding secrets (APISIX's encrypt_fields): masked for the
    # admin API's viewer role (admin/masking.py).
    secret_fields: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: ConfigT, services: Services, owner: str = "") -> None:
        self.config: ConfigT = config
        self.services = services
        # Who configured this instance and with what: "route/1#<digest of its config>".  Keys
        # of long-lived state (counters) start with it, so they survive unrelated reloads.
        self.owner = owner

    def use_metadata(self, metadata: ConfigSection) -> None:
        """Take in the plugin's metadata (validated by ``MetadataConfig``), right after
        ``__init__``, when there is any; raise ``ValueError`` when it cannot be used."""
        return None

    async def rewrite(self, ctx: RequestContext) -> Reply | None:
        return None

    async def access(self, ctx: RequestContext) -> Reply | None:
        return None

    async def before_proxy(self, ctx: RequestContext) -> Reply | None:
        return None

    def header_filter(self, ctx: RequestContext, head: ResponseHead) -> None:
        return None

    def body_filter(self, ctx: RequestContext, chunk: bytes, eof: bool) -> bytes:
        return chunk

    async def log(self, ctx: RequestContext) -> None:
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
        self._applies_key: StateKey[bool] = StateKey("_meta.filter")
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
        applies = ctx.state.get(self._applies_key)
        if applies is None:
            applies = ctx.state[self._applies_key] = bool(self._condition.eval(ctx.var))
        return applies

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

    async def before_proxy(self, ctx: RequestContext) -> Reply | None:
        if not self._applies(ctx):
            return None
        return await self._run(ctx, self.inner.before_proxy(ctx))

    def header_filter(self, ctx: RequestContext, head: ResponseHead) -> None:
        if self._applies(ctx):
            self.inner.header_filter(ctx, head)

    def body_filter(self, ctx: RequestContext, chunk: bytes, eof: bool) -> bytes:
        return self.inner.body_filter(ctx, chunk, eof) if self._applies(ctx) else chunk

    async def log(self, ctx: RequestContext) -> None:
        if self._applies(ctx):
            await self.inner.log(ctx)


_META_CLASSES: dict[type[Plugin], type[MetaPlugin]] = {}


def _meta_class(cls: type[Plugin]) -> type[MetaPlugin]:
    """A ``MetaPlugin`` subclass carrying ``cls``'s declaration (name, priority, kind...)."""
    declaration = {
        "name": cls.name,
        "priority": cls.priority,
        "Config": cls.Config,
        "ConsumerConfig": cls.ConsumerConfig,
        "MetadataConfig": cls.MetadataConfig,
        "kind": cls.kind,
    }
    made = _META_CLASSES.get(cls)
    if made is None:
        made = _META_CLASSES[cls] = type(f"{cls.__name__}WithMeta", (MetaPlugin,), declaration)
    return made


def with_meta(plugin: Plugin) -> Plugin:
    """``plugin`` wrapped when its ``_meta`` has a ``filter`` or an ``error_response``."""
    meta = plugin.config.meta
    if meta is None or (not meta.filter and meta.error_response is None):
        return plugin
    return _meta_class(type(plugin))(plugin, meta)
