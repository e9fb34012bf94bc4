"""proxy-rewrite: rewrites the outbound upstream request's uri, host, method and headers.

In the rewrite phase, in this order: ``host`` (the upstream Host, which wins under the upstream's
``pass_host: pass``), the uri (``uri`` with ``$var``s, else the first matching ``regex_uri``
pair), ``headers`` (add, then set, then remove; values may hold ``$var``s and ``regex_uri``
captures ``$1``), then ``method``.  Variables are APISIX's ``resolve_var``: ``${name ?? default}``
too, and ``\\$name`` stays as written, backslash and all; a capture's text is never read for
variables.  The client's query string is kept: appended after the new uri's own query (``&``)
when it has one.  ``regex_uri`` patterns run on the bounded engine of ``llmgate.http.regex``;
one that reaches its bound does not match; replacements are ngx.re templates.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import ConfigDict, Discriminator, Field, Tag, model_validator

from llmgate.http import regex
from llmgate.http.headers import escape_header_value
from llmgate.http.paths import escape_path as encode_path
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
    from llmgate.http.context import Reply, RequestContext
    from llmgate.runtime.services import Services

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


Headers = Annotated[
    Annotated[HeaderOperations, Tag("operations")] | Annotated[HeaderMap, Tag("map")],
    Discriminator(headers_form),
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
            if err is None and not is_env_ref(replacement):
                err = template_error(replacement)
                if err is not None:
                    err = f"failed to compile the replacement template: {err}"
            if err is not None:
                raise ValueError(f"invalid regex_uri({pattern}, {replacement}): {err}")
        return self


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# APISIX's resolve_var_with_captures: "$1", "${1}" (and "${1", "$1}"), not after a backslash.
_CAPTURE = re.compile(r"(?<!\\)\$\{?(\d+)\}?")


def _rooted(path: str) -> str:
    # A replacement may drop the leading "/"; the request line needs it.
    return path if path.startswith("/") else "/" + path


def _escape_controls(text: str) -> str:
    return _CONTROL.sub(_percent, text)


def _percent(match: re.Match[str]) -> str:
    return f"%{ord(match.group()):02X}"


def _escape_separator(value: str) -> str:
    # A variable's value must not start a query string inside the new uri.
    return value.replace("?", "%3F")


def _text(value: HeaderScalar) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


@dataclass(frozen=True, slots=True)
class _HeaderTemplate:
    """A header value: literal text, ``$var``s and ``regex_uri`` captures (``$1``, ``${2}``)."""

    parts: tuple[Template | int, ...]

    @classmethod
    def compile(cls, value: HeaderScalar) -> _HeaderTemplate:
        text = _text(value)
        parts: list[Template | int] = []
        position = 0
        for match in _CAPTURE.finditer(text):
            if match.start() > position:
                parts.append(Template.compile(text[position : match.start()]))
            parts.append(int(match.group(1)))
            position = match.end()
        if position < len(text) or not parts:
            parts.append(Template.compile(text[position:]))
        return cls(tuple(parts))

    def render(self, ctx: RequestContext, captures: regex.Match[str] | None) -> str:
        out = []
        for part in self.parts:
            if isinstance(part, int):
                group = captures.group(part) if captures is not None else None
                out.append(group or "")
            else:
                out.append(part.render(ctx))
        return escape_header_value("".join(out))


def _values(
    value: HeaderScalar | list[HeaderScalar],
) -> _HeaderTemplate | tuple[_HeaderTemplate, ...]:
    if isinstance(value, list):
        return tuple(_HeaderTemplate.compile(item) for item in value)
    return _HeaderTemplate.compile(value)


class ProxyRewrite(Plugin[ProxyRewriteConfig]):
    name = "proxy-rewrite"
    priority = 1008
    Config = ProxyRewriteConfig

    def __init__(self, config: ProxyRewriteConfig, services: Services, owner: str = "") -> None:
        super().__init__(config, services, owner)
        self._uri = Template.compile(config.uri) if config.uri is not None else None
        pairs = config.regex_uri or []
        self._regex_uri = (
            tuple(
                (regex.compile(pattern, "jo"), Replacement.compile(replacement))
                for pattern, replacement in zip(pairs[::2], pairs[1::2], strict=True)
            )
            if self._uri is None
            else ()
        )
        headers = config.headers
        add: Mapping[str, HeaderScalar | list[HeaderScalar]] = {}
        set_: Mapping[str, HeaderScalar | list[HeaderScalar]] = {}
        remove: list[str] = []
        if isinstance(headers, HeaderOperations):
            add, set_, remove = headers.add or {}, headers.set or {}, headers.remove or []
        elif headers is not None:
            set_ = headers  # the flat form means "set"
        self._add = tuple((name, _values(value)) for name, value in add.items())
        self._set = tuple((name, _values(value)) for name, value in set_.items())
        self._remove = tuple(remove)
        self._changed = tuple(dict.fromkeys([*add, *set_, *remove]))

    async def rewrite(self, ctx: RequestContext) -> Reply | None:
        outbound = ctx.outbound
        if self.config.host is not None:
            outbound.host = self.config.host
        captures = None
        if self._uri is not None:
            outbound.path, outbound.query = self._from_template(ctx, self._uri)
        elif self._regex_uri:
            captures = self._from_regex(ctx)
        elif self.config.use_real_request_uri_unsafe:
            outbound.path = ctx.target.raw_path  # the path as sent, not normalised
        headers = outbound.headers
        for name, value in self._add:
            for item in value if isinstance(value, tuple) else (value,):
                headers.add(name, item.render(ctx, captures))
        for name, value in self._set:
            if isinstance(value, tuple):
                headers.popall(name, None)
                for item in value:
                    headers.add(name, item.render(ctx, captures))
            else:
                headers[name] = value.render(ctx, captures)
        for name in self._remove:
            headers.popall(name, None)
        if self._changed:
            ctx.request_headers_changed(*self._changed)
        if self.config.method is not None:
            outbound.method = self.config.method
        return None

    def _from_template(self, ctx: RequestContext, template: Template) -> tuple[str, str]:
        """(path, query) of the ``uri`` template; variables' values cannot add a query."""
        uri = template.expand(ctx.var, _escape_separator)
        args = ctx.outbound.query
        path, mark, query = uri.partition("?")
        path = _rooted(path)
        if not self.config.use_real_request_uri_unsafe:
            path, query = encode_path(path), _escape_controls(query)
        if mark and args:
            return path, f"{query}&{args}"
        return path, query if mark else args

    def _from_regex(self, ctx: RequestContext) -> regex.Match[str] | None:
        """Rewrite the uri with the first matching ``regex_uri`` pair; its match is returned
        for the captures of header values."""
        if self.config.use_real_request_uri_unsafe:
            subject = ctx.target.real_request_uri
        else:
            subject = ctx.var("uri") or "/"
        for pattern, replacement in self._regex_uri:
            try:
                match = pattern.search(subject)
            except regex.RegexLimit:
                continue
            if match is not None:
                self._set_uri(ctx, match.replaced(replacement.expand(match)), "?" in subject)
                return match
        return None

    def _set_uri(self, ctx: RequestContext, uri: str, has_separator: bool) -> None:
        outbound = ctx.outbound
        if self.config.use_real_request_uri_unsafe:
            path, _, outbound.query = uri.partition("?")
            outbound.path = _rooted(path)
        elif has_separator:
            # A "?" decoded from the client's "%3F" stays part of the path.
            outbound.path = encode_path(_rooted(uri))
        else:
            path, mark, query = uri.partition("?")
            outbound.path = encode_path(_rooted(path))
            if mark:
                query = _escape_controls(query)
                outbound.query = f"{query}&{outbound.query}" if outbound.query else query
