"""response-rewrite: rewrites the client response's status, headers and body.

When ``vars`` holds (evaluated on the response head, so ``status`` is the response's), the
header filter sets ``status_code`` and applies ``headers`` (add, set, remove; ``$var`` values);
with ``body`` the body is replaced, with ``filters`` it is buffered (up to
``max_resp_body_size``, beyond which it is truncated), decompressed when gzip or deflate, and
rewritten by each regex in turn (on the bounded engine of ``llmgate.http.regex``, with the
filter's ngx.re ``options``; a filter that reaches its bound leaves the body as it was).
Without ``body`` or ``filters`` the body streams through.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
import zlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag, model_validator

from llmgate.http import regex
from llmgate.http.context import StateKey
from llmgate.http.expr import Expr, ExprError
from llmgate.http.headers import escape_header_value
from llmgate.http.regex import Replacement, template_error
from llmgate.http.variables import Template
from llmgate.plugin_api.config import (
    ConfigSection,
    EnvOrPattern,
    HeaderName,
    PluginConfig,
    headers_form,
    is_env_ref,
    regex_error,
)
from llmgate.plugin_api.plugin import Plugin

if TYPE_CHECKING:
    from multidict import CIMultiDict

    from llmgate.http.context import RequestContext, ResponseHead
    from llmgate.runtime.services import Services

log = logging.getLogger("llmgate.plugins.response_rewrite")

HeaderScalar = str | int | float
HeaderMap = Annotated[dict[HeaderName, HeaderScalar], Field(min_length=1)]


# Each "Name: value" line of headers.add, as APISIX splits it.
_HEADER_LINE = re.compile(r"^([^:\s]+)\s*:\s*([^:]+)$")


class HeaderOperations(ConfigSection):
    """The ``{"add": […], "set": {…}, "remove": […]}`` form of ``headers``."""

    # Each entry is a whole header line, "Name: value".
    add: (
        Annotated[list[Annotated[str, EnvOrPattern(r"^[^:]+:[^:]*[^/]$")]], Field(min_length=1)]
        | None
    ) = None
    set: HeaderMap | None = None
    remove: Annotated[list[HeaderName], Field(min_length=1)] | None = None


Headers = Annotated[
    Annotated[HeaderOperations, Tag("operations")] | Annotated[HeaderMap, Tag("map")],
    Discriminator(headers_form),
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
    # ngx.re option letters (llmgate.http.regex): "i" is case-insensitive, "j" and "o" are
    # compile hints; unknown letters are refused.
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
        if isinstance(self.headers, HeaderOperations):
            for line in self.headers.add or ():
                # The schema's pattern lets "X A: b" through; APISIX's split then fails.
                if not is_env_ref(line) and _HEADER_LINE.match(line) is None:
                    raise ValueError(f'headers.add: "{line}" is not a "Name: value" line')
        for item in self.filters or []:
            err = regex_error(item.regex, item.options, binary=True)
            if err is not None:
                raise ValueError(f'regex "{item.regex}" validation failed: {err}')
            # APISIX finds a bad template only when a body passes, and then loses the body.
            err = None if is_env_ref(item.replace) else template_error(item.replace)
            if err is not None:
                raise ValueError(f'replace "{item.replace}" validation failed: {err}')
        if self.vars is not None:
            try:
                Expr.compile(self.vars)
            except ExprError as exc:
                raise ValueError(f"failed to validate the 'vars' expression: {exc}") from None
        return self


# Headers that describe the upstream's body, wrong once the body is rewritten.
BODY_HEADERS = ("Content-Length", "Content-Encoding", "ETag", "Last-Modified")


def _decoder(encoding: str | None) -> Any:
    """A zlib decompressor for a body in ``encoding``, None for identity; ``ValueError`` when
    llmgate cannot decode it."""
    encoding = (encoding or "identity").strip().lower()
    if encoding == "identity":
        return None
    if encoding in ("gzip", "x-gzip"):
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if encoding == "deflate":
        return zlib.decompressobj()
    raise ValueError(encoding)


@dataclass(slots=True)
class _Rewriting:
    """Per-request state between the header and body filters."""

    decoder: Any = None  # a zlib decompressor when the upstream compressed the body
    chunks: list[bytes] = field(default_factory=list)
    size: int = 0
    done: bool = False


def _text(value: HeaderScalar) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _render(template: Template, ctx: RequestContext, head: ResponseHead) -> str:
    # $status is the response's own, which ctx.var does not know before the headers are sent.
    return escape_header_value(template.expand(lambda name: _lookup(ctx, head, name)))


def _lookup(ctx: RequestContext, head: ResponseHead, name: str) -> str | None:
    return str(head.status) if name == "status" else ctx.var(name)


class ResponseRewrite(Plugin[ResponseRewriteConfig]):
    name = "response-rewrite"
    priority = 899
    Config = ResponseRewriteConfig

    def __init__(self, config: ResponseRewriteConfig, services: Services, owner: str = "") -> None:
        super().__init__(config, services, owner)
        self._condition = self._compile_condition(config.vars)
        self._body = self._compile_body(config)
        self._filters = tuple(
            (
                regex.compile(item.regex, item.options, binary=True),
                Replacement.compile_binary(item.replace),
                1 if item.scope == "once" else 0,
            )
            for item in config.filters or ()
        )
        headers = config.headers
        add: list[tuple[str, Template]] = []
        set_: dict[str, HeaderScalar] = {}
        remove: list[str] = []
        if isinstance(headers, HeaderOperations):
            for line in headers.add or ():
                match = _HEADER_LINE.match(line)
                if match is None:
                    log.warning("%s: ignoring header line %r", self.owner, line)
                else:
                    add.append((match.group(1), Template.compile(match.group(2))))
            set_, remove = headers.set or {}, headers.remove or []
        elif headers is not None:
            set_ = headers
        self._add = tuple(add)
        self._set = tuple((name, Template.compile(_text(value))) for name, value in set_.items())
        self._remove = tuple(remove)
        self._state_key: StateKey[_Rewriting] = StateKey(self.name)

    def _compile_condition(self, rule: list[Any] | None) -> Expr | None:
        if rule is None:
            return None
        try:
            return Expr.compile(rule)
        except ExprError as exc:
            # Refused at write time; only a value stored before that check can get here.
            log.warning("%s: vars %r never match: %s", self.owner, rule, exc)
            return Expr.never()

    def _compile_body(self, config: ResponseRewriteConfig) -> bytes | None:
        if config.body is None:
            return None
        if not config.body_base64:
            return config.body.encode()
        try:
            return base64.b64decode(config.body, validate=True)
        except (binascii.Error, ValueError):
            log.warning("%s: body is not base64; the response body will be empty", self.owner)
            return b""

    def header_filter(self, ctx: RequestContext, head: ResponseHead) -> None:
        if self._condition is not None and not self._condition.eval(
            lambda name: _lookup(ctx, head, name)
        ):
            return
        if self.config.status_code is not None:
            head.status = self.config.status_code
        headers = head.headers
        if self._body is not None or self._filters:
            self._start_body(ctx, headers)
        for name, template in self._add:
            headers.add(name, _render(template, ctx, head))
        for name, template in self._set:
            headers[name] = _render(template, ctx, head)
        for name in self._remove:
            headers.popall(name, None)

    def _start_body(self, ctx: RequestContext, headers: CIMultiDict[str]) -> None:
        state = _Rewriting()
        if self._filters:
            try:
                state.decoder = _decoder(headers.get("Content-Encoding"))
            except ValueError as exc:
                log.warning("%s: cannot filter a %s body; sent unchanged", self.owner, exc)
                return
        for name in BODY_HEADERS:
            headers.popall(name, None)
        ctx.state[self._state_key] = state

    def body_filter(self, ctx: RequestContext, chunk: bytes, eof: bool) -> bytes:
        state = ctx.state.get(self._state_key) if self._body is not None or self._filters else None
        if state is None:
            return chunk
        if state.done:
            return b""
        if self._body is not None:
            state.done = True
            return self._body
        limit = self.config.max_resp_body_size
        if state.decoder is not None:
            chunk = self._decode(state, chunk, eof, limit - state.size + 1)
        if chunk:
            state.chunks.append(chunk)
            state.size += len(chunk)
        if state.size < limit and not eof:
            return b""
        state.done = True
        body = b"".join(state.chunks)[:limit]
        state.chunks = []
        for pattern, replacement, count in self._filters:
            try:
                body = pattern.sub(body, replacement, count)
            except regex.RegexLimit:
                log.warning("%s: filter %r reached its bound; skipped", self.owner, pattern.pattern)
        return body

    def _decode(self, state: _Rewriting, chunk: bytes, eof: bool, room: int) -> bytes:
        # At most ``room`` bytes: one past the limit is enough to know the body is truncated.
        try:
            data: bytes = state.decoder.decompress(chunk, room)
            tail: bytes = state.decoder.flush() if eof else b""
            return data + tail
        except zlib.error as exc:
            log.warning("%s: cannot decompress the response body: %s", self.owner, exc)
            state.decoder = None
            return chunk
