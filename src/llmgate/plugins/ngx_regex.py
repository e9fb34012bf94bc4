"""ngx.re's conventions, as APISIX configs use them: PCRE option letters and ``$1`` templates.

A replacement such as ``"/v1/$1-${2}"`` refers to capture groups by number (``$0`` is the whole
match, ``$$`` a literal dollar); a group that did not take part in the match, or does not exist,
is replaced by nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import AnyStr, Generic

# The letters that change what a pattern matches ("a" anchors, see ``compile_pattern``); the
# others are compilation hints with no Python equivalent.  "d" (PCRE's DFA matcher, which
# changes what a match is) and unknown letters are refused, as ngx.re refuses unknown ones.
_FLAGS = {"i": re.IGNORECASE, "m": re.MULTILINE, "s": re.DOTALL, "x": re.VERBOSE}
_HINTS = frozenset("ajouUJD")
# Inline flags at the very start of a pattern ("(?i)", "(?is)"): Python wants them first.
_LEADING_FLAGS = re.compile(r"(?:\(\?[aiLmsux]+\))+")

_REFERENCE = re.compile(r"\$(?:(\d+)|\{(\d+)\}|(\$))")


def flags_of(options: str) -> int:
    """The ``re`` flags of ngx.re option letters (``"jo"``, ``"ijo"``...); ``re.error`` for a
    letter ngx.re does not know or llmgate cannot honour."""
    flags = 0
    for letter in options:
        if letter in _FLAGS:
            flags |= _FLAGS[letter]
        elif letter not in _HINTS:
            raise re.error(f'unsupported regex option "{letter}" in "{options}"')
    return flags


def compile_pattern(pattern: str, options: str = "jo", *, binary: bool = False) -> re.Pattern:
    """``pattern`` with ngx.re ``options``; ``binary`` compiles it for bytes subjects.  The one
    place APISIX-style regexes are compiled (validation calls it too, through
    ``plugins.base.regex_error``, so what is validated is what runs).

    The "a" option anchors the match at the start of the subject, as PCRE_ANCHORED does
    (inline flags such as ``(?i)`` that open the pattern stay in front).
    """
    flags = flags_of(options)
    if "a" in options:
        lead = _LEADING_FLAGS.match(pattern)
        head = lead.group(0) if lead else ""
        pattern = rf"{head}\A(?:{pattern[len(head) :]})"
    return re.compile(pattern.encode() if binary else pattern, flags)


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
