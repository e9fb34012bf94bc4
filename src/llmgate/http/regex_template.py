"""ngx.re replacement templates (``"/v1/$1-${2}"``), split once and expanded per match."""

from __future__ import annotations

from dataclasses import dataclass
from typing import AnyStr, Generic, Protocol, TypeVar

# What a match is read as: str or bytes (read only, hence covariant).
S_co = TypeVar("S_co", str, bytes, covariant=True)


class Groups(Protocol[S_co]):
    """What a template reads from a match (``llmgate.http.regex.Match``)."""

    @property
    def string(self) -> S_co: ...

    def group(self, number: int = 0) -> S_co | None: ...


_DIGITS = frozenset("0123456789")
_NAME = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")


class TemplateError(ValueError):
    """A replacement template ngx.re refuses (the message is its error log's)."""


@dataclass(frozen=True, slots=True)
class Replacement(Generic[AnyStr]):
    """An ngx.re replacement template, split once into literal text and group numbers.

    ``"/v1/$1-${2}"`` refers to capture groups by number (``$0`` is the whole match, ``$$`` a
    literal dollar); a group that did not take part in the match, or does not exist, is
    replaced by nothing.  Any other ``$`` (a name, ``${}``, an unclosed brace, a trailing
    ``$``) is refused with ``TemplateError``, as ngx.re.sub refuses it; a backslash is text.
    """

    parts: tuple[AnyStr | int, ...]

    @classmethod
    def compile(cls, template: str) -> Replacement[str]:
        return Replacement(tuple(_split(template)))

    @classmethod
    def compile_binary(cls, template: str) -> Replacement[bytes]:
        parts = [p.encode() if isinstance(p, str) else p for p in _split(template)]
        return Replacement(tuple(parts))

    def expand(self, match: Groups[AnyStr]) -> AnyStr:
        empty = match.string[:0]
        out = []
        for part in self.parts:
            if isinstance(part, int):
                out.append(match.group(part) or empty)
            else:
                out.append(part)
        return empty.join(out)


def template_error(template: str) -> str | None:
    """Why ngx.re would refuse ``template`` as a replacement, or None."""
    try:
        _split(template)
    except TemplateError as exc:
        return str(exc)
    return None


def _split(template: str) -> list[str | int]:
    """Literal text and group numbers, parsed as lua-nginx-module's script compiler does."""
    parts: list[str | int] = []
    literal: list[str] = []
    i, end = 0, len(template)
    while i < end:
        if template[i] != "$":
            after = template.find("$", i)
            after = end if after < 0 else after
            literal.append(template[i:after])
            i = after
            continue
        i += 1
        if i < end and template[i] == "$":
            literal.append("$")
            i += 1
            continue
        bracket = i < end and template[i] == "{"
        i += bracket
        if i == end:
            raise TemplateError(f'invalid capturing variable name found in "{template}"')
        start, numeric = i, template[i] in _DIGITS
        allowed = _DIGITS if numeric else _NAME
        while i < end and template[i] in allowed:
            i += 1
        name = template[start:i]
        if bracket and i < end and template[i] == "}":
            bracket = False
            i += 1
        if bracket:
            raise TemplateError(f'the closing bracket in "{name}" variable is missing')
        if not name:
            raise TemplateError(f'invalid capturing variable name found in "{template}"')
        if not numeric:
            raise TemplateError(
                f'attempt to use named capturing variable "{name}" (named captures not '
                "supported yet)"
            )
        if literal:
            parts.append("".join(literal))
            literal = []
        parts.append(int(name))
    if literal:
        parts.append("".join(literal))
    return [part for part in parts if part != ""]
