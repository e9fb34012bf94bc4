"""ngx.re replacement templates (``"/v1/$1-${2}"``), split once and expanded per match."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import AnyStr, Generic, Protocol, TypeVar

# What a match is read as: str or bytes (read only, hence covariant).
S_co = TypeVar("S_co", str, bytes, covariant=True)


class Groups(Protocol[S_co]):
    """What a template reads from a match (``llmgate.http.regex.Match``)."""

    @property
    def string(self) -> S_co: ...

    def group(self, number: int = 0) -> S_co | None: ...


_REFERENCE = re.compile(r"\$(?:(\d+)|\{(\d+)\}|(\$))")


@dataclass(frozen=True, slots=True)
class Replacement(Generic[AnyStr]):
    """An ngx.re replacement template, split once into literal text and group numbers.

    ``"/v1/$1-${2}"`` refers to capture groups by number (``$0`` is the whole match, ``$$`` a
    literal dollar); a group that did not take part in the match, or does not exist, is
    replaced by nothing.
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


def _split(template: str) -> list[str | int]:
    parts: list[str | int] = []
    literal: list[str] = []
    position = 0
    for match in _REFERENCE.finditer(template):
        literal.append(template[position : match.start()])
        position = match.end()
        if match.group(3):
            literal.append("$")
            continue
        if any(literal):
            parts.append("".join(literal))
        literal = []
        parts.append(int(match.group(1) or match.group(2)))
    literal.append(template[position:])
    if any(literal):
        parts.append("".join(literal))
    return parts
