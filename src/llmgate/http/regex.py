r"""Bounded regular expressions with PCRE's semantics (ngx.re's, as APISIX configs use them).

Every regex that client input reaches is compiled and run here, so that none can freeze the
event loop (Python's ``re`` backtracks without limit: ``.*a.*b.*c`` is cubic):

- RE2 (google-re2) runs every pattern it can express, in time linear in the subject;
- patterns that need backtracking (back-references, look-around, atomic groups, possessive
  quantifiers, ``\Z``, extended mode; see ``regex_syntax``) run on the ``regex`` module with a
  time limit per call, ``BACKTRACK_LIMIT``; a call that reaches it raises ``RegexLimit`` and
  the caller decides what that means (no match for routing and filters, a refusal for
  ai-prompt-guard, a 400 for admin list filters);
- patterns neither engine can bound are refused when compiled (``RegexError``): repetition
  counts past 1000 or programs past RE2's memory budget (also behind a backtracking-only
  construct), recursion, conditionals.

    compile(pattern, options="jo", *, binary=False, captures=True, linear=False) -> Regex
    regex_error(pattern, options="jo", ...) -> str | None     (for config validators)
    Regex.test(subject) -> bool
    Regex.search(subject) -> Match | None
    Regex.sub(subject, replacement, count=0) -> subject       (a ``$1`` template)

Subjects are ``str`` (UTF-8 semantics: ``.`` is one character) or, with ``binary``, ``bytes``
(one byte per character unless the "u" option asks for UTF-8, as PCRE without PCRE_UTF8).
ngx.re option letters: i (caseless), m (multiline), s (dotall), x (extended), a (anchored),
u / U (UTF-8); j, o, D and J are compile hints; "d" (PCRE's DFA mode) and unknown letters are
refused.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, AnyStr, Generic

import regex as backtracking
from re2 import Options, _re2

from llmgate.http.regex_syntax import Reading, RegexError, read
from llmgate.http.regex_template import Replacement, template_error

__all__ = [
    "BACKTRACK_LIMIT",
    "Match",
    "Regex",
    "RegexError",
    "RegexLimit",
    "Replacement",
    "compile",
    "regex_error",
    "template_error",
]

# Seconds of processor time one call of the backtracking engine may take (a test, a search or
# a whole substitution); the regex module counts CPU time, so a loaded machine does not shorten
# it.
BACKTRACK_LIMIT = 0.01
# RE2's memory budget per compiled pattern (its program and DFA cache): RE2 refuses a pattern
# whose program does not fit, and falls back to its slower (still linear) NFA when the DFA does
# not.
RE2_MAX_MEM = 8 << 20

_HINTS = frozenset("joDJ")
# "d" (PCRE's DFA matcher) changes what a match is and is refused, as unknown letters are.
_LETTERS = frozenset("imsxauU") | _HINTS
_UNANCHORED = _re2.RE2.Anchor.UNANCHORED
_ANCHOR_START = _re2.RE2.Anchor.ANCHOR_START
_NO_MATCH = (-1, -1)


class RegexLimit(Exception):
    """A match that reached ``BACKTRACK_LIMIT``: its answer is unknown."""


@dataclass(frozen=True, slots=True)
class _Flags:
    caseless: bool
    multiline: bool
    dotall: bool
    extended: bool
    anchored: bool
    utf8: bool


def _flags(options: str) -> _Flags:
    for letter in options:
        if letter not in _LETTERS:
            raise RegexError(f'unsupported regex option "{letter}" in "{options}"')
    return _Flags(
        caseless="i" in options,
        multiline="m" in options,
        dotall="s" in options,
        extended="x" in options,
        anchored="a" in options,
        utf8="u" in options or "U" in options,
    )


class Match(ABC, Generic[AnyStr]):
    """One match of a ``Regex`` in ``string``."""

    __slots__ = ()

    string: AnyStr

    @abstractmethod
    def group(self, number: int = 0) -> AnyStr | None:
        """Group ``number`` (0: the whole match); None when it did not take part or does not
        exist."""

    @abstractmethod
    def replaced(self, text: AnyStr) -> AnyStr:
        """``string`` with this match replaced by ``text``."""


class Regex(ABC):
    """A compiled pattern. ``engine`` is "re2" or "backtracking"."""

    __slots__ = ("engine", "options", "pattern")

    def __init__(self, pattern: str, options: str, engine: str) -> None:
        self.pattern = pattern
        self.options = options
        self.engine = engine

    @abstractmethod
    def test(self, subject: AnyStr) -> bool:
        """Whether the pattern matches anywhere in ``subject`` (at its start when anchored).
        ``RegexLimit`` when the bound was reached."""

    @abstractmethod
    def search(self, subject: AnyStr) -> Match[AnyStr] | None:
        """The first match. ``RegexLimit`` when the bound was reached."""

    @abstractmethod
    def sub(self, subject: AnyStr, replacement: Replacement[AnyStr], count: int = 0) -> AnyStr:
        """``subject`` with its first ``count`` matches (every one when 0) replaced.
        ``RegexLimit`` when the bound was reached (nothing is replaced then)."""

    def __repr__(self) -> str:
        return f"<Regex {self.pattern!r} {self.options!r} on {self.engine}>"


# --- RE2 -------------------------------------------------------------------------------------


def _encode(subject: str | bytes) -> bytes:
    return subject if isinstance(subject, bytes) else subject.encode("utf-8", "surrogatepass")


def _decode(data: bytes) -> str:
    return data.decode("utf-8", "surrogatepass")


class _Re2Match(Match[AnyStr]):
    __slots__ = ("_data", "_spans", "string")

    def __init__(self, string: AnyStr, data: bytes, spans: list[tuple[int, int]]) -> None:
        self.string = string
        self._data = data
        self._spans = spans

    def _text(self, data: bytes) -> AnyStr:
        return data if isinstance(self.string, bytes) else _decode(data)

    def group(self, number: int = 0) -> AnyStr | None:
        if number >= len(self._spans) or self._spans[number] == _NO_MATCH:
            return None
        start, end = self._spans[number]
        return self._text(self._data[start:end])

    def replaced(self, text: AnyStr) -> AnyStr:
        start, end = self._spans[0]
        return self._text(self._data[:start]) + text + self._text(self._data[end:])


class _Re2Regex(Regex):
    __slots__ = ("_anchor", "_bytewise", "_end_anchor", "_program")

    def __init__(
        self,
        pattern: str,
        options: str,
        program: Any,
        flags: _Flags,
        reading: Reading,
        binary: bool,
    ) -> None:
        super().__init__(pattern, options, "re2")
        self._program = program
        self._anchor = _ANCHOR_START if flags.anchored else _UNANCHORED
        # PCRE's "$" also matches before a final newline; RE2's only at the very end, so a
        # subject ending in "\n" is also searched without it ("\z" would then be wrong).
        self._end_anchor = reading.end_anchor and not flags.multiline and r"\z" not in pattern
        self._bytewise = binary and not flags.utf8  # one byte per character

    def _trimmed(self, data: bytes) -> bytes | None:
        return data[:-1] if self._end_anchor and data.endswith(b"\n") else None

    def _find(self, data: bytes, trimmed: bytes | None, pos: int) -> list[tuple[int, int]] | None:
        spans: list[tuple[int, int]] = self._program.Match(self._anchor, data, pos, len(data))
        if trimmed is not None and pos <= len(trimmed):
            other: list[tuple[int, int]] = self._program.Match(
                self._anchor, trimmed, pos, len(trimmed)
            )
            if other[0] != _NO_MATCH and (spans[0] == _NO_MATCH or other[0][0] < spans[0][0]):
                return other
        return spans if spans[0] != _NO_MATCH else None

    def test(self, subject: AnyStr) -> bool:
        # Inlined: this runs per request on the regex paths (vars, cors, guard).
        data = subject if isinstance(subject, bytes) else subject.encode("utf-8", "surrogatepass")
        if self._program.Match(self._anchor, data, 0, len(data))[0][0] >= 0:
            return True
        return (
            self._end_anchor and data.endswith(b"\n") and self._find(data, data[:-1], 0) is not None
        )

    def search(self, subject: AnyStr) -> Match[AnyStr] | None:
        data = _encode(subject)
        spans = self._find(data, self._trimmed(data), 0)
        return None if spans is None else _Re2Match(subject, data, spans)

    def _step(self, data: bytes, pos: int) -> int:
        """The length of the character at ``pos`` (past an empty match)."""
        if self._bytewise:
            return 1
        step = 1
        while pos + step < len(data) and data[pos + step] & 0xC0 == 0x80:
            step += 1
        return step

    def sub(self, subject: AnyStr, replacement: Replacement[AnyStr], count: int = 0) -> AnyStr:
        data = _encode(subject)
        trimmed = self._trimmed(data)
        pieces: list[bytes] = []
        last = pos = done = 0
        while pos <= len(data) and (count == 0 or done < count):
            spans = self._find(data, trimmed, pos)
            if spans is None:
                break
            start, end = spans[0]
            expanded = replacement.expand(_Re2Match(subject, data, spans))
            pieces += (data[last:start], _encode(expanded))
            last, done = end, done + 1
            pos = end if end > start else end + self._step(data, end)
        if not done:
            return subject
        pieces.append(data[last:])
        joined = b"".join(pieces)
        return _decode(joined) if isinstance(subject, str) else joined


def _re2_options(flags: _Flags, binary: bool, captures: bool) -> Any:
    options = Options()
    options.log_errors = False
    options.max_mem = RE2_MAX_MEM
    options.case_sensitive = not flags.caseless
    options.dot_nl = flags.dotall
    options.never_capture = not captures
    if binary and not flags.utf8:
        options.encoding = Options.Encoding.LATIN1
    return options


def _re2_program(source: str, flags: _Flags, binary: bool, captures: bool) -> Any:
    """The RE2 program of ``source``; ``RegexError`` with RE2's reason when it has none."""
    text = ("(?m)" if flags.multiline else "") + source
    try:
        program = _re2.RE2(text.encode("utf-8"), _re2_options(flags, binary, captures))
    except UnicodeEncodeError as exc:
        raise RegexError(f"invalid pattern: {exc.reason}") from None
    if not program.ok():
        raise RegexError(program.error().decode("utf-8", "replace"))
    return program


# --- the backtracking engine ----------------------------------------------------------------


class _BacktrackingMatch(Match[AnyStr]):
    __slots__ = ("_match", "string")

    def __init__(self, match: Any) -> None:
        self._match = match
        self.string = match.string

    def group(self, number: int = 0) -> AnyStr | None:
        if number > self._match.re.groups:
            return None
        group: AnyStr | None = self._match.group(number)
        return group

    def replaced(self, text: AnyStr) -> AnyStr:
        string = self.string
        return string[: self._match.start()] + text + string[self._match.end() :]


class _BacktrackingRegex(Regex):
    __slots__ = ("_compiled",)

    def __init__(self, pattern: str, options: str, compiled: Any) -> None:
        super().__init__(pattern, options, "backtracking")
        self._compiled = compiled

    def search(self, subject: AnyStr) -> Match[AnyStr] | None:
        try:
            match = self._compiled.search(subject, timeout=BACKTRACK_LIMIT)
        except TimeoutError:
            raise RegexLimit(self.pattern) from None
        return None if match is None else _BacktrackingMatch(match)

    def test(self, subject: AnyStr) -> bool:
        return self.search(subject) is not None

    def sub(self, subject: AnyStr, replacement: Replacement[AnyStr], count: int = 0) -> AnyStr:
        def expand(match: Any) -> AnyStr:
            return replacement.expand(_BacktrackingMatch(match))

        try:
            result: AnyStr = self._compiled.sub(
                expand, subject, count=count, timeout=BACKTRACK_LIMIT
            )
            return result
        except TimeoutError:
            raise RegexLimit(self.pattern) from None


def _backtracking(source: str, flags: _Flags, binary: bool) -> Any:
    value = 0
    for wanted, flag in (
        (flags.caseless, backtracking.IGNORECASE),
        (flags.multiline, backtracking.MULTILINE),
        (flags.dotall, backtracking.DOTALL),
        (flags.extended, backtracking.VERBOSE),
    ):
        if wanted:
            value |= flag
    if flags.anchored:
        source = rf"\G(?:{source})"  # every match starts where the search does
    try:
        return backtracking.compile(source.encode("utf-8") if binary else source, value)
    except (backtracking.error, OverflowError, RecursionError, UnicodeEncodeError) as exc:
        raise RegexError(str(exc) or type(exc).__name__) from None


# --- compiling ------------------------------------------------------------------------------


def compile(
    pattern: str,
    options: str = "jo",
    *,
    binary: bool = False,
    captures: bool = True,
    linear: bool = False,
) -> Regex:
    """``pattern`` with ngx.re ``options``, on the engine that bounds it.

    ``binary``: for bytes subjects.  ``captures=False`` when only ``test`` is used (RE2 then
    runs its DFA alone).  ``linear``: refuse patterns that would need the backtracking engine.
    ``RegexError`` when refused.
    """
    flags = _flags(options)
    reading = read(pattern, flags.extended)
    if reading.re2 is not None:
        program = _re2_program(reading.re2, flags, binary, captures)
        return _Re2Regex(pattern, options, program, flags, reading, binary)
    if linear:
        raise RegexError("this pattern needs a backtracking engine, which is not allowed here")
    # RE2 compiling the skeleton proves the repetitions fit its limits.
    _re2_program(reading.skeleton, flags, binary, captures=False)
    return _BacktrackingRegex(pattern, options, _backtracking(reading.backtracking, flags, binary))


def regex_error(
    pattern: str, options: str = "jo", *, binary: bool = False, linear: bool = False
) -> str | None:
    """Why ``pattern`` is refused, or None when it compiles."""
    try:
        compile(pattern, options, binary=binary, captures=False, linear=linear)
    except RegexError as exc:
        return str(exc)
    return None
