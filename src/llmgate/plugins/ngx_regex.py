"""ngx.re's conventions, as APISIX configs use them: PCRE option letters and ``$1`` templates.

A replacement such as ``"/v1/$1-${2}"`` refers to capture groups by number (``$0`` is the whole
match, ``$$`` a literal dollar); a group that did not take part in the match, or does not exist,
is replaced by nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import AnyStr, Generic

# The letters that change what a pattern matches; the others ("j", "o", "u", "D", ...) are
# compilation hints with no Python equivalent.
_FLAGS = {"i": re.IGNORECASE, "m": re.MULTILINE, "s": re.DOTALL, "x": re.VERBOSE}

_REFERENCE = re.compile(r"\$(?:(\d+)|\{(\d+)\}|(\$))")


def flags_of(options: str) -> int:
    """The ``re`` flags of ngx.re option letters (``"jo"``, ``"ijo"``...)."""
    flags = 0
    for letter in options:
        flags |= _FLAGS.get(letter, 0)
    return flags


def compile_pattern(pattern: str, options: str = "jo", *, binary: bool = False) -> re.Pattern:
    """``pattern`` with ngx.re ``options``; ``binary`` compiles it for bytes subjects.

    The "a" option anchors the match at the start of the subject, as PCRE_ANCHORED does.
    """
    if "a" in options:
        pattern = rf"\A(?:{pattern})"
    return re.compile(pattern.encode() if binary else pattern, flags_of(options))


@dataclass(frozen=True, slots=True)
class Replacement(Generic[AnyStr]):
    """A replacement template split once into literal text and group numbers."""

    parts: tuple[AnyStr | int, ...]

    @classmethod
    def compile(cls, template: str) -> Replacement[str]:
        return Replacement(tuple(_split(template)))

    @classmethod
    def compile_binary(cls, template: str) -> Replacement[bytes]:
        parts = [p.encode() if isinstance(p, str) else p for p in _split(template)]
        return Replacement(tuple(parts))

    def expand(self, match: re.Match[AnyStr]) -> AnyStr:
        empty = match.string[:0]
        groups = match.re.groups
        out = []
        for part in self.parts:
            if isinstance(part, int):
                out.append((match.group(part) if part <= groups else None) or empty)
            else:
                out.append(part)
        return empty.join(out)

    def sub(self, pattern: re.Pattern[AnyStr], subject: AnyStr, count: int = 0) -> AnyStr:
        """``subject`` with the first ``count`` matches (all when 0) replaced."""
        return pattern.sub(self.expand, subject, count=count)


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
